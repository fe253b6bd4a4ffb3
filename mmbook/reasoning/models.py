"""Visual question answering models, from the blind baselines to the ones that reason.

Every model maps a batch dict to answer logits ``(N, A)``: ``batch["image"]`` is ``(B, 3, 64, 64)``,
normalised floats from :class:`mmbook.data.DeviceLoader` (or uint8, see :func:`pixels`), and
``batch["question"]`` int64 token ids right-padded with 0, either ``(B, T)`` (one question per image,
``N = B``) or ``(B, K, T)`` (``K`` questions per image, ``N = B * K``, question ``b * K + k`` is the
``k``-th about image ``b``): the image is then read once for its ``K`` questions.
:func:`vqa_loss` compares the logits with ``batch["label"]`` ``(B,)`` or ``(B, K)``.

=================  ==========================================================================
``question``       the question alone (an LSTM), the bias a data set leaves to exploit
``image``          the image alone (the CNN)
``concat``         CNN features and the LSTM's question vector, concatenated, then an MLP: the
                   VQA baseline (Antol et al. 2015) and Santoro et al.'s "CNN+MLP"
``attention``      two hops of stacked attention over the CNN's regions (Yang et al. 2016)
``film``           the question scales and shifts the CNN's feature maps in residual blocks
                   (FiLM, Perez et al. 2018)
``relation``       a relation network (Santoro et al. 2017): an MLP ``g`` over every pair of
                   regions with the question, summed, then an MLP ``f``
``vilt``           one Transformer over the image's 8x8 patches and the question's words
                   (ViLT in miniature, Kim et al. 2021; :class:`~mmbook.reasoning.vit.PatchQuestionTransformer`)
=================  ==========================================================================

The CNN is Santoro et al.'s: four 3x3 convolutions of stride 2 with batch norm and ReLU,
which turn a 64x64 image into a 4x4 grid of ``width``-channel regions, each tagged with its
``(x, y)`` coordinates in ``[-1, 1]`` where a model reads regions as a set.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn import functional as F

from mmbook.reasoning.batches import PIXEL_MEAN, PIXEL_STD, flat_questions, per_question, pixels
from mmbook.reasoning.vit import PatchQuestionTransformer
from mmbook.text.encoders import TextEncoder

#: The models :func:`build_vqa_model` builds.
VQA_MODELS = ("question", "image", "concat", "attention", "film", "relation", "vilt")
def vqa_loss(logits: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of the answers ``(N, A)`` against ``batch["label"]`` ``(B,)`` or ``(B, K)``; -100 is no question."""
    return F.cross_entropy(logits.float(), batch["label"].reshape(-1), ignore_index=-100)


def vqa_accuracy(logits: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """``(correct, counted)`` over the real questions (label -100 marks an empty slot)."""
    labels = batch["label"].reshape(-1)
    real = labels != -100
    return ((logits.argmax(dim=1) == labels) & real).sum(), int(real.sum())


def conv_block(inputs: int, outputs: int, stride: int = 2) -> nn.Sequential:
    """3x3 convolution, batch norm, ReLU."""
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False), nn.BatchNorm2d(outputs),
                         nn.ReLU(inplace=True))


class RegionCNN(nn.Module):
    """Santoro et al.'s CNN: ``(B, 3, 64, 64)`` -> ``(B, width, 4, 4)`` feature maps (16 regions)."""

    def __init__(self, width: int = 32, layers: int = 4) -> None:
        super().__init__()
        self.width = width
        self.body = nn.Sequential(*[conv_block(3 if i == 0 else width, width) for i in range(layers)])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(pixels(images))


def with_coordinates(maps: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C + 2, H, W)`` with the ``x`` and ``y`` coordinate maps appended."""
    b, _, h, w = maps.shape
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, device=maps.device), torch.linspace(-1, 1, w, device=maps.device),
                            indexing="ij")
    return torch.cat([maps, torch.stack([xs, ys]).to(maps.dtype).expand(b, 2, h, w)], dim=1)


def region_set(maps: torch.Tensor) -> torch.Tensor:
    """Feature maps ``(B, C, H, W)`` -> regions ``(B, H*W, C + 2)``, each with its ``(x, y)`` in ``[-1, 1]``."""
    return with_coordinates(maps).flatten(2).transpose(1, 2)


class BagOfWords(nn.Module):
    """The sum of the question's word embeddings, then a linear layer and ReLU: ``(B, T)`` -> ``(B, hidden)``.

    Word order is lost, which costs nothing on Sort-of-CLEVR's templates (no two questions have the same
    words in another order) but would on "is the cat bigger than the dog?".
    """

    def __init__(self, vocab_size: int, hidden: int, embed_dim: int = 32, pad_id: int = 0) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.project = nn.Sequential(nn.Linear(embed_dim, hidden), nn.ReLU(inplace=True))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.project(self.embedding(tokens).sum(dim=1))  # padding embeds to zeros


#: How a question becomes a vector: an LSTM over its words (the default) or a bag of words.
QUESTION_ENCODERS = ("lstm", "bow")


def question_encoder(vocab_size: int, hidden: int, kind: str = "lstm") -> nn.Module:
    """The question vector ``(B, hidden)`` of ``(B, T)`` token ids: an LSTM's final state, or :class:`BagOfWords`."""
    if kind not in QUESTION_ENCODERS:
        raise ValueError(f"unknown question encoder {kind!r}; expected one of {', '.join(QUESTION_ENCODERS)}")
    if kind == "bow":
        return BagOfWords(vocab_size, hidden)
    return TextEncoder(vocab_size, kind="lstm", embed_dim=32, hidden_size=hidden, out_features=None)


