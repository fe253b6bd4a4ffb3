"""Cross-attention fusion: text tokens attend to image regions.

This fusion needs *sets* of features, not one vector per modality: one vector per
image region and one per caption token. Two encoders, beside the ones they extend, provide them:

- :class:`mmbook.cnn.ImageRegionEncoder`: LeNet's convolutional trunk gives a 5x5 grid of
  16-channel cells = 25 regions, plus one "global" region (LeNet's pooled feature),
  each projected to ``out_features``: ``(B, 3, 32, 32) -> (B, 26, out_features)``.
- :class:`mmbook.text.TokenEncoder`: the recurrent encoder's output at *every* step:
  ``(B, T) -> (B, T, out_features)``, with padding positions set to exactly zero.

The fusion interface stays the same (a list of tensors in, one tensor out); the
tensors are just 3-d. Padding is recognised as all-zero rows, which the token
encoder guarantees.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


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
    if isinstance(features, torch.Tensor) or not isinstance(features, Sequence):
        raise TypeError("fusion expects a list of feature tensors, one per modality")
    if len(features) != len(in_features):
        raise ValueError(f"fusion was built for {len(in_features)} modalities, got {len(features)} feature tensors")
    shapes = [tuple(f.shape) for f in features]
    for i, (feature, size) in enumerate(zip(features, in_features)):
        if feature.ndim != 3 or feature.shape[2] != size:
            raise ValueError(
                f"modality {i}: expected a sequence of features (B, L, {size}), got {tuple(feature.shape)}; all shapes: "
                f"{shapes}. Cross-attention needs region/token features: use ImageRegionEncoder and TokenEncoder."
            )
    if len({shape[0] for shape in shapes}) > 1:
        raise ValueError(f"all modalities must have the same batch size, got shapes {shapes}")


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
