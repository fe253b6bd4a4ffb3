"""Tensor (bilinear) fusion: every product of features across modalities.

:class:`TensorFusion` is the Tensor Fusion Network's fusion layer (Zadeh et al., 2017);
:class:`LowRankTensorFusion` computes a projection of the same tensor without
building it (Liu et al., 2018).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from mmbook.fusion.base import check_features, feature_sizes


def _with_one(x: torch.Tensor) -> torch.Tensor:
    """``(B, D)`` -> ``(B, D + 1)``: append a constant 1, which keeps the unimodal terms in the product."""
    return torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)


class TensorFusion(nn.Module):
    """Outer product of the modality features, each extended by a constant 1.

    Shapes (two modalities)::

        z_v = [x_v; 1]   (B, D_v + 1)
        z_t = [x_t; 1]   (B, D_t + 1)
        output = flatten(z_v outer z_t)   (B, (D_v + 1)(D_t + 1))

    The 1s keep ``x_v``, ``x_t`` themselves and the constant among the products, so
    the head sees unimodal and bimodal terms. The size is the *product* of the sizes:
    this is what the low-rank version avoids.

    Args:
        in_features: feature size of each modality.
    """

    def __init__(self, in_features: Sequence[int]) -> None:
        super().__init__()
        self.in_features = feature_sizes(in_features, "TensorFusion")
        self.out_features = math.prod(d + 1 for d in self.in_features)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """List of ``(B, D_m)`` -> ``(B, prod_m (D_m + 1))``."""
        check_features(features, self.in_features)
        fused = _with_one(features[0])
        for x in features[1:]:
            fused = (fused.unsqueeze(2) * _with_one(x).unsqueeze(1)).flatten(1)
        return fused


class LowRankTensorFusion(nn.Module):
    """Low-rank Multimodal Fusion (Liu et al., 2018).

    A linear map of the tensor-fusion output ``W . (z_1 outer ... outer z_M)`` with the
    weight tensor ``W`` written as a sum of ``rank`` outer products of per-modality
    factors. Then the big tensor never needs to be built::

        z_m = [x_m; 1]                               (B, D_m + 1)
        a_m^r = z_m @ W_m^r                          (B, hidden)  for r = 1..rank
        output = sum_r lambda_r * prod_m a_m^r + b   (B, hidden)

    Parameters grow with the *sum* of the feature sizes times ``rank * hidden``.

    Args:
        in_features: feature size of each modality.
        rank: number of rank-one terms.
        hidden: output size.
    """

    def __init__(self, in_features: Sequence[int], rank: int = 4, hidden: int = 32) -> None:
        super().__init__()
        self.in_features = feature_sizes(in_features, "LowRankTensorFusion")
        if rank <= 0:
            raise ValueError(f"rank must be positive, got {rank}")
        self.rank = rank
        self.factors = nn.ParameterList(nn.Parameter(torch.empty(rank, d + 1, hidden)) for d in self.in_features)
        for factor in self.factors:
            nn.init.xavier_normal_(factor)
        self.rank_weights = nn.Parameter(torch.full((1, rank), 1.0 / rank))
        self.bias = nn.Parameter(torch.zeros(1, hidden))
        self.out_features = hidden

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """List of ``(B, D_m)`` -> ``(B, hidden)``."""
        check_features(features, self.in_features)
        product = None
        for factor, x in zip(self.factors, features):
            a = torch.einsum("bd,rdh->rbh", _with_one(x), factor)  # (rank, B, hidden)
            product = a if product is None else product * a
        return torch.einsum("or,rbh->bh", self.rank_weights, product) + self.bias
