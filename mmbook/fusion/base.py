"""Input checks of the fusion interface (see :mod:`mmbook.fusion`), and concatenation (early fusion)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def check_features(features: Sequence[torch.Tensor], in_features: Sequence[int],
                   sequences: bool = False) -> None:
    """Raise a clear error unless ``features`` are ``len(in_features)`` tensors ``(B, D_i)`` with one B.

    With ``sequences=True``, tensors ``(B, L_i, D_i)`` (region and token features) instead.
    """
    if isinstance(features, torch.Tensor) or not isinstance(features, Sequence):
        raise TypeError("fusion expects a list of feature tensors, one per modality, e.g. fusion([image_feat, text_feat])")
    if len(features) != len(in_features):
        raise ValueError(f"fusion was built for {len(in_features)} modalities, got {len(features)} feature tensors")
    shapes = [tuple(f.shape) for f in features]
    for i, (feature, size) in enumerate(zip(features, in_features)):
        if feature.ndim != 2 + sequences or feature.shape[-1] != size:
            expected = f"a sequence of features (B, L, {size})" if sequences else f"features of shape (B, {size})"
            hint = (". Cross-attention needs region/token features: use ImageRegionEncoder and TokenEncoder."
                    if sequences else "")
            raise ValueError(f"modality {i}: expected {expected}, got {tuple(feature.shape)}; all shapes: {shapes}{hint}")
    if len({shape[0] for shape in shapes}) > 1:
        raise ValueError(f"all modalities must have the same batch size, got shapes {shapes}")


def feature_sizes(in_features: Sequence[int], name: str) -> list[int]:
    """The per-modality feature sizes as ints; a clear error unless there is at least one, all positive."""
    sizes = [int(d) for d in in_features]
    if not sizes or any(d <= 0 for d in sizes):
        raise ValueError(f"{name} needs one positive feature size per modality, got {list(in_features)}")
    return sizes


class SoftmaxMix(nn.Module):
    """Base of global weighted and learned late fusion: one softmax weight per modality, ``softmax(weight_logits)``."""

    last_weights: torch.Tensor | None = None  # (B, M), the weights of the last call

    @property
    def weights(self) -> torch.Tensor:
        """The modality weights ``(M,)``, detached."""
        return torch.softmax(self.weight_logits.detach(), dim=0)

    def mix(self, stacked: torch.Tensor) -> torch.Tensor:
        """``(B, M, D)``, one vector per modality (features or logits) -> ``sum_m alpha_m stacked[:, m]`` ``(B, D)``."""
        alpha = torch.softmax(self.weight_logits, dim=0)
        self.last_weights = alpha.detach().expand(stacked.shape[0], -1)
        return (alpha.view(1, -1, 1) * stacked).sum(dim=1)


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
