"""The text chapter's recipe: a text encoder trained as a classifier on token ids (e.g. the memory task)."""

from __future__ import annotations

import torch
from torch import nn

from mmbook.data.loaders import AugmentedLoader, DeviceLoader
from mmbook.runtime import pick_device
from mmbook.text.classify import trim_padding
from mmbook.text.vocab import PAD_ID
from mmbook.recipes.run import Run
from mmbook.training import fit


class _ReadsText(nn.Module):
    """Feeds ``batch["text"]`` ``(B, T)`` to a model of token ids, so that it fits ``fit``'s batch dicts."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(batch["text"])


def train_text_classifier(
    model: nn.Module,
    tokens: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    lr: float = 5e-3,
    batch_size: int = 64,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    description: str = "training",
) -> Run:
    """Train ``model`` (ids ``(B, T)`` -> logits ``(B, C)``) with :func:`mmbook.training.fit`.

    AdamW without weight decay and the one-cycle schedule, with the gradient norm clipped to 1
    (recurrent networks need it, see :cite:`pascanu2013difficulty`). Each batch is trimmed to
    its longest sequence, so a batch of short captions costs few steps of the recurrence.

    Args:
        model: e.g. a :class:`mmbook.text.TextClassifier`.
        tokens: ``(N, T)`` right-padded ids.
        labels: ``(N,)`` int64 class ids.
        seed: seed of the shuffling order.
        epochs, lr, batch_size, device, progress, description: as in :func:`mmbook.training.fit`.

    Returns:
        A :class:`~mmbook.recipes.Run`; ``history.column("train_loss")`` is the mean loss per epoch, and
        ``metrics`` holds ``train_tokens`` (real tokens read, all epochs) and ``tokens_per_second``.
    """
    if tokens.ndim != 2 or labels.shape != (tokens.shape[0],):
        raise ValueError(f"expected tokens (N, T) and labels (N,), got {tuple(tokens.shape)} and {tuple(labels.shape)}")
    if epochs <= 0 or batch_size <= 0:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    device = pick_device(device)
    loader = AugmentedLoader(DeviceLoader({"text": tokens, "label": labels}, batch_size, shuffle=True, device=device,
                                          seed=seed),
                             lambda batch, generator: {**batch, "text": trim_padding(batch["text"])})
    history = fit(_ReadsText(model), loader, epochs=epochs, lr=lr, weight_decay=0.0, max_grad_norm=1.0,
                  device=device, progress=progress, description=description)
    train_tokens = int((tokens != PAD_ID).sum()) * epochs
    metrics = {"train_tokens": train_tokens, "tokens_per_second": train_tokens / max(history.train_seconds, 1e-9)}
    return Run(model, history, metrics)