def encode_distinct(encoder: nn.Module, questions: torch.Tensor) -> torch.Tensor:
    """``encoder`` applied to the distinct rows of ``questions`` ``(N, T)`` only, then gathered back: ``(N, H)``.

    Questions generated from templates repeat within a batch (Sort-of-CLEVR has 36 distinct ones), so
    the recurrent encoder runs on a few dozen rows instead of ``N``; the result and its gradients are
    those of ``encoder(questions)``.
    """
    distinct, row_of = torch.unique(questions, dim=0, return_inverse=True)
    return encoder(distinct)[row_of]


def mlp(inputs: int, hidden: int, outputs: int, layers: int = 2, dropout: float = 0.0) -> nn.Sequential:
    """``layers`` linear layers with ReLU between them (and dropout before the last)."""
    parts: list[nn.Module] = []
    size = inputs
    for _ in range(layers - 1):
        parts += [nn.Linear(size, hidden), nn.ReLU(inplace=True)]
        size = hidden
    if dropout:
        parts.append(nn.Dropout(dropout))
    parts.append(nn.Linear(size, outputs))
    return nn.Sequential(*parts)


class QuestionOnly(nn.Module):
    """The blind baseline: answers from the question alone. ``(B, T)`` -> ``(B, A)``."""

    def __init__(self, vocab_size: int, num_answers: int, hidden: int = 64, question: str = "lstm") -> None:
        super().__init__()
        self.question = question_encoder(vocab_size, hidden, question)
        self.head = mlp(hidden, 128, num_answers)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.head(encode_distinct(self.question, flat_questions(batch)[0]))


class ImageOnly(nn.Module):
    """The deaf baseline: answers from the image alone. ``(B, 3, 64, 64)`` -> ``(B, A)``."""

    def __init__(self, num_answers: int, width: int = 32) -> None:
        super().__init__()
        self.cnn = RegionCNN(width)
        self.head = mlp(16 * width, 128, num_answers)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return per_question(self.head(self.cnn(batch["image"]).flatten(1)), flat_questions(batch)[1])


class ConcatVQA(nn.Module):
    """CNN + LSTM, concatenated: ``[flatten(CNN) (B, 16*width); question (B, hidden)]`` -> MLP -> ``(B, A)``."""

    def __init__(self, vocab_size: int, num_answers: int, width: int = 32, hidden: int = 64, question: str = "lstm") -> None:
        super().__init__()
        self.cnn = RegionCNN(width)
        self.question = question_encoder(vocab_size, hidden, question)
        self.head = mlp(16 * width + hidden, 256, num_answers, layers=3)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        questions, k = flat_questions(batch)
        image = per_question(self.cnn(batch["image"]).flatten(1), k)
        return self.head(torch.cat([image, encode_distinct(self.question, questions)], dim=1))


class StackedAttentionVQA(nn.Module):
    """Stacked attention (Yang et al. 2016): the question vector ``u`` attends over the regions, twice.

    Each hop: ``p = softmax(w . tanh(W_r r + W_u u))`` over the 16 regions ``r`` ``(B, 16, D)``,
    then ``u = u + sum_i p_i r_i``. ``last_attention`` keeps ``p`` of each hop ``(hops, B, 16)``.
    """

    def __init__(self, vocab_size: int, num_answers: int, width: int = 32, hidden: int = 64, hops: int = 2, question: str = "lstm") -> None:
        super().__init__()
        self.cnn = RegionCNN(width)
        self.question = question_encoder(vocab_size, hidden, question)
        self.regions = nn.Linear(width + 2, hidden)
        self.hops = nn.ModuleList(nn.ModuleDict({"r": nn.Linear(hidden, hidden), "u": nn.Linear(hidden, hidden),
                                                 "score": nn.Linear(hidden, 1)}) for _ in range(hops))
        self.head = mlp(hidden, 128, num_answers)
        self.last_attention: torch.Tensor | None = None

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        questions, k = flat_questions(batch)
        regions = per_question(self.regions(region_set(self.cnn(batch["image"]))), k)  # (N, 16, hidden)
        u = encode_distinct(self.question, questions)  # (N, hidden)
        maps = []
        for hop in self.hops:
            scores = hop["score"](torch.tanh(hop["r"](regions) + hop["u"](u).unsqueeze(1))).squeeze(2)  # (B, 16)
            p = scores.softmax(dim=1)
            maps.append(p.detach())
            u = u + (p.unsqueeze(2) * regions).sum(dim=1)
        self.last_attention = torch.stack(maps)
        return self.head(u)


