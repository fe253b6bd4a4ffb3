"""A text encoder as a classifier on a token-id task (e.g. the memory task), and its predictions.

:func:`mmbook.recipes.train_text_classifier` trains one with :func:`mmbook.training.fit`.
"""

from __future__ import annotations

import torch
from torch import nn

from mmbook.runtime import evaluating
from mmbook.text.encoders import TextEncoder, check_tokens
from mmbook.text.vocab import PAD_ID


class TextClassifier(nn.Module):
    """A text encoder followed by a linear layer: ``(B, T)`` ids -> ``(B, num_classes)`` logits.

    Args:
        encoder: any :class:`TextEncoder` (its ``out_features`` is the feature size).
        num_classes: number of classes.
    """

    def __init__(self, encoder: TextEncoder, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.out_features, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` token ids -> ``(B, num_classes)`` logits."""
        return self.head(self.encoder(tokens))


def trim_padding(tokens: torch.Tensor) -> torch.Tensor:
    """Drop the padding columns that no sequence in the batch uses: ``(B, T)`` -> ``(B, T')``."""
    longest = int((tokens != PAD_ID).sum(dim=1).max().clamp(min=1))
    return tokens[:, :longest]


@torch.no_grad()
def predict_text(model: nn.Module, tokens: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Predicted classes ``(N,)`` for ``(N, T)`` ids, in eval mode, batch by batch."""
    check_tokens(tokens, torch.iinfo(torch.int64).max)
    device = next(model.parameters()).device
    with evaluating(model):
        return torch.cat([model(trim_padding(chunk.to(device))).argmax(dim=1).cpu() for chunk in tokens.split(batch_size)])
