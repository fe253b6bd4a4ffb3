"""Co-attention fusion: each modality attends to the other (two-way cross-attention, as in ViLBERT).

:class:`~mmbook.fusion.attention.CrossAttentionFusion` lets the caption's tokens look at the
image's regions, one way. ViLBERT's co-attention block (Lu et al., 2019) runs two such
attentions side by side: the tokens query the regions, and the regions query the tokens, each
with its own weights, both reading the other modality's *input* features::

    regions   r  (B, R, D_img) -> r = W_r r                                  (B, R, hidden)
    tokens    t  (B, T, D_txt) -> t = W_t t                                  (B, T, hidden)
    text  <- image:  t' = LayerNorm(t + MHA(query=t, key=r, value=r))       (B, T, hidden)
    image <- text:   r' = LayerNorm(r + MHA(query=r, key=t, value=t))       (B, R, hidden)
    output = [mean of t' over real tokens ; mean of r' over regions]        (B, 2 * hidden)

Padding tokens (all-zero rows, as :class:`~mmbook.fusion.attention.TokenEncoder` returns them)
are never attended to, and are left out of the text mean. A caption that is all padding gives
the regions nothing to read: their attended part is zero, so ``r' = LayerNorm(r)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mmbook.fusion.attention import check_sequences, region_token_sizes


class CoAttentionFusion(nn.Module):
    """Two-way cross-attention between image regions and text tokens, pooled to one vector.

    Shapes: ``[(B, R, D_img), (B, T, D_txt)]`` -> ``(B, 2 * hidden)``.

    ``last_attention`` holds the weights of the last call, averaged over heads:
    ``{"text_to_image": (B, T, R), "image_to_text": (B, R, T)}``.

    Args:
        in_features: ``[D_img, D_txt]``, the region and token sizes.
        hidden: attention width.
        heads: number of attention heads (must divide ``hidden``).
    """

    needs_sequences = True

    def __init__(self, in_features: Sequence[int], hidden: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.in_features = region_token_sizes(in_features, hidden, heads, "CoAttentionFusion")
        self.image_proj = nn.Linear(self.in_features[0], hidden)
        self.text_proj = nn.Linear(self.in_features[1], hidden)
        self.text_to_image = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.image_to_text = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.text_norm = nn.LayerNorm(hidden)
        self.image_norm = nn.LayerNorm(hidden)
        self.out_features = 2 * hidden
        self.last_attention: dict[str, torch.Tensor] | None = None

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """``[(B, R, D_img), (B, T, D_txt)]`` -> ``(B, 2 * hidden)``."""
        check_sequences(features, self.in_features)
        regions, tokens = features
        real = tokens.abs().sum(dim=2) > 0  # (B, T): True at real tokens
        has_text = real.any(dim=1)  # (B,)
        # A caption with no real token would mask every key, and softmax over nothing is NaN:
        # let such rows attend to their (zero) tokens, then drop what they read.
        padding = ~real & has_text.unsqueeze(1)
        r = self.image_proj(regions)  # (B, R, hidden)
        t = self.text_proj(tokens)  # (B, T, hidden)
        text_attended, text_weights = self.text_to_image(t, r, r, need_weights=True)  # (B, T, hidden), (B, T, R)
        image_attended, image_weights = self.image_to_text(r, t, t, key_padding_mask=padding, need_weights=True)
        image_attended = image_attended * has_text.view(-1, 1, 1).to(image_attended.dtype)
        self.last_attention = {"text_to_image": text_weights.detach(), "image_to_text": image_weights.detach()}
        t_new = self.text_norm(t + text_attended)
        r_new = self.image_norm(r + image_attended)
        mask = real.unsqueeze(2).to(t_new.dtype)  # (B, T, 1)
        text_part = (t_new * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return torch.cat([text_part, r_new.mean(dim=1)], dim=1)
