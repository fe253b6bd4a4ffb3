"""``mmbook bench loader``: the source's training loop against mmbook's fast path.

Both train LeNet on the CIFAR-10 training images for one epoch, in one process,
on the same device, and report images per second:

* **baseline** -- the source's loop, exactly: a data set that hands out one PIL image
  at a time (as ``torchvision.datasets.CIFAR10`` does) through ``ToTensor`` and
  ``Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))``,
  ``DataLoader(batch_size=4, shuffle=True, num_workers=2)``, ``.to(device)`` for every
  batch, ``CrossEntropyLoss``, ``SGD(lr=0.001, momentum=0.9)`` and ``loss.item()`` per step;
* **fast** -- mmbook's path: the whole set on the device in a :class:`DeviceLoader`
  (uint8, normalized per batch on the device), batches of 512, channels-last LeNet and
  the book's :func:`mmbook.training.fit` loop, with bf16/fp16 autocast (``amp``) by default on
  CUDA and on CPUs that compute in bf16 natively (see :func:`bench_amp`);
* **ceiling** -- the same LeNet training step repeated on one fixed batch that is already
  in memory: no shuffling, no indexing, no normalization. No loader can beat it, so it is
  the most any data path could reach with this model on this device.

Where the time goes in the baseline: 12,500 Python steps per epoch, each paying for
four PIL round trips, collation, inter-process queues and ten tiny kernel launches.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mmbook.cnn import ImageClassifier, LeNet
from mmbook.data.loaders import DeviceLoader
from mmbook.runtime import autocast, cpu_has_native_bf16, pick_device, seed_everything
from mmbook.training import fit


class SourceStyleCIFAR10(Dataset):
    """One ``(image, label)`` at a time, like ``torchvision.datasets.CIFAR10``: array -> PIL -> transform.

    Args:
        images: uint8 ``(N, 3, 32, 32)``.
        labels: int64 ``(N,)``.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        import torchvision.transforms as transforms

        self.data = images.permute(0, 2, 3, 1).contiguous().numpy()  # (N, 32, 32, 3), as torchvision stores it
        self.targets = labels.tolist()
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        from PIL import Image

        image = Image.fromarray(self.data[index])
        return self.transform(image), self.targets[index]


@dataclass
class LoaderBenchResult:
    """Images per second of both loops and their ratio."""

    device: str
    baseline_images: int
    baseline_seconds: float
    fast_images: int
    fast_seconds: float
    fast_batch_size: int
    fast_amp: bool = False
    ceiling_images_per_second: float | None = None

    @property
    def baseline_images_per_second(self) -> float:
        return self.baseline_images / self.baseline_seconds

    @property
    def fast_images_per_second(self) -> float:
        return self.fast_images / self.fast_seconds

    @property
    def ratio(self) -> float:
        return self.fast_images_per_second / self.baseline_images_per_second

    def table(self) -> str:
        """A printable table of the result."""
        amp_note = ", amp" if self.fast_amp else ""
        return "\n".join([
            f"device: {self.device}",
            f"{'loop':<44}{'images':>8}{'seconds':>10}{'images/s':>11}",
            f"{'baseline: DataLoader(bs=4, workers=2), SGD':<44}{self.baseline_images:>8}"
            f"{self.baseline_seconds:>10.1f}{self.baseline_images_per_second:>11.0f}",
            f"{f'fast: DeviceLoader(bs={self.fast_batch_size}), fit(){amp_note}':<44}{self.fast_images:>8}"
            f"{self.fast_seconds:>10.1f}{self.fast_images_per_second:>11.0f}",
            f"speed-up (fast / baseline): {self.ratio:.1f}x",
        ] + ([
            f"ceiling (LeNet step on one fixed batch, no data path): {self.ceiling_images_per_second:.0f} images/s, "
            f"{self.ceiling_images_per_second / self.baseline_images_per_second:.1f}x the baseline",
        ] if self.ceiling_images_per_second is not None else []))


def bench_amp(amp: bool | None, device: torch.device) -> bool:
    """Mixed precision for the fast path: ``amp`` if given, else on for CUDA and for CPUs with native bf16.

    This differs from :func:`mmbook.runtime.resolve_amp` (CUDA only), which the chapters'
    training uses: a benchmark of throughput should take the fastest arithmetic the device
    has, while a training recipe keeps the precision its published accuracy was measured with.
    """
    if amp is not None:
        return bool(amp)
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())


def run_source_loop(images: torch.Tensor, labels: torch.Tensor, device: torch.device,
                    max_images: int | None = None) -> tuple[int, float]:
    """Train LeNet with the source's loop over ``images`` uint8 ``(N, 3, 32, 32)``; return (images seen, seconds)."""
    trainset = SourceStyleCIFAR10(images, labels)
    trainloader = DataLoader(trainset, batch_size=4, shuffle=True, num_workers=2)
    net = LeNet().to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    running_loss, seen = 0.0, 0
    started = time.perf_counter()
    for inputs, targets in trainloader:
        inputs, targets = inputs.to(device), targets.to(device)
        optimizer.zero_grad()
        outputs = net(inputs)
        loss = criterion(outputs, targets)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
        seen += int(targets.shape[0])
        if max_images is not None and seen >= max_images:
            break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return seen, time.perf_counter() - started


