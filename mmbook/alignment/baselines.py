"""Two references for the contrastive model, built from the same towers.

- :class:`MatchingClassifier`: the Fusion chapter's answer, a fused classifier that scores one
  (image, caption) pair at a time, so retrieval must run it on every query-gallery pair;
- :class:`PresenceClassifier`: the image tower trained with class labels (which classes a scene holds).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn import functional as F

from mmbook.alignment.model import SceneImageTower
from mmbook.text import TextEncoder


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
