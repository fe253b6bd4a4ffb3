"""Cross-attention fusion: text tokens attend to image regions.

This fusion needs *sets* of features, not one vector per modality: one vector per image
region, ``(B, 26, D)`` from :class:`mmbook.cnn.ImageRegionEncoder`, and one per caption token,
``(B, T, D)`` from :class:`mmbook.text.TokenEncoder`, whose padding positions are exactly zero:
padding is recognised as all-zero rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mmbook.fusion.base import check_features


def region_token_sizes(in_features: Sequence[int], hidden: int, heads: int, name: str) -> list[int]:
    """``[D_img, D_txt]`` as ints; a clear error unless there are two positive sizes and ``heads`` divides ``hidden``."""
    sizes = [int(d) for d in in_features]
    if len(sizes) != 2:
        raise ValueError(f"{name} fuses exactly two modalities (image regions, text tokens), got {len(sizes)}")
    if any(d <= 0 for d in sizes):
        raise ValueError(f"{name} needs positive feature sizes, got {sizes}")
    if hidden <= 0 or hidden % heads:
        raise ValueError(f"hidden ({hidden}) must be positive and divisible by heads ({heads})")
    return sizes


def check_sequences(features: Sequence[torch.Tensor], in_features: Sequence[int]) -> None:
    """Raise a clear error unless ``features`` are tensors ``(B, L_m, D_m)`` with one B."""
    check_features(features, in_features, sequences=True)


class CrossAttentionFusion(nn.Module):
    """Text tokens attend to image regions; the attended tokens are pooled.

    Shapes (image first, text second, as in the book's models)::

        regions   r   (B, R, D_img)   -> keys and values  k = W_k r      (B, R, hidden)
        tokens    t   (B, T, D_txt)   -> queries          q = W_q t      (B, T, hidden)
        attended  a = MultiheadAttention(q, k, k)                        (B, T, hidden)
        h = LayerNorm(q + a)                                             (B, T, hidden)
        text part   = mean of h over real (non-padding) tokens           (B, hidden)
        image part  = mean of k over regions                             (B, hidden)
        output = [text part; image part]                                 (B, 2 * hidden)

    The image part keeps the output informative when a caption is missing (all
    tokens padding). ``last_attention`` holds the attention weights ``(B, T, R)``
    of the last call, averaged over heads.

    Args:
        in_features: ``[D_img, D_txt]``, the region and token sizes.
        hidden: attention width.
        heads: number of attention heads (must divide ``hidden``).
    """

    needs_sequences = True

    def __init__(self, in_features: Sequence[int], hidden: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.in_features = region_token_sizes(in_features, hidden, heads, "CrossAttentionFusion")
        self.key_proj = nn.Linear(self.in_features[0], hidden)
        self.query_proj = nn.Linear(self.in_features[1], hidden)
        self.attention = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.norm = nn.LayerNorm(hidden)
        self.out_features = 2 * hidden
        self.last_attention: torch.Tensor | None = None

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """``[(B, R, D_img), (B, T, D_txt)]`` -> ``(B, 2 * hidden)``."""
        check_sequences(features, self.in_features)
        regions, tokens = features
        mask = (tokens.abs().sum(dim=2) > 0).unsqueeze(2).float()  # (B, T, 1): 1 for real tokens
        keys = self.key_proj(regions)
        queries = self.query_proj(tokens)
        attended, weights = self.attention(queries, keys, keys, need_weights=True)
        self.last_attention = weights.detach()
        h = self.norm(queries + attended)
        text_part = (h * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return torch.cat([text_part, keys.mean(dim=1)], dim=1)
