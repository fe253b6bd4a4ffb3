"""The fusion interface, its input checks, and concatenation (early fusion).

Every fusion module has the same interface, so any of them can sit in
:class:`mmbook.multimodal.MultimodalModel`::

    fusion(features: list[Tensor (B, D_i)]) -> Tensor (B, fusion.out_features)

``out_features`` is known at construction from the input sizes, so the head that
follows can be built to match.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def check_features(features: Sequence[torch.Tensor], in_features: Sequence[int]) -> None:
    """Raise a clear error unless ``features`` are ``len(in_features)`` tensors ``(B, D_i)`` with one B."""
    if isinstance(features, torch.Tensor) or not isinstance(features, Sequence):
        raise TypeError("fusion expects a list of feature tensors, one per modality, e.g. fusion([image_feat, text_feat])")
    if len(features) != len(in_features):
        raise ValueError(f"fusion was built for {len(in_features)} modalities, got {len(features)} feature tensors")
    shapes = [tuple(f.shape) for f in features]
    for i, (feature, size) in enumerate(zip(features, in_features)):
        if feature.ndim != 2 or feature.shape[1] != size:
            raise ValueError(f"modality {i}: expected features of shape (B, {size}), got {tuple(feature.shape)}; all shapes: {shapes}")
    if len({shape[0] for shape in shapes}) > 1:
        raise ValueError(f"all modalities must have the same batch size, got shapes {shapes}")


def feature_sizes(in_features: Sequence[int], name: str) -> list[int]:
    """The per-modality feature sizes as ints; a clear error unless there is at least one, all positive."""
    sizes = [int(d) for d in in_features]
    if not sizes or any(d <= 0 for d in sizes):
        raise ValueError(f"{name} needs one positive feature size per modality, got {list(in_features)}")
    return sizes


def softmax_mix(stacked: torch.Tensor, weight_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix modalities with one softmax weight each: the core of global weighted and learned late fusion.

    Args:
        stacked: ``(B, M, D)``, one ``D``-vector per modality (features or logits).
        weight_logits: ``(M,)`` learned logits of the modality weights.

    Returns:
        The weighted sum ``sum_m alpha_m stacked[:, m]`` ``(B, D)``, and ``alpha = softmax(weight_logits)`` ``(M,)``.
    """
    alpha = torch.softmax(weight_logits, dim=0)
    return (alpha.view(1, -1, 1) * stacked).sum(dim=1), alpha


class ConcatFusion(nn.Module):
    """Concatenation (early, feature-level) fusion.

    ``[(B, D_1), ..., (B, D_M)] -> (B, D_1 + ... + D_M)``. It has no parameters, but
    the head after it grows with the sum of the feature sizes.

    Args:
        in_features: the feature size of each modality, e.g. ``[10, 10]``.
    """

    def __init__(self, in_features: Sequence[int]) -> None:
        super().__init__()
        self.in_features = feature_sizes(in_features, "ConcatFusion")
        self.out_features = sum(self.in_features)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """List of ``(B, D_i)`` tensors -> ``(B, sum D_i)``."""
        check_features(features, self.in_features)
        return torch.cat(list(features), dim=1)
