"""Alignment: one embedding space for images and their descriptions (CLIP-style contrastive learning).

A two-tower model encodes an image and a text separately and projects each into the same
``d``-dimensional space, L2-normalised, so that cosine similarity compares them::

    image  (B, 3, 64, 64) -> image tower -> linear -> normalise -> u (B, d)
    text   (B, T)         -> text tower  -> linear -> normalise -> v (B, d)
    logits = u @ v.T / temperature                                   (B, B)

The symmetric InfoNCE loss (:func:`info_nce`, van den Oord et al. 2018; CLIP, Radford et al.
2021) is the mean of two cross-entropies over that matrix: each image must pick out its own
caption among the ``B`` captions of the batch (image -> text), and each caption its own image
(text -> image). The other ``B - 1`` items of the batch are the *in-batch negatives*. The
temperature is learned as a log scale, ``scale = exp(log_scale) = 1 / temperature``, initialised
to ``1 / 0.07`` and clamped at 100, as CLIP does.

Also here: recall@K in both directions (:func:`recall_at_k`, :func:`retrieval_report`), with
the two definitions used when a query has several correct answers; zero-shot classification
from prompts with prompt ensembling (:func:`class_embeddings`, :func:`zero_shot_accuracy`); the
modality gap (:func:`modality_gap`, :func:`close_modality_gap`); a non-contrastive baseline
that scores every pair (:class:`MatchingClassifier`); the exercise checkers
(:func:`check_info_nce`, :func:`check_recall_at_k`); and the command-line recipe
(:func:`train_scene_retrieval`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from mmbook.objectives.backbone import SceneBackbone, coordinate_channels
from mmbook.runtime import evaluating
from mmbook.text import TextEncoder

INIT_TEMPERATURE = 0.07  # CLIP's initial temperature
MAX_SCALE = 100.0  # CLIP clamps the logit scale 1 / temperature at 100
RECALL_DEFINITIONS = ("any", "fraction")


# ---------------------------------------------------------------------------
# The model.
# ---------------------------------------------------------------------------


class SceneImageTower(nn.Module):
    """Image tower for 64x64 scenes: ``(B, 3, 64, 64)`` normalised floats -> ``(B, out_features)``.

    The objectives chapter's :class:`~mmbook.objectives.backbone.SceneBackbone` gives an 8x8 grid
    of features. Two paths read it:

    - *what*: a global max-pool over the grid, ``(B, 2w)``: a channel that detects cats fires wherever
      the cat is, so what is learned at one place serves at every place;
    - *where*: two coordinate channels are appended, a 1x1 convolution reduces the grid to 16 channels,
      and it is flattened (not pooled), so the feature keeps where things are, which captions talk about::

        backbone   (B, 2w, 8, 8) -> max over the grid                    (B, 2w)
                                 -> + x, y, 1x1 conv (B, 16, 8, 8) -> flatten -> linear + ReLU (B, 128)
        output     concatenation                                         (B, 2w + 128)
    """

    def __init__(self, width: int = 16, where_features: int = 128) -> None:
        super().__init__()
        self.backbone = SceneBackbone(width)
        self.reduce = nn.Conv2d(self.backbone.out_channels + 2, 16, 1)
        self.fc = nn.Linear(16 * 8 * 8, where_features)
        self.out_features = self.backbone.out_channels + where_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 64, 64)`` -> ``(B, out_features)``."""
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, 64, 64) or not images.is_floating_point():
            raise ValueError(f"expected normalised float scenes (B, 3, 64, 64), got {images.dtype} {tuple(images.shape)}")
        grid = self.backbone(images)  # (B, 2w, 8, 8)
        what = torch.amax(grid, dim=(2, 3))  # (B, 2w)
        where = F.relu(self.fc(F.relu(self.reduce(coordinate_channels(grid))).flatten(1)))  # (B, 128)
        return torch.cat([what, where], dim=1)


