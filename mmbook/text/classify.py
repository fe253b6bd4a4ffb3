"""Train and evaluate a text encoder as a classifier on a token-id task (e.g. the memory task).

This is a compact loop, without ``fit``'s checkpoints and plots, written for the text
chapter's comparisons: it clips the gradient norm (recurrent networks need it, see
:cite:`pascanu2013difficulty`), trims each batch to its longest caption, and reports
training time and tokens per second alongside accuracy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from mmbook.text.encoders import TextEncoder, check_tokens


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


@dataclass
class TrainReport:
    """What :func:`train_text_classifier` measured.

    Attributes:
        train_seconds: wall time of the training steps.
        train_tokens: real (non-padding) tokens read during training, all epochs.
        tokens_per_second: ``train_tokens / train_seconds``.
        losses: mean training loss per epoch.
    """

    train_seconds: float
    train_tokens: int
    tokens_per_second: float
    losses: list[float]


def _trim(tokens: torch.Tensor) -> torch.Tensor:
    """Drop the padding columns that no caption in the batch uses: ``(B, T)`` -> ``(B, T')``."""
    longest = int((tokens != 0).sum(dim=1).max().clamp(min=1))
    return tokens[:, :longest]


def train_text_classifier(
    model: nn.Module,
    tokens: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    lr: float = 5e-3,
    batch_size: int = 64,
    max_grad_norm: float | None = 1.0,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    description: str = "training",
) -> TrainReport:
    """Train ``model`` (ids ``(B, T)`` -> logits ``(B, C)``) with Adam and a one-cycle schedule.

    Args:
        model: e.g. a :class:`TextClassifier`.
        tokens: ``(N, T)`` right-padded ids.
        labels: ``(N,)`` int64 class ids.
        epochs: passes over the data.
        lr: peak learning rate.
        batch_size: captions per step.
        max_grad_norm: clip the gradient norm to this (``None``: no clipping).
        seed: seed of the shuffling order.
        device: where to train; default CPU.
        progress: show a ``tqdm`` bar.
    """
    if tokens.ndim != 2 or labels.shape != (tokens.shape[0],):
        raise ValueError(f"expected tokens (N, T) and labels (N,), got {tuple(tokens.shape)} and {tuple(labels.shape)}")
    if epochs <= 0 or batch_size <= 0:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    model.to(device)
    tokens, labels = tokens.to(device), labels.to(device)
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = -(-len(tokens) // batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * steps_per_epoch)
    seconds, seen, losses = 0.0, 0, []
    bar = tqdm(total=epochs * steps_per_epoch, desc=description, disable=not progress, leave=False)
    for _ in range(epochs):
        model.train()
        total, count = 0.0, 0
        for index in torch.randperm(len(tokens), generator=generator).split(batch_size):
            index = index.to(device)
            batch = _trim(tokens[index])
            started = time.perf_counter()
            loss = F.cross_entropy(model(batch), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if max_grad_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            schedule.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds += time.perf_counter() - started
            seen += int((batch != 0).sum())
            total += loss.item() * len(index)
            count += len(index)
            bar.update()
        losses.append(total / count)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    return TrainReport(seconds, seen, seen / seconds if seconds > 0 else 0.0, losses)


@torch.no_grad()
def predict_text(model: nn.Module, tokens: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Predicted classes ``(N,)`` for ``(N, T)`` ids, in eval mode, batch by batch."""
    check_tokens(tokens, torch.iinfo(torch.int64).max)
    model.eval()
    device = next(model.parameters()).device
    return torch.cat([model(_trim(chunk.to(device))).argmax(dim=1).cpu() for chunk in tokens.split(batch_size)])
