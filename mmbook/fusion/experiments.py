"""Small helpers that the fusion chapter's notebooks share: data subsets and one training run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mmbook.data import DeviceLoader
from mmbook.fusion.aids import ModalityDropout


def take(tensors: Mapping[str, torch.Tensor], start: int, stop: int | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """Samples ``start:stop`` of a fixed random order of a batch dict.

    The data sets are stored sorted by class, so a plain slice would hold only a few
    classes. ``take`` first shuffles with a fixed ``seed`` (the same order on every
    call), then slices: ``take(t, 0, 1000)`` and ``take(t, 1000, 2000)`` never overlap.
    """
    sizes = {int(t.shape[0]) for t in tensors.values()}
    if len(sizes) != 1:
        raise ValueError(f"all tensors must have the same number of samples, got {sorted(sizes)}")
    order = torch.randperm(sizes.pop(), generator=torch.Generator().manual_seed(seed))[start:stop]
    return {name: t[order.to(t.device)] for name, t in tensors.items()}


@dataclass
class Run:
    """One trained model and its numbers.

    Attributes:
        model: the trained model.
        history: its :class:`~mmbook.training.History`.
        accuracy: final test accuracy in ``[0, 1]``.
        parameters: number of parameters (trainable and frozen).
        seconds: training time (evaluation excluded).
    """

    model: nn.Module
    history: object
    accuracy: float
    parameters: int
    seconds: float


def train_captioned(
    train: Mapping[str, torch.Tensor],
    test: Mapping[str, torch.Tensor],
    vocab_size: int,
    modalities: str = "image+text",
    fusion: str = "concat",
    *,
    epochs: int = 3,
    batch_size: int = 128,
    lr: float = 3e-3,
    modality_dropout: float | Sequence[float] = 0.0,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> Run:
    """Build ``captioned_cifar_model(modalities, fusion=...)`` and train it.

    Args:
        train, test: batch dicts ``{"image": uint8 (N, 3, 32, 32), "text": (N, T), "label": (N,)}``.
        vocab_size: caption vocabulary size.
        modalities, fusion: as in :func:`mmbook.multimodal.captioned_cifar_model`.
        epochs, batch_size, lr: the schedule (one-cycle AdamW, as in :func:`mmbook.training.fit`).
        modality_dropout: if nonzero, wrap the fusion in :class:`ModalityDropout` with this ``p``
            (a float, or one probability per modality, e.g. ``(0.0, 0.5)`` to drop only the text).
        seed: seeds the weights and the batch order.
    """
    from mmbook.multimodal import captioned_cifar_model
    from mmbook.runtime import pick_device, seed_everything
    from mmbook.training import fit

    device = pick_device(device)
    seed_everything(seed)
    model = captioned_cifar_model(modalities, vocab_size, fusion=fusion)
    if (modality_dropout if isinstance(modality_dropout, (int, float)) else sum(modality_dropout)) > 0:
        model.fusion = ModalityDropout(model.fusion, p=modality_dropout)
    history = fit(model, DeviceLoader(train, batch_size, shuffle=True, device=device, seed=seed),
                  DeviceLoader(test, 1000, device=device), epochs=epochs, lr=lr, device=device, progress=progress,
                  description=f"{modalities} {fusion}")
    return Run(model, history, history.last["test_accuracy"], sum(p.numel() for p in model.parameters()),
               history.train_seconds)