class TwoTower(nn.Module):
    """A CLIP-style dual encoder: a batch dict in, normalised image and text embeddings out.

    Args:
        vocab_size: size of the caption vocabulary.
        dim: the shared embedding size ``d``.
        width: the image backbone's width.
        text_hidden: the GRU's state size (ch04's :class:`~mmbook.text.TextEncoder`).
        temperature: the initial temperature (CLIP: 0.07).
        learn_temperature: learn ``log_scale`` (True) or keep the temperature fixed.

    ``forward(batch)`` returns ``{"image": (B, d), "text": (B, d), "scale": ()}``; both embeddings
    have unit length, and ``scale = 1 / temperature`` is clamped to at most 100.
    """

    def __init__(self, vocab_size: int, dim: int = 64, width: int = 16, text_hidden: int = 64,
                 temperature: float = INIT_TEMPERATURE, learn_temperature: bool = True) -> None:
        super().__init__()
        check_temperature(temperature)
        if not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        self.image_tower = SceneImageTower(width)
        self.text_tower = TextEncoder(vocab_size, kind="gru", embed_dim=32, hidden_size=text_hidden,
                                      out_features=None)
        self.image_projection = nn.Linear(self.image_tower.out_features, dim)
        self.text_projection = nn.Linear(self.text_tower.out_features, dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)), requires_grad=learn_temperature)
        self.dim = dim

    @property
    def scale(self) -> torch.Tensor:
        """``1 / temperature`` as a 0-d tensor, clamped to ``[1, 100]`` (CLIP's clamp of the log scale)."""
        return self.log_scale.clamp(0.0, math.log(MAX_SCALE)).exp()

    @property
    def temperature(self) -> float:
        """The current temperature, ``1 / scale``."""
        return float(1.0 / self.scale.detach())

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 64, 64)`` normalised floats -> unit vectors ``(B, d)``."""
        return F.normalize(self.image_projection(self.image_tower(images)).float(), dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` right-padded token ids -> unit vectors ``(B, d)``."""
        return F.normalize(self.text_projection(self.text_tower(tokens)).float(), dim=-1)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"image": (B, 3, 64, 64), "text": (B, T)}`` -> ``{"image": (B, d), "text": (B, d), "scale": ()}``."""
        return dict(image=self.encode_image(batch["image"]), text=self.encode_text(batch["text"]),
                    scale=self.scale)


# ---------------------------------------------------------------------------
# The loss.
# ---------------------------------------------------------------------------


def check_temperature(temperature: float | torch.Tensor) -> None:
    """Raise a clear error unless ``temperature`` is a positive, finite number."""
    value = float(temperature.detach()) if isinstance(temperature, torch.Tensor) else float(temperature)
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"temperature must be positive and finite, got {value}; it divides the similarities "
                         f"(CLIP starts at 0.07). To learn it, learn log(1 / temperature) instead.")


def check_embeddings(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> None:
    """Raise a clear error unless both are ``(B, d)`` tensors with the same ``B`` and ``d``."""
    for name, x in (("image", image_embeddings), ("text", text_embeddings)):
        if not isinstance(x, torch.Tensor) or x.ndim != 2:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} embeddings must be a tensor (B, d), got {shape}")
    if image_embeddings.shape[0] != text_embeddings.shape[0]:
        raise ValueError(
            f"batch sizes differ: {image_embeddings.shape[0]} image embeddings but {text_embeddings.shape[0]} text "
            f"embeddings. InfoNCE needs one caption per image: row i of each is the i-th pair.")
    if image_embeddings.shape[1] != text_embeddings.shape[1]:
        raise ValueError(f"embedding sizes differ: image d={image_embeddings.shape[1]}, text d={text_embeddings.shape[1]}; "
                         f"project both into the same space first")
    if image_embeddings.shape[0] == 0:
        raise ValueError("the batch is empty: InfoNCE needs at least one pair")


def info_nce(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor,
             temperature: float | torch.Tensor = INIT_TEMPERATURE) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP's loss) over a batch of ``B`` matching pairs.

    Args:
        image_embeddings: ``(B, d)``, L2-normalised; row ``i`` belongs with text row ``i``.
        text_embeddings: ``(B, d)``, L2-normalised.
        temperature: positive; a float or a 0-d tensor (e.g. ``1 / model.scale``).

    Returns:
        The scalar ``(CE(logits, arange B) + CE(logits.T, arange B)) / 2`` with
        ``logits = image @ text.T / temperature`` ``(B, B)``.
    """
    check_embeddings(image_embeddings, text_embeddings)
    check_temperature(temperature)
    logits = image_embeddings.float() @ text_embeddings.float().T / temperature  # (B, B)
    targets = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def info_nce_loop(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor, temperature: float) -> torch.Tensor:
    """The same loss written as a plain loop over the pairs (slow; a reference for checking)."""
    check_embeddings(image_embeddings, text_embeddings)
    check_temperature(temperature)
    batch = image_embeddings.shape[0]
    total = image_embeddings.new_zeros((), dtype=torch.float64)
    for i in range(batch):
        to_texts = torch.stack([image_embeddings[i].double() @ text_embeddings[j].double() for j in range(batch)]) / temperature
        to_images = torch.stack([text_embeddings[i].double() @ image_embeddings[j].double() for j in range(batch)]) / temperature
        total = total - (to_texts[i] - torch.logsumexp(to_texts, 0)) - (to_images[i] - torch.logsumexp(to_images, 0))
    return (total / (2 * batch)).float()


