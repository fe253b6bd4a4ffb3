"""Late (decision-level) fusion: each modality predicts on its own; the logits are mixed.

A late fusion returns class logits, not features (``produces_logits = True``: no head after it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mmbook.fusion.base import SoftmaxMix, check_features, feature_sizes


class LateFusion(SoftmaxMix):
    """Per-modality classifiers whose logits are averaged or mixed with learned weights.

    Shapes::

        x_m                 (B, D_m)
        logits_m = f_m(x_m) (B, C)     f_m: Linear -> ReLU -> Linear, one per modality
        average:  output = mean_m logits_m                 (B, C)
        learned:  output = sum_m softmax(w)_m logits_m     (B, C)

    Averaging logits is the same, for the prediction, as averaging log-probabilities
    (they differ by a per-sample constant): a product of experts. The model can use
    each modality's evidence but cannot learn interactions between them.
    ``last_logits`` keeps the per-modality logits ``(B, M, C)`` of the last call.

    Args:
        in_features: feature size of each modality.
        num_classes: number of classes C.
        mixing: ``"average"`` or ``"learned"``.
        hidden: hidden size of each per-modality classifier.
    """

    produces_logits = True

    def __init__(self, in_features: Sequence[int], num_classes: int = 10, mixing: str = "average", hidden: int = 64) -> None:
        super().__init__()
        if mixing not in ("average", "learned"):
            raise ValueError(f"mixing must be 'average' or 'learned', got {mixing!r}")
        self.in_features = feature_sizes(in_features, "LateFusion")
        self.mixing = mixing
        self.classifiers = nn.ModuleList(
            nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)) for d in self.in_features
        )
        self.weight_logits = nn.Parameter(torch.zeros(len(self.in_features)), requires_grad=mixing == "learned")
        self.out_features = num_classes
        self.last_logits: torch.Tensor | None = None

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """List of ``(B, D_m)`` -> logits ``(B, num_classes)``."""
        check_features(features, self.in_features)
        logits = torch.stack([f(x) for f, x in zip(self.classifiers, features)], dim=1)  # (B, M, C)
        self.last_logits = logits.detach()
        return self.mix(logits)


class AverageLateFusion(LateFusion):
    """:class:`LateFusion` with ``mixing="average"``."""

    def __init__(self, in_features: Sequence[int], num_classes: int = 10, hidden: int = 64) -> None:
        super().__init__(in_features, num_classes=num_classes, mixing="average", hidden=hidden)


class LearnedLateFusion(LateFusion):
    """:class:`LateFusion` with ``mixing="learned"``."""

    def __init__(self, in_features: Sequence[int], num_classes: int = 10, hidden: int = 64) -> None:
        super().__init__(in_features, num_classes=num_classes, mixing="learned", hidden=hidden)
