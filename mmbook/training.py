"""``fit``: the book's training loop.

One batch, from the loader to the loss, reads top to bottom in :func:`fit`::

    batch = next(loader)                      # {"image": ..., "text": ..., "label": ...}
    with autocast(device, amp):               # bf16 on CUDA where supported
        logits = model(batch)                 # (B, C)
        loss = cross_entropy(logits, batch["label"])
    loss.backward(); optimizer.step(); scheduler.step()

Every recipe in :mod:`mmbook.recipes` builds a model, loaders and an optimizer and calls
:func:`fit`; none has a loop of its own. Around the step: a progress bar, a per-epoch history, an optional live plot in
notebooks, and a checkpoint after every epoch (:mod:`mmbook.checkpoints`) that ``resume=True`` picks up.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from mmbook import distributed
from mmbook.checkpoints import CHECKPOINT_NAME, restore_training_state, save_checkpoint
from mmbook.runtime import autocast, evaluating, grad_scaler, pick_device, resolve_amp

# Custom objectives (see mmbook.objectives): ``loss_fn(output, batch) -> scalar loss`` and
# ``accuracy_fn(output, batch) -> (number correct, number counted)``.
LossFn = Callable[[Any, Mapping[str, torch.Tensor]], torch.Tensor]
AccuracyFn = Callable[[Any, Mapping[str, torch.Tensor]], "tuple[torch.Tensor | int, int]"]


def _batch_size(batch: Mapping[str, torch.Tensor]) -> int:
    return int(next(iter(batch.values())).shape[0])


def _default_accuracy(logits: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    labels = batch["label"]
    return (logits.argmax(dim=1) == labels).sum(), int(labels.shape[0])


@dataclass
class History:
    """Per-epoch metrics of a training run.

    ``records[k]`` holds epoch ``k + 1``: ``epoch``, ``train_loss``, ``train_accuracy``,
    ``test_loss``, ``test_accuracy`` (if a test loader was given), ``lr``,
    ``train_seconds`` (this epoch's training time) and ``samples_per_second``.
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

    @property
    def samples_per_second(self) -> float:
        """Training throughput over all epochs: samples seen per second of training."""
        seconds = self.train_seconds
        seen = sum(r["samples_per_second"] * r["train_seconds"] for r in self.records)
        return seen / seconds if seconds > 0 else 0.0


def one_cycle(total_steps: int, warmup: float = 0.25) -> Callable[[int], float]:
    """A triangular one-cycle schedule (Smith & Topin, 2019), as a ``LambdaLR`` factor.

    The factor rises linearly from ``1/warmup_steps`` to 1 over the first ``warmup``
    fraction of the steps, then falls linearly towards 0 at the last step. A large learning
    rate in the middle of training, and a small one at the end, converges in few epochs.
    """
    if not 0.0 <= warmup < 1.0:
        raise ValueError(f"warmup is a fraction of training in [0, 1), got {warmup}")
    warmup_steps = max(1, int(warmup * total_steps))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def _to_device(batch: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {name: t.to(device, non_blocking=True) for name, t in batch.items()}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[Mapping[str, torch.Tensor]],
    device: torch.device | str | None = None,
    amp: bool | None = None,
    loss_fn: LossFn | None = None,
    accuracy_fn: AccuracyFn | None = None,
) -> dict[str, float]:
    """Mean loss and accuracy of ``model`` over ``loader``.

    Under torchrun each rank evaluates its shard of the loader's data and the sums are
    added over the ranks, so every rank returns the figures of the whole data set.

    Args:
        loss_fn, accuracy_fn: as in :func:`fit` (default: cross-entropy and top-1 accuracy against ``batch["label"]``).

    Returns:
        ``{"loss": float, "accuracy": float}`` with accuracy in ``[0, 1]`` (NaN if not defined).
    """
    device = pick_device(device)
    amp = resolve_amp(amp, device)
    if accuracy_fn is None and loss_fn is None:
        accuracy_fn = _default_accuracy
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module  # no gradients here: DDP's bookkeeping is not needed, and shards may differ in length
    total_loss, correct, counted, count = 0.0, 0, 0, 0
    with evaluating(model):
        for batch in loader:
            batch = _to_device(batch, device)
            with autocast(device, amp):
                output = model(batch)
            size = _batch_size(batch)
            if loss_fn is None:
                total_loss += float(F.cross_entropy(output.float(), batch["label"], reduction="sum"))
            else:
                total_loss += float(loss_fn(output, batch)) * size
            if accuracy_fn is not None:
                right, seen = accuracy_fn(output, batch)
                correct += int(right)
                counted += int(seen)
            count += size
    total_loss, correct, counted, count = distributed.sum_over_ranks(total_loss, correct, counted, count, device=device)
    if count == 0:
        raise ValueError("the evaluation loader yielded no samples")
    return {"loss": total_loss / count, "accuracy": correct / counted if counted else float("nan")}


@torch.no_grad()
def predict(
    model: nn.Module, loader: Iterable[Mapping[str, torch.Tensor]], device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """All logits ``(N, C)`` and labels ``(N,)`` of ``loader``, on the CPU, in loader order."""
    device = pick_device(device)
    logits, labels = [], []
    with evaluating(model):
        for batch in loader:
            batch = _to_device(batch, device)
            logits.append(model(batch).float().cpu())
            labels.append(batch["label"].cpu())
    return torch.cat(logits), torch.cat(labels)


def fit(
    model: nn.Module,
    train_loader: Iterable[Mapping[str, torch.Tensor]],
    test_loader: Iterable[Mapping[str, torch.Tensor]] | None = None,
    *,
    epochs: int,
    optimizer: str = "adamw",
    parameters: Iterable[torch.Tensor] | Iterable[dict[str, Any]] | None = None,
    lr: float = 2e-3,
    weight_decay: float = 5e-4,
    momentum: float = 0.9,
    schedule: str = "onecycle",
    warmup: float = 0.25,
    loss_fn: LossFn | None = None,
    accuracy_fn: AccuracyFn | None = None,
    label_smoothing: float = 0.0,
    max_grad_norm: float | None = None,
    after_step: Callable[[nn.Module], None] | None = None,
    after_epoch: Callable[[nn.Module, int], Mapping[str, float]] | None = None,
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
        optimizer: ``"adamw"`` (AdamW) or ``"sgd"`` (SGD with Nesterov momentum).
        parameters: what the optimizer updates: parameters or parameter groups (dicts with their own
            ``weight_decay`` or ``lr``); default all of ``model.parameters()``.
        lr: peak learning rate.
        weight_decay: decoupled weight decay (AdamW) or L2 (SGD).
        momentum: SGD momentum.
        schedule: ``"onecycle"`` (see :func:`one_cycle`; converges fast) or ``"constant"``.
        warmup: the fraction of steps over which ``"onecycle"`` warms up.
        loss_fn: for objectives other than classification, ``loss_fn(output, batch) -> scalar``
            (e.g. :func:`mmbook.objectives.detection_loss`); the model may then return any output.
            Default: cross-entropy of the logits against ``batch["label"]`` with ``label_smoothing``.
        accuracy_fn: ``accuracy_fn(output, batch) -> (correct, counted)`` for the accuracy columns;
            default top-1 accuracy for the default loss, none (NaN) for a custom ``loss_fn``.
        label_smoothing: cross-entropy label smoothing (default loss only).
        max_grad_norm: clip the gradients' total norm to this before each step (recurrent networks
            need it); ``None`` does not clip.
        after_step: called as ``after_step(model)`` after every optimiser step, e.g.
            :func:`mmbook.alignment.clamp_logit_scale_`, which keeps a learned temperature in range.
        after_epoch: called as ``after_epoch(model, epoch)`` (``epoch`` counts from 1) after every epoch and
            its evaluation; the figures it returns (names to floats) join that epoch's record, e.g. the quality
            of captions decoded freely while the loss is teacher-forced. A name the record already has is an
            error. Under torchrun every rank calls it.
        device: ``None`` picks CUDA, then MPS, then CPU.
        amp: mixed precision; ``None`` means on for CUDA (see :func:`mmbook.runtime.resolve_amp`).
        channels_last: keep the model in channels-last memory format (faster convolutions on GPUs).
        compile: wrap the model with ``torch.compile``.
        checkpoint_dir: save ``last.pt`` here after every epoch.
        resume: continue from ``checkpoint_dir/last.pt`` if it exists.
        extra_state: plain data stored in the checkpoint (e.g. the vocabulary), for reloading.
        progress: show a ``tqdm`` progress bar.
        live_plot: in a notebook, redraw loss and accuracy curves after every epoch.
        description: the progress bar's label.

    Under torchrun (:mod:`mmbook.distributed`) the model is wrapped in DDP, each rank trains
    on its shard of ``train_loader``, the history holds figures summed over the ranks, and
    rank 0 alone shows progress and plots and writes the checkpoint (which every rank reads
    on ``resume``).

    Returns:
        The :class:`History` of all epochs (including resumed ones).

    Raises:
        FloatingPointError: if an epoch's mean training loss is not finite (the run diverged).
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")
    if lr <= 0 or not math.isfinite(lr):
        raise ValueError(f"lr must be positive, got {lr}")
    if max_grad_norm is not None and not max_grad_norm > 0:
        raise ValueError(f"max_grad_norm must be positive (or None for no clipping), got {max_grad_norm}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs a checkpoint_dir to resume from")
    if loss_fn is not None and label_smoothing:
        raise ValueError("label_smoothing applies to the default cross-entropy loss; put it in your loss_fn instead")
    if optimizer not in ("adamw", "sgd"):
        raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}")
    if schedule not in ("onecycle", "constant"):
        raise ValueError(f"schedule must be 'onecycle' or 'constant', got {schedule!r}")
    if accuracy_fn is None and loss_fn is None:
        accuracy_fn = _default_accuracy
    device = pick_device(device)
    amp = resolve_amp(amp, device)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    steps_per_epoch = len(train_loader)  # type: ignore[arg-type]

    parameters = model.parameters() if parameters is None else parameters
    if optimizer == "adamw":
        opt = torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.SGD(parameters, lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    factor = one_cycle(max(1, epochs * steps_per_epoch), warmup) if schedule == "onecycle" else lambda step: 1.0
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    scaler = grad_scaler(device, amp)

    history = History()
    checkpoint_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    loader_generator = getattr(train_loader, "generator", None)
    if resume and checkpoint_path.exists():
        history = History(restore_training_state(checkpoint_path, model, opt, scheduler, epochs, loader_generator,
                                                   extra_state))
    start_epoch = len(history)

    step_model = distributed.wrap_model(model, device)  # DDP under torchrun, else the model itself
    step_model = torch.compile(step_model) if compile else step_model
    main_process = distributed.is_main_process()
    plot = None
    if live_plot and main_process:
        from mmbook.plotting import LivePlot  # matplotlib only when a plot is asked for

        plot = LivePlot()
    from tqdm.auto import tqdm

    bar = tqdm(total=(epochs - start_epoch) * steps_per_epoch, desc=description, disable=not progress or not main_process,
               leave=False)
    try:
        for epoch in range(start_epoch, epochs):
            model.train()
            if hasattr(train_loader, "set_epoch"):  # this epoch's order and augmentation, also after a resume
                train_loader.set_epoch(epoch)
            started = time.perf_counter()
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.int64)
            seen, counted = 0, 0
            for batch in train_loader:
                batch = _to_device(batch, device)
                with autocast(device, amp):
                    output = step_model(batch)
                    if loss_fn is None:
                        loss = F.cross_entropy(output.float(), batch["label"], label_smoothing=label_smoothing)
                    else:
                        loss = loss_fn(output, batch)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if max_grad_norm is not None:
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
                scaler.step(opt)
                scaler.update()
                scheduler.step()
                if after_step is not None:
                    after_step(model)
                # Accumulate on the device; reading a value back every step would stall a GPU.
                size = _batch_size(batch)
                loss_sum += loss.detach() * size
                if accuracy_fn is not None:
                    with torch.no_grad():
                        right, batch_counted = accuracy_fn(output, batch)
                    correct += right
                    counted += int(batch_counted)
                seen += size
                bar.update(1)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - started
            # Under DDP: the sums over all ranks, so every rank records the figures of the whole epoch.
            loss_total, correct, seen, counted = distributed.sum_over_ranks(loss_sum, correct, seen, counted,
                                                                            device=device)
            record = {
                "epoch": epoch + 1,
                "train_loss": loss_total / max(seen, 1),
                "train_accuracy": float(correct) / counted if counted else float("nan"),
                "lr": float(opt.param_groups[0]["lr"]),
                "train_seconds": seconds,
                "samples_per_second": seen / seconds if seconds > 0 else float("nan"),
            }
            if not math.isfinite(record["train_loss"]):
                raise FloatingPointError(
                    f"training diverged in epoch {epoch + 1}: the mean loss is {record['train_loss']}. "
                    f"Lower the learning rate (now {lr})" + (" or turn compile off" if compile else "") + ".")
            if test_loader is not None:
                eval_model = model if distributed.world_size() > 1 else step_model  # no DDP wrapper to evaluate
                metrics = evaluate(eval_model, test_loader, device, amp, loss_fn=loss_fn, accuracy_fn=accuracy_fn)
                record["test_loss"], record["test_accuracy"] = metrics["loss"], metrics["accuracy"]
            if after_epoch is not None:
                extra = dict(after_epoch(model, epoch + 1))
                clash = sorted(set(extra) & set(record))
                if clash:
                    raise ValueError(f"after_epoch returned {clash}, which the epoch's record already holds; "
                                     "give its figures other names")
                record.update({name: float(value) for name, value in extra.items()})
            history.records.append(record)
            bar.set_postfix(epoch=epoch + 1, loss=f"{record['train_loss']:.3f}",
                            acc=f"{record.get('test_accuracy', record['train_accuracy']):.3f}")
            if checkpoint_path is not None and main_process:
                save_checkpoint(checkpoint_path, model, opt, scheduler, history.records, epochs, loader_generator,
                                extra_state)
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