def contrastive_loss(output: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``loss_fn`` for :func:`mmbook.training.fit`: :func:`info_nce` on a :class:`TwoTower` output."""
    return info_nce(output["image"], output["text"], 1.0 / output["scale"])


@torch.no_grad()
def in_batch_accuracy(output: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """``accuracy_fn`` for :func:`mmbook.training.fit`: how often a caption's best image in the batch is its own."""
    logits = output["text"].float() @ output["image"].float().T  # (B, B)
    return (logits.argmax(dim=1) == torch.arange(logits.shape[0], device=logits.device)).sum(), int(logits.shape[0])


# ---------------------------------------------------------------------------
# Retrieval.
# ---------------------------------------------------------------------------


def check_gallery(similarity: torch.Tensor, relevant: torch.Tensor, k: int) -> None:
    """Raise a clear error unless ``similarity`` and ``relevant`` are ``(Q, G)`` with ``1 <= k <= G``."""
    if not isinstance(similarity, torch.Tensor) or similarity.ndim != 2:
        raise ValueError(f"similarity must be a (queries, gallery) matrix, got "
                         f"{tuple(similarity.shape) if isinstance(similarity, torch.Tensor) else type(similarity).__name__}")
    if similarity.shape[1] == 0:
        raise ValueError("the gallery is empty: there is nothing to retrieve (similarity has 0 columns)")
    if similarity.shape[0] == 0:
        raise ValueError("there are no queries (similarity has 0 rows)")
    if not isinstance(relevant, torch.Tensor) or relevant.shape != similarity.shape or relevant.dtype != torch.bool:
        raise ValueError(f"relevant must be a bool tensor of the similarity's shape {tuple(similarity.shape)}, got "
                         f"{getattr(relevant, 'dtype', type(relevant).__name__)} {tuple(getattr(relevant, 'shape', ()))}")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if k > similarity.shape[1]:
        raise ValueError(f"k={k} is larger than the gallery ({similarity.shape[1]} items); use k <= {similarity.shape[1]}")
    if not bool(relevant.any(dim=1).all()):
        row = int((~relevant.any(dim=1)).nonzero()[0])
        raise ValueError(f"query {row} has no correct item in the gallery; every query needs at least one")


def recall_at_k(similarity: torch.Tensor, relevant: torch.Tensor, k: int, definition: str = "any") -> float:
    """Recall@K of a retrieval, averaged over the queries.

    Args:
        similarity: ``(Q, G)`` scores, higher is better; row ``q`` ranks the gallery for query ``q``.
        relevant: ``(Q, G)`` bool, True where gallery item ``g`` is a correct answer to query ``q``.
        k: how many top-ranked items count, ``1 <= k <= G``.
        definition: ``"any"``: a query scores 1 if *any* correct item is in its top ``k`` (the usual
            definition in image-text retrieval); ``"fraction"``: it scores the *fraction of its correct
            items* found in the top ``k``. With one correct item per query both are the same.

    Returns:
        The mean over queries, in ``[0, 1]``.
    """
    check_gallery(similarity, relevant, k)
    if definition not in RECALL_DEFINITIONS:
        raise ValueError(f"definition must be one of {RECALL_DEFINITIONS}, got {definition!r}")
    top = similarity.topk(k, dim=1).indices  # (Q, k)
    found = relevant.gather(1, top).sum(dim=1).float()  # correct items in the top k, per query
    if definition == "any":
        return float((found > 0).float().mean())
    return float((found / relevant.sum(dim=1).float()).mean())


def chance_recall_at_k(relevant: torch.Tensor, k: int, definition: str = "any") -> float:
    """Expected recall@K of a random ranking: ``1 - C(G - m, k) / C(G, k)`` ("any") or ``k / G`` ("fraction"),
    with ``m`` the query's number of correct items, averaged over queries."""
    gallery = relevant.shape[1]
    if not 1 <= k <= gallery:
        raise ValueError(f"k={k} must lie in 1..{gallery} (the gallery size)")
    if definition == "fraction":
        return k / gallery
    if definition != "any":
        raise ValueError(f"definition must be one of {RECALL_DEFINITIONS}, got {definition!r}")
    m = relevant.sum(dim=1).double()
    # P(no correct item in k draws without replacement) = prod_{i<k} (G - m - i) / (G - i).
    steps = torch.arange(k, dtype=torch.float64)
    miss = ((gallery - m.unsqueeze(1) - steps).clamp(min=0) / (gallery - steps)).prod(dim=1)
    return float((1 - miss).mean())


def caption_relevance(captions: Sequence[str]) -> torch.Tensor:
    """``(N, N)`` bool: pair ``(i, j)`` is correct when caption ``j`` is word for word caption ``i``.

    Identical captions describe their images equally well, so a caption shared by several images
    has all of them as correct answers (and an image has all copies of its caption).
    """
    ids: dict[str, int] = {}
    index = torch.tensor([ids.setdefault(c, len(ids)) for c in captions])
    return index.unsqueeze(0) == index.unsqueeze(1)


def retrieval_report(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor, captions: Sequence[str],
                     ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@K in both directions and both definitions, with chance, over a paired gallery.

    Args:
        image_embeddings, text_embeddings: ``(N, d)``, row ``i`` of each is pair ``i``.
        captions: the ``N`` caption strings (to find captions shared by several images).
        ks: the K values.

    Returns:
        Keys ``recall_at_{k}_{direction}`` ("any" definition), ``recall_fraction_at_{k}_{direction}`` and
        ``chance_at_{k}_{direction}`` (of the "any" definition), with direction ``text_to_image`` or
        ``image_to_text``, plus ``gallery`` (N).
    """
    check_embeddings(image_embeddings, text_embeddings)
    if len(captions) != image_embeddings.shape[0]:
        raise ValueError(f"expected {image_embeddings.shape[0]} captions, one per pair, got {len(captions)}")
    relevant = caption_relevance(captions).to(image_embeddings.device)
    similarity = text_embeddings.float() @ image_embeddings.float().T  # (texts, images)
    report: dict[str, float] = {"gallery": float(image_embeddings.shape[0])}
    for direction, sim in (("text_to_image", similarity), ("image_to_text", similarity.T)):
        for k in ks:
            report[f"recall_at_{k}_{direction}"] = recall_at_k(sim, relevant, k, "any")
            report[f"recall_fraction_at_{k}_{direction}"] = recall_at_k(sim, relevant, k, "fraction")
            report[f"chance_at_{k}_{direction}"] = chance_recall_at_k(relevant, k, "any")
    return report


@torch.no_grad()
def embed(model: TwoTower, loader, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Image and text embeddings ``(N, d)`` of every batch of ``loader``, on the CPU, in loader order."""
    device = device or next(model.parameters()).device
    images, texts = [], []
    with evaluating(model):
        for batch in loader:
            images.append(model.encode_image(batch["image"].to(device)).cpu())
            texts.append(model.encode_text(batch["text"].to(device)).cpu())
    return torch.cat(images), torch.cat(texts)


# ---------------------------------------------------------------------------
# Zero-shot classification from prompts.
# ---------------------------------------------------------------------------


@torch.no_grad()
def class_embeddings(model: TwoTower, class_names: Sequence[str], templates: Sequence[str] = ("a {}",),
                     vocab=None) -> torch.Tensor:
    """One unit vector per class ``(C, d)``: the mean of its prompts' text embeddings, renormalised.

    With several ``templates`` ("a {}", "a small {}", ...) this is *prompt ensembling*: averaging
    over phrasings removes what each single phrasing adds besides the class.
    """
    from mmbook.data.scene_captions import caption_vocabulary, encode_captions

    if not templates or any("{}" not in t for t in templates):
        raise ValueError(f"templates must be a non-empty list of strings with a '{{}}' for the class name, got {templates!r}")
    vocab = vocab or caption_vocabulary()
    device = next(model.parameters()).device
    vectors = []
    with evaluating(model):
        for name in class_names:
            tokens = encode_captions([t.format(name) for t in templates], vocab).to(device)
            vectors.append(F.normalize(model.encode_text(tokens).mean(dim=0), dim=0))
    return torch.stack(vectors).cpu()


def zero_shot_accuracy(image_embeddings: torch.Tensor, class_vectors: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy of predicting ``argmax_c <image, class_c>`` for ``(N, d)`` images, ``(C, d)`` classes, ``(N,)`` labels."""
    if image_embeddings.shape[1] != class_vectors.shape[1]:
        raise ValueError(f"image embeddings have d={image_embeddings.shape[1]}, class vectors d={class_vectors.shape[1]}")
    if image_embeddings.shape[0] != labels.shape[0]:
        raise ValueError(f"{image_embeddings.shape[0]} images but {labels.shape[0]} labels")
    return float(((image_embeddings @ class_vectors.T).argmax(dim=1) == labels).float().mean())


def sample_per_class(labels: torch.Tensor, per_class: int | None, seed: int = 0) -> torch.Tensor:
    """Indices of ``per_class`` random examples of every class in ``labels`` (all of them if ``None``)."""
    if per_class is None:
        return torch.arange(len(labels))
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for c in labels.unique().tolist():
        members = (labels == c).nonzero().flatten()
        if len(members) < per_class:
            raise ValueError(f"class {c} has only {len(members)} examples, fewer than per_class={per_class}")
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(chosen)


# ---------------------------------------------------------------------------
# The modality gap.
# ---------------------------------------------------------------------------


def modality_gap(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> float:
    """Distance between the centroids of the two clouds, ``|mean(image) - mean(text)|`` (Liang et al., 2022).

    For unit vectors it lies in ``[0, 2]``; 0 means the clouds share a centre.
    """
    if image_embeddings.ndim != 2 or text_embeddings.ndim != 2 or image_embeddings.shape[1] != text_embeddings.shape[1]:
        raise ValueError(f"expected (N, d) and (M, d) embeddings, got {tuple(image_embeddings.shape)} and "
                         f"{tuple(text_embeddings.shape)}")
    if image_embeddings.shape[0] == 0 or text_embeddings.shape[0] == 0:
        raise ValueError("the modality gap needs at least one embedding of each modality")
    return float((image_embeddings.float().mean(0) - text_embeddings.float().mean(0)).norm())


def close_modality_gap(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor,
                       image_centre: torch.Tensor | None = None,
                       text_centre: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift both clouds to a common centroid (the origin) and renormalise: ``(N, d), (M, d)`` -> same shapes.

    ``image_centre`` and ``text_centre`` default to each cloud's own mean; pass the training
    set's means to avoid using test statistics.
    """
    image_centre = image_embeddings.mean(0) if image_centre is None else image_centre
    text_centre = text_embeddings.mean(0) if text_centre is None else text_centre
    return F.normalize(image_embeddings - image_centre, dim=1), F.normalize(text_embeddings - text_centre, dim=1)


# ---------------------------------------------------------------------------
# A non-contrastive baseline: a matching classifier that must score every pair.
# ---------------------------------------------------------------------------


class MatchingClassifier(nn.Module):
    """Image-text matching with the Fusion chapter's parts: encode both, concatenate, score with an MLP.

    Training batches pair every image with its own caption (label 1) and with the next image's
    caption in the batch (label 0); ``forward`` returns ``(B, 2)`` logits, positive then negative
    pair. :meth:`score` rates given pairs; retrieval must call it on *every* query-gallery pair.
    """

    def __init__(self, vocab_size: int, width: int = 16, text_hidden: int = 64, hidden: int = 128) -> None:
        super().__init__()
        from mmbook.fusion.base import ConcatFusion

        self.image_tower = SceneImageTower(width)
        self.text_tower = TextEncoder(vocab_size, kind="gru", embed_dim=32, hidden_size=text_hidden,
                                      out_features=None)
        self.fusion = ConcatFusion([self.image_tower.out_features, self.text_tower.out_features])
        self.head = nn.Sequential(nn.Linear(self.fusion.out_features, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def score(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """Pair scores ``(P,)`` from tower features ``(P, D_img)`` and ``(P, D_txt)``."""
        return self.head(self.fusion([image_features, text_features])).squeeze(1)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``{"image", "text"}`` -> ``(B, 2)``: scores of (image i, caption i) and (image i, caption i+1)."""
        image = self.image_tower(batch["image"])
        text = self.text_tower(batch["text"])
        return torch.stack([self.score(image, text), self.score(image, text.roll(1, dims=0))], dim=1)


def matching_loss(output: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Binary cross-entropy of :class:`MatchingClassifier`'s ``(B, 2)`` scores: 1 for the own caption, 0 else."""
    targets = torch.zeros_like(output, dtype=torch.float32)
    targets[:, 0] = 1.0
    return F.binary_cross_entropy_with_logits(output.float(), targets)


@torch.no_grad()
def matching_accuracy(output: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """How often the own caption scores above the other one."""
    return (output[:, 0] > output[:, 1]).sum(), int(output.shape[0])


@torch.no_grad()
def matching_similarity(model: MatchingClassifier, image_features: torch.Tensor, text_features: torch.Tensor,
                        chunk: int = 64) -> torch.Tensor:
    """``(texts, images)`` scores of every pair: the head runs ``N_text x N_image`` times."""
    model.eval()
    rows = []
    for start in range(0, text_features.shape[0], chunk):
        texts = text_features[start : start + chunk]  # (c, D_txt)
        c, n = texts.shape[0], image_features.shape[0]
        pairs_text = texts.unsqueeze(1).expand(c, n, -1).reshape(c * n, -1)
        pairs_image = image_features.unsqueeze(0).expand(c, n, -1).reshape(c * n, -1)
        rows.append(model.score(pairs_image, pairs_text).view(c, n))
    return torch.cat(rows)


# ---------------------------------------------------------------------------
# A supervised reference: the same image tower trained with class labels.
# ---------------------------------------------------------------------------


class PresenceClassifier(nn.Module):
    """The image tower with a linear head over the 10 classes, trained on *which classes a scene holds*.

    ``forward(batch)`` maps ``batch["image"]`` ``(B, 3, 64, 64)`` to ``(B, 10)`` logits, one per class;
    on a single-object scene the largest one is the predicted class.
    """

    def __init__(self, width: int = 16, num_classes: int = 10) -> None:
        super().__init__()
        self.image_tower = SceneImageTower(width)
        self.head = nn.Linear(self.image_tower.out_features, num_classes)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``{"image": (B, 3, 64, 64)}`` -> ``(B, num_classes)`` logits."""
        return self.head(self.image_tower(batch["image"]))


def presence_targets(classes: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """Multi-hot ``(B, num_classes)`` float targets from ``(B, 4)`` scene classes padded with ``-1``."""
    targets = torch.zeros(classes.shape[0], num_classes + 1, device=classes.device)
    targets.scatter_(1, classes.clamp(min=-1) % (num_classes + 1), 1.0)  # -1 lands in the extra last column
    return targets[:, :num_classes]


def presence_loss(output: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Binary cross-entropy of :class:`PresenceClassifier` logits against the classes present in each scene."""
    return F.binary_cross_entropy_with_logits(output.float(), presence_targets(batch["classes"], output.shape[1]))


@torch.no_grad()
def presence_accuracy(output: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """How often the top-scoring class is one of the classes in the scene."""
    top = output.argmax(dim=1, keepdim=True)
    return (batch["classes"] == top).any(dim=1).sum(), int(output.shape[0])


# ---------------------------------------------------------------------------
# Exercise checkers.
# ---------------------------------------------------------------------------


def _unit(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=generator), dim=-1)


def check_info_nce(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> None:
    """Check a reader's ``fn(image_embeddings (B, d), text_embeddings (B, d), temperature) -> scalar``.

    Compares with :func:`info_nce` on several batches and temperatures; when a case fails, it
    names the usual mistakes (one direction only, temperature multiplied instead of divided,
    a sum instead of a mean, targets that are not the diagonal). Prints "All checks passed".
    """
    if not callable(fn):
        raise TypeError(f"check_info_nce expects a function, got {type(fn).__name__}")
    generator = torch.Generator().manual_seed(0)
    cases = []
    for batch, dim, temperature in ((4, 8, 0.07), (16, 32, 0.5), (1, 4, 1.0), (9, 16, 0.1)):
        image = _unit(generator, batch, dim)
        text = F.normalize(image + 0.8 * torch.randn(batch, dim, generator=generator), dim=-1)
        cases.append((f"B={batch}, d={dim}, temperature={temperature}", image, text, temperature))
    for name, image, text, temperature in cases:
        expected = info_nce(image, text, temperature)
        try:
            got = fn(image.clone(), text.clone(), temperature)
        except Exception as error:
            raise AssertionError(f"{name}: your function raised {error.__class__.__name__}: {error}") from error
        if not isinstance(got, torch.Tensor) or got.numel() != 1:
            raise AssertionError(f"{name}: expected a scalar tensor, got {type(got).__name__} "
                                 f"{tuple(got.shape) if isinstance(got, torch.Tensor) else ''}")
        got = got.reshape(())
        if torch.isclose(got.float(), expected, rtol=1e-4, atol=1e-5):
            continue
        logits = image @ text.T
        targets = torch.arange(len(image))
        hints = {
            "only the image -> text direction": F.cross_entropy(logits / temperature, targets),
            "only the text -> image direction": F.cross_entropy(logits.T / temperature, targets),
            "the temperature multiplies instead of divides": info_nce(image, text, 1.0 / temperature),
            "the temperature is missing": info_nce(image, text, 1.0),
            "a sum over the batch instead of a mean": info_nce(image, text, temperature) * len(image),
            "the two directions are added, not averaged": 2 * info_nce(image, text, temperature),
        }
        hint = next((h for h, value in hints.items() if torch.isclose(got.float(), value, rtol=1e-4, atol=1e-5)), None)
        message = f"{name}: expected {expected.item():.5f}, got {got.item():.5f}"
        raise AssertionError(message + (f"\n  hint: your result matches {hint}" if hint else
                                        "\n  hint: logits = image @ text.T / temperature; the targets are the "
                                        "diagonal (arange(B)); average the cross-entropy of the rows and of the columns"))
    print(f"All checks passed ({len(cases)} batches against mmbook.alignment.info_nce).")


def check_recall_at_k(fn: Callable[[torch.Tensor, torch.Tensor, int], float]) -> None:
    """Check a reader's ``fn(similarity (Q, G), relevant (Q, G) bool, k) -> float``, the "any" definition.

    Cases: one correct item per query, several correct items, ties broken any way, K = G. When a
    case fails it names the usual mistakes (ascending sort, top K+1 or K-1, the "fraction"
    definition instead of "any"). Prints "All checks passed".
    """
    if not callable(fn):
        raise TypeError(f"check_recall_at_k expects a function, got {type(fn).__name__}")
    generator = torch.Generator().manual_seed(1)
    identity = torch.eye(6, dtype=torch.bool)
    several = torch.rand(8, 10, generator=generator) < 0.25
    several[torch.arange(8), torch.arange(8)] = True
    cases = [
        ("one correct item per query", torch.randn(6, 6, generator=generator), identity, 1),
        ("one correct item per query, K=3", torch.randn(6, 6, generator=generator), identity, 3),
        ("several correct items per query, K=2", torch.randn(8, 10, generator=generator), several, 2),
        ("several correct items per query, K=5", torch.randn(8, 10, generator=generator), several, 5),
        ("K equals the gallery size", torch.randn(5, 7, generator=generator), torch.eye(5, 7, dtype=torch.bool), 7),
    ]
    for name, similarity, relevant, k in cases:
        expected = recall_at_k(similarity, relevant, k, "any")
        try:
            got = float(fn(similarity.clone(), relevant.clone(), k))
        except Exception as error:
            raise AssertionError(f"{name}: your function raised {error.__class__.__name__}: {error}") from error
        if abs(got - expected) <= 1e-6:
            continue
        hints = {"the lowest scores were taken (sort in descending order)": recall_at_k(-similarity, relevant, k, "any"),
                 "the fraction of correct items found, not whether any was found": recall_at_k(similarity, relevant, k, "fraction")}
        if k + 1 <= similarity.shape[1]:
            hints["the top K+1 were used"] = recall_at_k(similarity, relevant, k + 1, "any")
        if k > 1:
            hints["the top K-1 were used"] = recall_at_k(similarity, relevant, k - 1, "any")
        hint = next((h for h, value in hints.items() if abs(got - value) <= 1e-6), None)
        message = f"{name}: expected {expected:.4f}, got {got:.4f}"
        raise AssertionError(message + (f"\n  hint: your result matches {hint}" if hint else
                                        "\n  hint: per query, take the K highest similarities and ask whether "
                                        "any of them is a correct item; average over queries"))
    print(f"All checks passed ({len(cases)} cases against mmbook.alignment.recall_at_k).")


# ---------------------------------------------------------------------------
# The recipe behind ``mmbook train --task scene-retrieval``.
# ---------------------------------------------------------------------------

# 30% of the training captions leave out sizes and places. With complete captions alone, a model can
# tell the scenes of a batch apart by their layout and never learn the classes. Measured in full mode
# (6000 scenes), zero-shot accuracy / text-to-image recall@10: complete captions only (6 epochs, an image
# tower without the global-pool path) 0.10 / 0.71; dropout 0.15 (8 epochs) 0.21 / 0.67; 0.3 (8 epochs)
# 0.22 / 0.66; 0.5 (6 epochs) 0.25 / 0.43.
TRAIN_LAYOUT_DROPOUT = 0.3
# Quick and full defaults of train_scene_retrieval (the CLI reads them).
RETRIEVAL_DEFAULTS: dict[bool, dict[str, Any]] = {
    False: {"scenes": 6000, "test_scenes": 1000, "zero_shot_scenes": 3000, "epochs": 8, "batch_size": 128, "lr": 3e-3},
    True: {"scenes": 2000, "test_scenes": 300, "zero_shot_scenes": 600, "epochs": 5, "batch_size": 64, "lr": 3e-3},
}


def scene_pairs(split: str, count: int, *, seed: int = 0, quick: bool = False, caption_seed: int | None = None,
                exclude_classes: Sequence[int] = (), layout_dropout: float | None = None, download: bool = False,
                progress: bool = False):
    """Scenes with their :func:`~mmbook.data.scene_captions.describe_scenes` captions, ready for a loader.

    Args:
        split: ``"train"`` or ``"test"``.
        count: scenes to generate (fewer are returned when ``exclude_classes`` drops some).
        exclude_classes: drop every scene that holds one of these CIFAR-10 classes.
        layout_dropout: share of captions without sizes and places; default :data:`TRAIN_LAYOUT_DROPOUT`
            for training scenes (so that the model must learn the classes, not only the layout) and 0 for
            test scenes (every test caption is complete).

    Returns:
        ``(scenes, captions, tensors)``: the :class:`~mmbook.data.scenes.SceneSet`, the ``N`` captions,
        and the loader dict ``{"image": uint8 (N, 3, 64, 64), "text": (N, T), "classes": (N, 4),
        "label": (N,)}`` where ``label`` is the class of the first object.
    """
    from mmbook.data.scene_captions import describe_scenes, encode_captions
    from mmbook.data.scenes import load_scenes

    scenes = load_scenes(split, count, seed=seed, quick=quick, download=download, progress=progress)
    if exclude_classes:
        keep = ~torch.isin(scenes.classes, torch.tensor(list(exclude_classes))).any(dim=1)
        scenes = scenes.subset(keep)
    if layout_dropout is None:
        layout_dropout = TRAIN_LAYOUT_DROPOUT if split == "train" else 0.0
    captions = describe_scenes(scenes, seed=seed + (7 if split == "test" else 0) if caption_seed is None else caption_seed,
                               layout_dropout=layout_dropout)
    tensors = {"image": scenes.images, "text": encode_captions(captions), "classes": scenes.classes,
               "label": scenes.classes[:, 0]}
    return scenes, captions, tensors


def single_object(scenes, tensors: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The scenes with exactly one object: their uint8 images ``(M, 3, 64, 64)`` and class labels ``(M,)``."""
    keep = scenes.counts == 1
    return tensors["image"][keep], scenes.classes[keep, 0]


@torch.no_grad()
def embed_images(model: TwoTower, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Unit image embeddings ``(N, d)`` of uint8 scenes ``(N, 3, 64, 64)``, on the CPU."""
    from mmbook.data.loaders import normalize_images

    device = next(model.parameters()).device
    with evaluating(model):
        out = [model.encode_image(normalize_images(images[i : i + batch_size].to(device))).cpu()
               for i in range(0, len(images), batch_size)]
    return torch.cat(out)


def train_scene_retrieval(
    *,
    scenes: int | None = None,
    test_scenes: int | None = None,
    zero_shot_scenes: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = False,
    quick: bool = False,
    download: bool = False,
    temperature: float = INIT_TEMPERATURE,
    learn_temperature: bool = True,
) -> dict[str, Any]:
    """Train a :class:`TwoTower` on scene-caption pairs and measure retrieval and zero-shot accuracy.

    ``None`` arguments take :data:`RETRIEVAL_DEFAULTS` ``[quick]``. Training runs through
    :func:`mmbook.training.fit` with :func:`contrastive_loss`; the test gallery is ``test_scenes``
    scenes from CIFAR-10 test images; zero-shot accuracy is measured on the single-object scenes
    of a further test set, with the ensembled :data:`~mmbook.data.scene_captions.PROMPT_TEMPLATES`.

    Returns:
        The :func:`retrieval_report` keys (``recall_at_1_text_to_image``, ``recall_at_5_image_to_text``,
        ...), plus ``zero_shot_accuracy``, ``zero_shot_chance``, ``zero_shot_images``, ``modality_gap``,
        ``temperature`` (learned), ``shared_test_captions`` (captions used by more than one test scene),
        ``train_scenes``, ``epochs``, ``train_seconds``, and the ``model`` itself with its ``history``.
    """
    from mmbook.data import DeviceLoader
    from mmbook.data.cifar10 import CIFAR10_CLASSES
    from mmbook.data.scene_captions import PROMPT_TEMPLATES, caption_vocabulary, shared_captions
    from mmbook.runtime import pick_device, seed_everything
    from mmbook.training import fit

    defaults = RETRIEVAL_DEFAULTS[bool(quick)]
    scenes = defaults["scenes"] if scenes is None else scenes
    test_scenes = defaults["test_scenes"] if test_scenes is None else test_scenes
    zero_shot_scenes = defaults["zero_shot_scenes"] if zero_shot_scenes is None else zero_shot_scenes
    epochs = defaults["epochs"] if epochs is None else epochs
    batch_size = defaults["batch_size"] if batch_size is None else batch_size
    lr = defaults["lr"] if lr is None else lr
    device = pick_device(device)
    seed_everything(seed)
    _, _, train_tensors = scene_pairs("train", scenes, seed=seed, quick=quick, download=download, progress=progress)
    _, test_captions, test_tensors = scene_pairs("test", test_scenes, seed=seed, quick=quick, download=download)
    zs_scenes, _, zs_tensors = scene_pairs("test", zero_shot_scenes, seed=seed + 100, quick=quick,
                                           download=download)
    model = TwoTower(len(caption_vocabulary()), temperature=temperature, learn_temperature=learn_temperature)
    train_loader = DeviceLoader(train_tensors, batch_size, shuffle=True, drop_last=True, device=device, seed=seed)
    started = time.perf_counter()
    history = fit(model, train_loader, epochs=epochs, lr=lr, device=device, loss_fn=contrastive_loss,
                  accuracy_fn=in_batch_accuracy, progress=progress, description="scene-retrieval")
    train_seconds = time.perf_counter() - started
    image_embeddings, text_embeddings = embed(model, DeviceLoader(test_tensors, 500, device=device), device)
    report: dict[str, Any] = retrieval_report(image_embeddings, text_embeddings, test_captions)
    zs_images, zs_labels = single_object(zs_scenes, zs_tensors)
    if len(zs_labels) == 0:
        raise ValueError(f"the {zero_shot_scenes} zero-shot scenes hold no single-object scene; ask for more")
    classes = class_embeddings(model, CIFAR10_CLASSES, PROMPT_TEMPLATES)
    report.update({
        "zero_shot_accuracy": zero_shot_accuracy(embed_images(model, zs_images), classes, zs_labels),
        "zero_shot_chance": 1.0 / len(CIFAR10_CLASSES),
        "zero_shot_images": int(len(zs_labels)),
        "modality_gap": modality_gap(image_embeddings, text_embeddings),
        "temperature": model.temperature,
        "shared_test_captions": shared_captions(test_captions)["shared"],
        "train_scenes": int(train_tensors["label"].shape[0]),
        "epochs": epochs,
        "train_seconds": train_seconds,
        "final_train_loss": history.last["train_loss"] if len(history) else float("nan"),
        "model": model,
        "history": history,
    })
    return report
