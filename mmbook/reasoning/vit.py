"""Images as tokens: a vision transformer (ViT) and a single-stream transformer over patches and words (ViLT).

ViT (Dosovitskiy et al., 2021) cuts an image into ``p x p`` patches, embeds each with one linear map (a
convolution whose kernel and stride are ``p``), prepends a learned class token, adds learned position
embeddings and runs a Transformer encoder; the class token's output is classified::

    images (B, 3, H, W) -> patches (B, N, dim), N = (H / p) * (W / p)
                        -> [cls; patches] + positions (B, 1 + N, dim) -> encoder -> cls (B, dim) -> logits

ViLT (Kim et al., 2021) reads an image and a text with one such encoder: the patch tokens and the word
tokens, each with its position embedding and a *modality-type* embedding, are concatenated into one
sequence, so every layer attends across both. :class:`PatchQuestionTransformer` is that model for the
VQA batches of :mod:`mmbook.reasoning.models`, answering from the class token.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from mmbook.reasoning.batches import flat_questions, per_question, pixels


class PatchEmbedding(nn.Module):
    """``(B, C, H, W)`` -> ``(B, N, dim)``: non-overlapping ``patch_size`` patches, each mapped linearly to ``dim``.

    Raises:
        ValueError: if ``patch_size`` does not divide ``image_size``, or an input is not ``(B, channels,
            image_size, image_size)``.
    """

    def __init__(self, image_size: int = 32, patch_size: int = 4, channels: int = 3, dim: int = 64) -> None:
        super().__init__()
        for name, value in (("image_size", image_size), ("patch_size", patch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if image_size % patch_size:
            divisors = [d for d in range(1, image_size + 1) if image_size % d == 0]
            raise ValueError(f"patch_size {patch_size} does not divide image_size {image_size}: the patches must tile "
                             f"the image; choose one of {divisors}")
        self.image_size, self.patch_size, self.channels = image_size, patch_size, channels
        self.num_patches = (image_size // patch_size) ** 2
        self.project = nn.Conv2d(channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        expected = (self.channels, self.image_size, self.image_size)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"expected images (B, {', '.join(map(str, expected))}), got {tuple(images.shape)}")
        return self.project(images).flatten(2).transpose(1, 2)  # (B, N, dim)


def encoder(dim: int, depth: int, heads: int, mlp_ratio: int = 2, dropout: float = 0.0) -> nn.TransformerEncoder:
    """``depth`` pre-norm Transformer encoder layers of width ``dim`` (ViT's block: LayerNorm before attention and MLP)."""
    if dim % heads:
        raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
    layer = nn.TransformerEncoderLayer(dim, heads, mlp_ratio * dim, dropout, activation="gelu", batch_first=True,
                                       norm_first=True)
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)


class VisionTransformer(nn.Module):
    """ViT for small images: ``(B, 3, image_size, image_size)`` floats -> ``(B, num_classes)`` logits.

    Args:
        num_classes: outputs of the head.
        image_size, patch_size: the side of the (square) images and of the patches; ``patch_size`` must
            divide ``image_size``. CIFAR-10 with ``patch_size=4`` gives 64 tokens.
        dim, depth, heads, mlp_ratio: the encoder's width, layers, attention heads and MLP width factor.
    """

    def __init__(self, num_classes: int = 10, image_size: int = 32, patch_size: int = 4, dim: int = 64,
                 depth: int = 4, heads: int = 4, mlp_ratio: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.patches = PatchEmbedding(image_size, patch_size, 3, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.position = nn.Parameter(torch.zeros(1, 1 + self.patches.num_patches, dim))
        nn.init.normal_(self.position, std=0.02)
        self.encoder = encoder(dim, depth, heads, mlp_ratio, dropout)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> the encoder's input ``(B, 1 + N, dim)``: class token, then patches, with positions."""
        patches = self.patches(images)
        return torch.cat([self.cls.expand(len(patches), -1, -1), patches], dim=1) + self.position

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.encoder(self.tokens(images))[:, 0]))


class PatchQuestionTransformer(nn.Module):
    """ViLT in miniature: one Transformer over ``[cls; image patches; question words]`` answers a VQA batch.

    ``batch["image"]`` ``(B, 3, 64, 64)`` and ``batch["question"]`` ``(B, T)`` or ``(B, K, T)`` (see
    :mod:`mmbook.reasoning.models`) -> ``(N, num_answers)``. Patches get positions and the type embedding 0,
    words positions and the type embedding 1; padding words are masked out of attention. The patches are
    embedded once per image and repeated for its ``K`` questions, but every layer runs on each
    (image, question) sequence: single-stream models pay for the image once per question.
    """

    def __init__(self, vocab_size: int, num_answers: int, image_size: int = 64, patch_size: int = 8, dim: int = 64,
                 depth: int = 2, heads: int = 4, max_words: int = 32) -> None:
        super().__init__()
        self.patches = PatchEmbedding(image_size, patch_size, 3, dim)
        self.words = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.patch_position = nn.Parameter(torch.zeros(1, self.patches.num_patches, dim))
        self.word_position = nn.Parameter(torch.zeros(1, max_words, dim))
        self.modality = nn.Embedding(2, dim)  # 0: image patch, 1: word
        for parameter in (self.patch_position, self.word_position):
            nn.init.normal_(parameter, std=0.02)
        self.encoder = encoder(dim, depth, heads)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_answers)
        self.max_words = max_words

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        questions, k = flat_questions(batch)  # (N, T)
        if questions.shape[1] > self.max_words:
            raise ValueError(f"questions of at most {self.max_words} words, got {questions.shape[1]}; build the "
                             f"model with a larger max_words")
        image = self.patches(pixels(batch["image"])) + self.patch_position + self.modality.weight[0]  # (B, P, dim)
        image = per_question(image, k)  # (N, P, dim)
        words = self.words(questions) + self.word_position[:, : questions.shape[1]] + self.modality.weight[1]
        sequence = torch.cat([self.cls.expand(len(words), -1, -1), image, words], dim=1)
        padding = torch.cat([torch.zeros(len(words), 1 + image.shape[1], dtype=torch.bool, device=words.device),
                             questions == 0], dim=1)
        return self.head(self.norm(self.encoder(sequence, src_key_padding_mask=padding)[:, 0]))
