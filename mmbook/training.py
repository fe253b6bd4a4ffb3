"""``fit``: the book's training loop.

One batch, from the loader to the loss, reads top to bottom in :func:`fit`::

    batch = next(loader)                      # {"image": ..., "text": ..., "label": ...}
    with autocast():                          # bf16 on CUDA where supported
        logits = model(batch)                 # (B, C)
        loss = cross_entropy(logits, batch["label"])
    loss.backward(); optimizer.step(); scheduler.step()

Around that: a progress bar, a per-epoch history, an optional live plot in
notebooks, and a checkpoint after every epoch that ``resume=True`` picks up.
Checkpoints are loaded with ``torch.load(weights_only=True)``: tensors and plain
containers only, never arbitrary pickled objects.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from mmbook.runtime import pick_device

CHECKPOINT_NAME = "last.pt"
_CHECKPOINT_FORMAT = 1


@dataclass
class History:
    """Per-epoch metrics of a training run.

    ``records[k]`` holds epoch ``k + 1``: ``epoch``, ``train_loss``, ``train_accuracy``,
    ``test_loss``, ``test_accuracy`` (if a test loader was given), ``lr``,
    ``train_seconds`` (this epoch's training time) and ``images_per_second``.
    """

    records: list[dict[str, float]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def column(self, name: str) -> list[float]:
        """One metric across epochs, e.g. ``history.column("test_accuracy")``."""
        return [record[name] for record in self.records]

    @property
    def last(self) -> dict[str, float]:
        """The last epoch's record."""
        if not self.records:
            raise ValueError("the history is empty: no epoch has finished")
        return self.records[-1]

    @property
    def train_seconds(self) -> float:
        """Total training time over all epochs (evaluation excluded)."""
        return float(sum(self.column("train_seconds")))


def one_cycle(total_steps: int, warmup_fraction: float = 0.25):
    """A triangular one-cycle schedule (Smith & Topin, 2019), as a ``LambdaLR`` factor.

    The factor rises linearly from ``1/warmup`` to 1 over the first quarter of the
    steps, then falls linearly towards 0 at the last step. A large learning rate in
    the middle of training, and a small one at the end, converges in few epochs.
    """
    warmup = max(1, int(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def _autocast(device: torch.device, amp: bool):
    if not amp:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if device.type != "cuda" or torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def resolve_amp(amp: bool | None, device: torch.device) -> bool:
    """Mixed precision on by default on CUDA, off elsewhere (bf16 on CPUs is often slower)."""
    return device.type == "cuda" if amp is None else bool(amp)


def _to_device(batch: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {name: t.to(device, non_blocking=True) for name, t in batch.items()}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[Mapping[str, torch.Tensor]],
    device: torch.device | str | None = None,
    amp: bool | None = None,
) -> dict[str, float]:
    """Mean cross-entropy loss and accuracy of ``model`` over ``loader``.

    Returns:
        ``{"loss": float, "accuracy": float}`` with accuracy in ``[0, 1]``.
    """
    device = pick_device(device)
    amp = resolve_amp(amp, device)
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for batch in loader:
        batch = _to_device(batch, device)
        with _autocast(device, amp):
            logits = model(batch)
        labels = batch["label"]
        total_loss += float(F.cross_entropy(logits.float(), labels, reduction="sum"))
        correct += int((logits.argmax(dim=1) == labels).sum())
        count += int(labels.shape[0])
    model.train(was_training)
    if count == 0:
        raise ValueError("the evaluation loader yielded no samples")
    return {"loss": total_loss / count, "accuracy": correct / count}


@torch.no_grad()
def predict(
    model: nn.Module, loader: Iterable[Mapping[str, torch.Tensor]], device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """All logits ``(N, C)`` and labels ``(N,)`` of ``loader``, on the CPU, in loader order."""
    device = pick_device(device)
    was_training = model.training
    model.eval()
    logits, labels = [], []
    for batch in loader:
        batch = _to_device(batch, device)
        logits.append(model(batch).float().cpu())
        labels.append(batch["label"].cpu())
    model.train(was_training)
    return torch.cat(logits), torch.cat(labels)


def save_checkpoint(path: Path | str, state: dict[str, Any]) -> None:
    """Write ``state`` atomically: a crash mid-write never corrupts the previous checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"format": _CHECKPOINT_FORMAT, **state}, temporary)
    os.replace(temporary, path)


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, safely (``weights_only=True``).

    Raises:
        FileNotFoundError: if there is no checkpoint at ``path``.
        ValueError: if the file is not a readable mmbook checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; train without --resume first, or check the directory")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"checkpoint {path} cannot be read ({error.__class__.__name__}: {error}). It may be truncated or "
            f"from another program; delete it to start afresh."
        ) from error
    if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an mmbook checkpoint (format {_CHECKPOINT_FORMAT})")
    return state


def fit(
    model: nn.Module,
    train_loader: Iterable[Mapping[str, torch.Tensor]],
    test_loader: Iterable[Mapping[str, torch.Tensor]] | None = None,
    *,
    epochs: int,
    lr: float = 2e-3,
    weight_decay: float = 5e-4,
    optimizer: str = "adamw",
    momentum: float = 0.9,
    schedule: str = "onecycle",
    label_smoothing: float = 0.0,
    device: torch.device | str | None = None,
    amp: bool | None = None,
    channels_last: bool = False,
    compile: bool = False,
    checkpoint_dir: Path | str | None = None,
    resume: bool = False,
    extra_state: dict[str, Any] | None = None,
    progress: bool = True,
    live_plot: bool = False,
    description: str = "training",
) -> History:
    """Train ``model`` on ``train_loader`` for ``epochs`` epochs; evaluate on ``test_loader`` each epoch.

    Args:
        model: maps a batch dict to logits ``(B, C)``; ``batch["label"]`` holds ``(B,)`` targets.
        train_loader: yields batch dicts; must have ``len()`` for the learning-rate schedule.
        test_loader: optional; evaluated after every epoch.
        epochs: total number of epochs (with ``resume``, including those already done).
        lr: peak learning rate.
        weight_decay: decoupled weight decay (AdamW) or L2 (SGD).
        optimizer: ``"adamw"`` or ``"sgd"`` (with Nesterov momentum).
        momentum: SGD momentum.
        schedule: ``"onecycle"`` (see :func:`one_cycle`; converges fast) or ``"constant"``.
        label_smoothing: cross-entropy label smoothing.
        device: ``None`` picks CUDA, then MPS, then CPU.
        amp: mixed precision; ``None`` means on for CUDA (bf16 where supported).
        channels_last: keep the model in channels-last memory format (faster convolutions on GPUs).
        compile: wrap the model with ``torch.compile``.
        checkpoint_dir: save ``last.pt`` here after every epoch.
        resume: continue from ``checkpoint_dir/last.pt`` if it exists.
        extra_state: plain data stored in the checkpoint (e.g. the vocabulary), for reloading.
        progress: show a ``tqdm`` progress bar.
        live_plot: in a notebook, redraw loss and accuracy curves after every epoch.
        description: the progress bar's label.

    Returns:
        The :class:`History` of all epochs (including resumed ones).
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")
    if lr <= 0 or not math.isfinite(lr):
        raise ValueError(f"lr must be positive, got {lr}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs a checkpoint_dir to resume from")
    device = pick_device(device)
    amp = resolve_amp(amp, device)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    steps_per_epoch = len(train_loader)  # type: ignore[arg-type]

    if optimizer == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}")
    if schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, one_cycle(max(1, epochs * steps_per_epoch)))
    elif schedule == "constant":
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    else:
        raise ValueError(f"schedule must be 'onecycle' or 'constant', got {schedule!r}")
    # fp16 (older GPUs without bf16) needs loss scaling; bf16 and fp32 do not.
    scaler = torch.amp.GradScaler(device.type, enabled=amp and device.type == "cuda" and not torch.cuda.is_bf16_supported())

    history = History()
    checkpoint_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    if resume and checkpoint_path is not None and checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path)
        # The learning-rate schedule depends on the planned length of the run, so a
        # run can only be resumed with the same number of epochs.
        if state.get("planned_epochs") != epochs:
            raise ValueError(
                f"checkpoint {checkpoint_path} belongs to a run of {state.get('planned_epochs')} epochs, "
                f"not {epochs}; resume with epochs={state.get('planned_epochs')} (CLI: --epochs "
                f"{state.get('planned_epochs')}), or start a new run in another checkpoint directory"
            )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history = History(list(state["history"]))
        torch.set_rng_state(state["torch_rng"])
        loader_generator = getattr(train_loader, "generator", None)
        if loader_generator is not None and state.get("loader_rng") is not None:
            loader_generator.set_state(state["loader_rng"])
    start_epoch = len(history)

    step_model = torch.compile(model) if compile else model
    plot = _LivePlot() if live_plot else None
    from tqdm.auto import tqdm

    bar = tqdm(total=(epochs - start_epoch) * steps_per_epoch, desc=description, disable=not progress, leave=False)
    try:
        for epoch in range(start_epoch, epochs):
            model.train()
            started = time.perf_counter()
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.int64)
            seen = 0
            for batch in train_loader:
                batch = _to_device(batch, device)
                labels = batch["label"]
                with _autocast(device, amp):
                    logits = step_model(batch)
                    loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                scheduler.step()
                # Accumulate on the device; reading a value back every step would stall a GPU.
                loss_sum += loss.detach() * labels.shape[0]
                correct += (logits.detach().argmax(dim=1) == labels).sum()
                seen += int(labels.shape[0])
                bar.update(1)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - started
            record = {
                "epoch": epoch + 1,
                "train_loss": float(loss_sum) / max(seen, 1),
                "train_accuracy": float(correct) / max(seen, 1),
                "lr": float(opt.param_groups[0]["lr"]),
                "train_seconds": seconds,
                "images_per_second": seen / seconds if seconds > 0 else float("nan"),
            }
            if test_loader is not None:
                metrics = evaluate(step_model, test_loader, device, amp)
                record["test_loss"], record["test_accuracy"] = metrics["loss"], metrics["accuracy"]
            history.records.append(record)
            bar.set_postfix(epoch=epoch + 1, loss=f"{record['train_loss']:.3f}",
                            acc=f"{record.get('test_accuracy', record['train_accuracy']):.3f}")
            if checkpoint_path is not None:
                loader_generator = getattr(train_loader, "generator", None)
                save_checkpoint(checkpoint_path, {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "history": history.records,
                    "planned_epochs": epochs,
                    "torch_rng": torch.get_rng_state(),
                    "loader_rng": loader_generator.get_state() if loader_generator is not None else None,
                    "extra": extra_state or {},
                })
            if plot is not None:
                plot.update(history)
    except KeyboardInterrupt:
        where = f"; the checkpoint of epoch {len(history)} is in {checkpoint_path}, resume with resume=True (CLI: --resume)" if checkpoint_path else ""
        print(f"Interrupted after {len(history)} complete epoch(s){where}.")
        raise
    finally:
        bar.close()
        if plot is not None:
            plot.close()
    return history


class _LivePlot:
    """Loss and accuracy curves, redrawn in place in a notebook after every epoch."""

    def __init__(self) -> None:
        self.handle = None
        self.figure = None

    def update(self, history: History) -> None:
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            return
        if get_ipython() is None:
            return
        from mmbook.plotting import plot_history

        import matplotlib.pyplot as plt

        if self.figure is not None:
            plt.close(self.figure)
        self.figure = plot_history({"model": history})
        if self.handle is None:
            self.handle = display(self.figure, display_id=True)
        else:
            self.handle.update(self.figure)

    def close(self) -> None:
        if self.figure is not None:
            import matplotlib.pyplot as plt

            plt.close(self.figure)
