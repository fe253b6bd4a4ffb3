"""Product fusion by feature-wise modulation: FiLM (Perez et al., 2018) over modality vectors.

Concatenation *adds* what the modalities say (the head sees ``[x_v; x_t]`` and a linear
layer sums their contributions); many visual-question-answering models instead *multiply*
them, so that the text decides which image features matter. FiLM does both::

    p     = W_p x_1                          (B, hidden)   the modulated modality (the first, e.g. the image)
    c     = [x_2; ...; x_M]                  (B, D_c)      the conditioning modalities (e.g. the text)
    gamma = W_g c,  beta = W_b c             (B, hidden)   one scale and one shift per unit, per sample
    h     = relu(p * (1 + gamma) + beta)     (B, hidden)

The term ``p * gamma`` is the element-wise product of an image projection and a text
projection, the classic VQA fusion; ``1 + gamma`` starts the scale near 1, so the fusion
begins close to an additive one and learns the product. The objectives chapter's grounding
model applies the same modulation to a feature map instead of a vector.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from mmbook.fusion.base import check_features, feature_sizes


class FiLMFusion(nn.Module):
    """Feature-wise linear modulation of the first modality by the others (see the module docstring).

    ``[(B, D_1), ..., (B, D_M)] -> (B, hidden)``. With one modality it is ``relu(W_p x_1)``.

    Args:
        in_features: feature size of each modality; the first is the modulated one.
        hidden: the output size (units modulated).
    """

    def __init__(self, in_features: Sequence[int], hidden: int = 32) -> None:
        super().__init__()
        self.in_features = feature_sizes(in_features, "FiLMFusion")
        if hidden <= 0:
            raise ValueError(f"hidden must be positive, got {hidden}")
        self.project = nn.Linear(self.in_features[0], hidden)
        conditioning = sum(self.in_features[1:])
        self.scale = nn.Linear(conditioning, hidden) if conditioning else None
        self.shift = nn.Linear(conditioning, hidden) if conditioning else None
        self.out_features = hidden
        self.last_scales: torch.Tensor | None = None

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """List of ``(B, D_m)`` -> ``(B, hidden)``; keeps ``1 + gamma`` ``(B, hidden)`` in ``last_scales``."""
        check_features(features, self.in_features)
        projected = self.project(features[0])
        if self.scale is None:
            return F.relu(projected)
        condition = torch.cat(list(features[1:]), dim=1)
        scales = 1 + self.scale(condition)
        self.last_scales = scales.detach()
        return F.relu(projected * scales + self.shift(condition))
