"""The worked example's recipe: an image+text classifier on captioned CIFAR-10, with any fusion."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from mmbook.data import DeviceLoader
from mmbook.fusion import ModalityDropout
from mmbook.multimodal import captioned_cifar_model
from mmbook.runtime import pick_device, seed_everything
from mmbook.recipes.run import Run
from mmbook.training import fit


def train_captioned(
    train: Mapping[str, torch.Tensor],
    test: Mapping[str, torch.Tensor],
    vocab_size: int,
    modalities: str = "image+text",
    fusion: str = "concat",
    *,
    text_encoder: str = "rnn",
    epochs: int = 3,
    batch_size: int = 128,
    lr: float = 3e-3,
    label_smoothing: float = 0.0,
    modality_dropout: float | Sequence[float] = 0.0,
    seed: int = 0,
    device: torch.device | str | None = None,
    amp: bool | None = None,
    channels_last: bool = False,
    compile: bool = False,
    checkpoint_dir: Path | str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> Run:
    """Build ``captioned_cifar_model(modalities, fusion=...)`` and train it with :func:`mmbook.training.fit`.

    Args:
        train, test: batch dicts ``{"image": uint8 (N, 3, 32, 32), "text": (N, T), "label": (N,)}``.
        vocab_size: caption vocabulary size.
        modalities, fusion, text_encoder: as in :func:`mmbook.multimodal.captioned_cifar_model`.
        epochs, batch_size, lr, label_smoothing: the schedule (one-cycle AdamW, as in :func:`mmbook.training.fit`).
        modality_dropout: if nonzero, wrap the fusion in :class:`mmbook.fusion.ModalityDropout` with this ``p``
            (a float, or one probability per modality, e.g. ``(0.0, 0.5)`` to drop only the text).
        seed: seeds the weights and the batch order.
        device, amp, channels_last, compile, checkpoint_dir, resume, progress: passed to ``fit``.

    Returns:
        A :class:`~mmbook.recipes.Run`; ``metrics["test_accuracy"]`` is the last epoch's test accuracy.
    """
    device = pick_device(device)
    seed_everything(seed)
    model = captioned_cifar_model(modalities, vocab_size, fusion=fusion, text_encoder=text_encoder)
    if (modality_dropout if isinstance(modality_dropout, (int, float)) else sum(modality_dropout)) > 0:
        model.fusion = ModalityDropout(model.fusion, p=modality_dropout)
    history = fit(model, DeviceLoader(train, batch_size, shuffle=True, device=device, seed=seed,
                                      channels_last=channels_last),
                  DeviceLoader(test, 1000, device=device, channels_last=channels_last), epochs=epochs, lr=lr,
                  label_smoothing=label_smoothing, device=device, amp=amp, channels_last=channels_last,
                  compile=compile, checkpoint_dir=checkpoint_dir, resume=resume, progress=progress,
                  description=f"{modalities} {fusion}",
                  extra_state={"modalities": modalities, "fusion": fusion, "text_encoder": text_encoder})
    metrics = {"test_accuracy": history.last["test_accuracy"]} if len(history) else {}
    return Run(model, history, metrics)