class FiLMBlock(nn.Module):
    """A residual block modulated by the question (Perez et al. 2018, Fig. 3)::

        x -> conv1x1 -> ReLU = h;  h -> conv3x3 -> BN (no affine) -> gamma * . + beta -> ReLU -> + h
    """

    def __init__(self, channels: int, condition: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels + 2, channels, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.film = nn.Linear(condition, 2 * channels)

    def forward(self, maps: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """``(B, C + 2, H, W)`` (maps with coordinate channels), ``(B, Q)`` -> ``(B, C, H, W)``."""
        h = F.relu(self.conv1(maps))
        gamma, beta = self.film(condition).chunk(2, dim=1)
        y = self.norm(self.conv2(h)) * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
        return F.relu(y) + h


class FiLMVQA(nn.Module):
    """FiLM: a CNN stem (three stride-2 blocks, 8x8 maps), ``blocks`` FiLM'd residual blocks, a classifier.

    The classifier follows the paper: a 1x1 convolution, global max pooling, an MLP.
    """

    def __init__(self, vocab_size: int, num_answers: int, width: int = 32, hidden: int = 64, blocks: int = 2, question: str = "lstm") -> None:
        super().__init__()
        self.stem = RegionCNN(width, layers=3)
        self.question = question_encoder(vocab_size, hidden, question)
        self.blocks = nn.ModuleList(FiLMBlock(width, hidden) for _ in range(blocks))
        self.classifier = nn.Conv2d(width + 2, 128, 1)
        self.head = mlp(128, 128, num_answers)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        questions, k = flat_questions(batch)
        maps = per_question(self.stem(batch["image"]), k)  # (N, width, 8, 8)
        condition = encode_distinct(self.question, questions)
        for block in self.blocks:
            maps = block(with_coordinates(maps), condition)
        pooled = F.relu(self.classifier(with_coordinates(maps))).amax(dim=(2, 3))
        return self.head(pooled)


class RelationNetwork(nn.Module):
    """A relation network (Santoro et al. 2017)::

        RN(O, q) = f( sum_{i,j} g([o_i; o_j; q]) )

    over the 16 regions ``o_i`` ``(B, 16, width + 2)`` and the question ``q`` ``(N, hidden)``: ``g`` sees
    all 256 ordered pairs. Its first layer is linear, so ``W [o_i; o_j; q] = W_i o_i + W_j o_j + W_q q``:
    each region is projected once and the pairs are sums, ``(N, 16, 16, g_width)``, the same function
    as concatenating the pairs (:meth:`pairs`) at a fraction of the cost.
    """

    def __init__(self, vocab_size: int, num_answers: int, width: int = 32, hidden: int = 64, g_width: int = 96, question: str = "lstm") -> None:
        super().__init__()
        self.cnn = RegionCNN(width)
        self.question = question_encoder(vocab_size, hidden, question)
        self.g_first = nn.Linear(2 * (width + 2) + hidden, g_width)  # applied by parts, see forward
        self.g_rest = nn.Sequential(nn.ReLU(inplace=True), nn.Linear(g_width, g_width), nn.ReLU(inplace=True),
                                    nn.Linear(g_width, g_width), nn.ReLU(inplace=True))
        self.f = mlp(g_width, g_width, num_answers, layers=3, dropout=0.1)
        self.object_size = width + 2

    @staticmethod
    def pairs(objects: torch.Tensor, question: torch.Tensor) -> torch.Tensor:
        """``(B, N, D)``, ``(B, Q)`` -> every ordered pair with the question ``(B, N*N, 2D + Q)``: row ``i*N + j`` is ``[o_i; o_j; q]``."""
        b, n, d = objects.shape
        first = objects.unsqueeze(2).expand(b, n, n, d)
        second = objects.unsqueeze(1).expand(b, n, n, d)
        q = question[:, None, None, :].expand(b, n, n, question.shape[1])
        return torch.cat([first, second, q], dim=3).reshape(b, n * n, 2 * d + question.shape[1])

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        questions, k = flat_questions(batch)
        objects = region_set(self.cnn(batch["image"]))  # (B, 16, D)
        d = self.object_size
        w_i, w_j, w_q = self.g_first.weight.split([d, d, self.g_first.in_features - 2 * d], dim=1)
        first = per_question(objects @ w_i.T, k)  # (N, 16, g): W_i o_i
        second = per_question(objects @ w_j.T, k)  # (N, 16, g): W_j o_j
        question = encode_distinct(self.question, questions) @ w_q.T + self.g_first.bias  # (N, g)
        pre = first[:, :, None, :] + second[:, None, :, :] + question[:, None, None, :]  # (N, 16, 16, g)
        relations = self.g_rest(pre).sum(dim=(1, 2))  # (N, g)
        return self.f(relations)


#: Where a VQA model's image features come from: its own CNN trained from scratch with the answers, or the
#: Generation chapter's scene backbone, pretrained on CIFAR-10 and frozen (:class:`PretrainedRegions`).
IMAGE_ENCODERS = ("scratch", "pretrained")


class PretrainedRegions(nn.Module):
    """A frozen pretrained :class:`~mmbook.objectives.backbone.SceneBackbone` in place of a VQA model's CNN.

    ``(B, 3, 64, 64)`` images as the VQA loader gives them (normalised with mean 0.5 and standard deviation 0.25,
    or uint8) -> ``(B, C, grid, grid)``: the backbone's 8x8 grid of ``C``-channel cells, max-pooled to ``grid``
    (4 for the models that read 16 regions, 8 for FiLM's stem). The backbone was trained to classify shrunk
    CIFAR-10 objects (:func:`mmbook.generation.encoder.pretrain_backbone`), as VQA models since Antol et al. (2015)
    read a CNN pretrained on ImageNet. It stays frozen and in evaluation mode (its batch-norm statistics fixed)
    while the rest of the model trains.
    """

    def __init__(self, backbone: nn.Module, grid: int) -> None:
        from mmbook.data.loaders import CIFAR10_STATS

        super().__init__()
        self.backbone = backbone.eval().requires_grad_(False)
        self.grid = grid
        self.register_buffer("mean", torch.tensor(CIFAR10_STATS["mean"]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(CIFAR10_STATS["std"]).view(1, 3, 1, 1))

    def train(self, mode: bool = True) -> "PretrainedRegions":
        super().train(mode)
        self.backbone.eval()  # frozen: batch norm keeps the statistics of pretraining
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        unit = pixels(images) * PIXEL_STD + PIXEL_MEAN  # back to [0, 1]
        with torch.no_grad():
            maps = self.backbone((unit - self.mean) / self.std)
        return F.adaptive_max_pool2d(maps, self.grid)


def build_vqa_model(name: str, vocab_size: int, num_answers: int, width: int = 32, question: str = "lstm",
                    backbone: nn.Module | None = None) -> nn.Module:
    """One of :data:`VQA_MODELS`, for questions over ``vocab_size`` words and ``num_answers`` answers;
    ``question`` is the question encoder (:data:`QUESTION_ENCODERS`). With a pretrained ``backbone`` (``image_encoder
    = "pretrained"``), the model's CNN, or FiLM's stem, is :class:`PretrainedRegions` over it, frozen, and
    ``width`` is the backbone's channels."""
    if backbone is not None:
        if name == "vilt":
            raise ValueError("the vilt model reads the image as patches of pixels; a pretrained backbone does not "
                             "apply (use image_encoder='scratch')")
        width = backbone.out_channels
    network = _build(name, vocab_size, num_answers, width, question)
    if backbone is not None and name != "question":
        if name == "film":
            network.stem = PretrainedRegions(backbone, 8)
        else:
            network.cnn = PretrainedRegions(backbone, 4)
    return network


def _build(name: str, vocab_size: int, num_answers: int, width: int, question: str) -> nn.Module:
    if name not in VQA_MODELS:
        raise ValueError(f"unknown VQA model {name!r}; expected one of {', '.join(VQA_MODELS)}")
    if question not in QUESTION_ENCODERS:
        raise ValueError(f"unknown question encoder {question!r}; expected one of {', '.join(QUESTION_ENCODERS)}")
    if name == "question":
        return QuestionOnly(vocab_size, num_answers, question=question)
    if name == "image":
        return ImageOnly(num_answers, width)
    if name == "vilt":
        if question != "lstm":
            raise ValueError(f"the vilt model reads the question's words in its own Transformer; question={question!r} "
                             "does not apply (leave it at 'lstm')")
        return PatchQuestionTransformer(vocab_size, num_answers, dim=2 * width)
    model = {"concat": ConcatVQA, "attention": StackedAttentionVQA, "film": FiLMVQA,
             "relation": RelationNetwork}[name]
    return model(vocab_size, num_answers, width, question=question)