def run_fast_loop(images: torch.Tensor, labels: torch.Tensor, device: torch.device,
                  batch_size: int = 512, amp: bool | None = None) -> tuple[int, float]:
    """One epoch of LeNet with mmbook's fast path; return (images seen, seconds of training).

    ``amp=None`` means the default of :func:`bench_amp`.
    """
    amp = bench_amp(amp, device)
    loader = DeviceLoader({"image": images, "label": labels}, batch_size, shuffle=True, device=device,
                          channels_last=True)
    model = ImageClassifier(LeNet())
    # A short warm-up outside the timing, so one-time costs (allocations, kernel selection) are not counted.
    warm = DeviceLoader({"image": images[: 2 * batch_size], "label": labels[: 2 * batch_size]}, batch_size,
                        device=device, channels_last=True)
    fit(ImageClassifier(LeNet()), warm, epochs=1, optimizer="sgd", lr=0.05, device=device, channels_last=True,
        amp=amp, progress=False)
    history = fit(model, loader, epochs=1, optimizer="sgd", lr=0.05, device=device, channels_last=True,
                  amp=amp, progress=False)
    return len(loader.tensors["label"]), history.train_seconds


def run_step_ceiling(device: torch.device, batch_size: int = 512, steps: int = 40,
                     amp: bool | None = None, model_class: Callable[[], nn.Module] = LeNet) -> float:
    """Images per second of LeNet's training step alone, repeated on one fixed in-memory batch.

    This is an upper bound for *any* data path: everything a loader does (shuffle, gather,
    normalize, augment) only adds to it. On two CPU cores LeNet's step is compute-bound,
    so this number, divided by the baseline's images/s, caps the ratio the benchmark can show.
    ``model_class`` builds another ``(B, 3, 32, 32) -> (B, 10)`` network to time instead
    (``benchmarks/lenet_step.py`` times a LeNet with another max-pool).
    """
    amp = bench_amp(amp, device)
    model = model_class().to(device).to(memory_format=torch.channels_last)
    images = torch.randn(batch_size, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch_size,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        with autocast(device, amp):
            loss = nn.functional.cross_entropy(model(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):  # warm-up: allocations and kernel selection
        step()
    _synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    _synchronize(device)
    return steps * batch_size / (time.perf_counter() - started)


def step_seconds(model: nn.Module, batch: Any, loss_fn: Callable[[Any, Any], torch.Tensor], repeats: int = 3) -> float:
    """Mean seconds of one training step's arithmetic: ``loss_fn(model(batch), batch).backward()``.

    One warm-up step first (allocations, kernel selection), then ``repeats`` timed steps, each after
    ``model.zero_grad()``; CUDA is synchronised before the clock is read. No optimizer step, so the
    model's weights do not change. ``loss_fn`` takes ``(output, batch)``, as :func:`mmbook.training.fit`'s.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    device = next(model.parameters()).device
    loss_fn(model(batch), batch).backward()
    _synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        model.zero_grad()
        loss_fn(model(batch), batch).backward()
    _synchronize(device)
    return (time.perf_counter() - started) / repeats


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_loader(images: torch.Tensor, labels: torch.Tensor, device: torch.device | str | None = None,
                 baseline_images: int | None = None, fast_batch_size: int = 512, seed: int = 0,
                 amp: bool | None = None, ceiling: bool = True) -> LoaderBenchResult:
    """Run both loops on ``images`` uint8 ``(N, 3, 32, 32)`` / ``labels`` ``(N,)`` and compare.

    Args:
        baseline_images: stop the (slow) baseline after this many images; ``None`` runs the whole epoch.
        fast_batch_size: batch size of the fast path.
        amp: mixed precision in the fast path; ``None`` means on CUDA and on CPUs with native
            bf16 (:func:`bench_amp`).
        ceiling: also time the bare training step on a fixed batch (see :func:`run_step_ceiling`).
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 images (N, 3, 32, 32), got {images.dtype} {tuple(images.shape)}")
    device = pick_device(device)
    amp = bench_amp(amp, device)  # decided once, so the fast path, the ceiling and the report agree
    seed_everything(seed)
    base_seen, base_seconds = run_source_loop(images, labels, device, max_images=baseline_images)
    seed_everything(seed)
    fast_seen, fast_seconds = run_fast_loop(images, labels, device, batch_size=fast_batch_size, amp=amp)
    ceiling_rate = run_step_ceiling(device, batch_size=fast_batch_size, amp=amp) if ceiling else None
    return LoaderBenchResult(device=str(device), baseline_images=base_seen, baseline_seconds=base_seconds,
                             fast_images=fast_seen, fast_seconds=fast_seconds, fast_batch_size=fast_batch_size,
                             fast_amp=amp, ceiling_images_per_second=ceiling_rate)


__all__ = ["LoaderBenchResult", "SourceStyleCIFAR10", "bench_amp", "bench_loader", "run_fast_loop", "run_source_loop",
           "run_step_ceiling"]
