"""airbench94 and mmbook's fastcnn at the same size, on the same CIFAR-10 copy, on the same GPU.

airbench94 (Jordan, 2024; the PyPI package ``airbench`` 0.1.8) reports 94.0% test accuracy on
the official CIFAR-10 files, with a network of widths 64/256/256 trained for about 10 epochs.
mmbook's fastcnn at that size (:data:`AIRBENCH_SIZE`: widths 64/256/256, airbench's pooled
blocks, 10 epochs, crops from 2 pixels of padding) reaches about 90.5% on the book's JPEG copy
(``benchmarks/RESULTS.md``). This script trains both, one after the other, on the same tensors
(whatever ``load_cifar10`` finds: the JPEG copy, or the official files), in the same process on
the same GPU, and reports for each run the test accuracy without test-time augmentation, with
flips, and with six views (flips and one-pixel shifts, the same six views in both libraries),
and the training seconds. If airbench reaches about 94% here, the gap is in fastcnn's method;
if it also lands near 90-91%, the data explains it.

    pip install airbench==0.1.8                                  # needs torchvision
    python benchmarks/airbench_side_by_side.py --runs 3 --json side_by_side.json
    python benchmarks/airbench_side_by_side.py --quick           # any machine: a check that it runs (minutes on a CPU)

On a GPU machine without network access, unpack the package's source next to the data:
``pip download --no-deps airbench==0.1.8 -d .gpu`` and ``make gpu-data`` here, then
``bash benchmarks/gpu_check.sh airbench_side_by_side.py --runs 3`` there.

airbench needs CUDA (it moves its data and network to ``cuda:0`` and times with CUDA events).
Without CUDA, ``--quick`` trains only fastcnn's side, on the quick subset for one epoch, and the
JSON says that airbench was skipped; without ``--quick`` the script stops with an error.

What is timed: for fastcnn, the training epochs (``Run.history.train_seconds``: no whitening, no
evaluation); for airbench, its ``train94`` call, which also loads the test split onto the GPU
and computes its whitening filters, both small next to training. Each side gets one untimed
one-epoch run first, so that cuDNN's algorithm search is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from mmbook.data import DeviceLoader, load_cifar10
from mmbook.fastcnn import GPU_RECIPE, FastCNNConfig, evaluate_images
from mmbook.recipes import train_fastcnn
from mmbook.runtime import pick_device, resolve_amp

AIRBENCH_VERSION = "0.1.8"
#: fastcnn at airbench94's size: GPU_RECIPE's settings with airbench's widths, epochs and crop.
AIRBENCH_SIZE: dict = {**GPU_RECIPE, "widths": (64, 256, 256), "epochs": 10, "crop_padding": 2}
SIDES = ("airbench94", "fastcnn")
METRICS = ("test_accuracy", "test_accuracy_flip", "test_accuracy_tta", "train_seconds")


def airbench_tensors(images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str]) -> dict:
    """One split in the layout airbench's ``CifarLoader`` reads from ``train.pt`` / ``test.pt``.

    Args:
        images: uint8 ``(N, 3, 32, 32)``, as ``load_cifar10`` returns them.
        labels: int ``(N,)``.
        classes: the class names.

    Returns:
        ``{"images": uint8 (N, 32, 32, 3), "labels": int64 (N,), "classes": list of str}``.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"expected one label per image, got {tuple(labels.shape)} for {images.shape[0]} images")
    return {"images": images.permute(0, 2, 3, 1).contiguous(), "labels": labels.to(torch.int64).contiguous(),
            "classes": list(classes)}


def write_airbench_data(folder: Path, train, test) -> Path:
    """Write ``folder/cifar10/{train,test}.pt`` from two ``ImageSet``s; returns ``folder/cifar10``.

    airbench's ``train94`` opens ``cifar10/test.pt`` relative to the working directory, so
    :func:`train_airbench` runs in ``folder``.
    """
    target = Path(folder) / "cifar10"
    target.mkdir(parents=True, exist_ok=True)
    for name, split in (("train", train), ("test", test)):
        torch.save(airbench_tensors(split.images, split.labels, split.classes), target / f"{name}.pt")
    return target


def train_airbench(folder: Path, seed: int, epochs: float | None, batch_size: int) -> dict:
    """Train airbench94 on ``folder/cifar10/*.pt`` (CUDA only) and evaluate it at its three TTA levels.

    ``epochs=None`` keeps airbench94's own setting (9.9).
    """
    import airbench
    from airbench.lib_airbench94 import hyp

    previous = Path.cwd()
    os.chdir(folder)
    try:
        torch.manual_seed(seed)
        loader = airbench.CifarLoader("cifar10", train=True, batch_size=batch_size, aug=hyp["aug"], altflip=True)
        options = {} if epochs is None else {"epochs": epochs}
        torch.cuda.synchronize()
        started = time.perf_counter()
        model = airbench.train94(loader, verbose=False, **options)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        test_loader = airbench.CifarLoader("cifar10", train=False, batch_size=2000)
        none, flip, views = (airbench.evaluate(model, test_loader, tta_level=level) for level in (0, 1, 2))
    finally:
        os.chdir(previous)
    return {"side": "airbench94", "seed": seed, "test_accuracy": none, "test_accuracy_flip": flip,
            "test_accuracy_tta": views, "train_seconds": seconds}


def train_ours(train: dict, test: dict, config: FastCNNConfig, device: torch.device) -> dict:
    """Train fastcnn with ``config`` and evaluate it without TTA, with flips, and with ``config``'s TTA."""
    run = train_fastcnn(train, test, config, device=device, progress=False)
    loader = DeviceLoader(test, 1000, device=device, channels_last=config.channels_last)
    flip = evaluate_images(run.model, loader, tta=True, amp=resolve_amp(config.amp, device), shift=0)
    return {"side": "fastcnn", "seed": config.seed, "test_accuracy": run.metrics["test_accuracy"],
            "test_accuracy_flip": flip, "test_accuracy_tta": run.metrics["test_accuracy_tta"],
            "train_seconds": run.history.train_seconds}


def summarize(rows: list[dict]) -> dict:
    """Mean, lowest and highest of each metric, per side, over ``rows`` (one per run)."""
    summary: dict = {}
    for side in SIDES:
        runs = [row for row in rows if row["side"] == side]
        if runs:
            summary[side] = {"runs": len(runs)}
            for metric in METRICS:
                values = [row[metric] for row in runs]
                summary[side][metric] = {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}
    return summary


def table(rows: list[dict]) -> str:
    """The runs as a text table, one line per run."""
    lines = [f"{'side':<12}{'seed':>5}{'no TTA':>9}{'flip':>9}{'6 views':>9}{'train s':>9}"]
    for row in rows:
        lines.append(f"{row['side']:<12}{row['seed']:>5}{row['test_accuracy']:>9.2%}{row['test_accuracy_flip']:>9.2%}"
                     f"{row['test_accuracy_tta']:>9.2%}{row['train_seconds']:>9.2f}")
    return "\n".join(lines)


def _airbench_settings() -> dict:
    """airbench94's hyperparameters as its package defines them (``airbench.lib_airbench94.hyp``)."""
    from airbench.lib_airbench94 import hyp

    return json.loads(json.dumps(hyp, default=str))


def _jsonable(config: dict) -> dict:
    return {key: list(value) if isinstance(value, tuple) else value for key, value in config.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per side, with seeds 0, 1, ...")
    parser.add_argument("--quick", "--cpu-smoke", action="store_true",
                        help="the quick subset and one epoch per run; without CUDA, fastcnn's side only")
    parser.add_argument("--data", type=Path, default=None, help="data directory (default: $MMBOOK_DATA)")
    parser.add_argument("--device", default="auto", help="auto, cuda or cpu")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="folder for airbench's train.pt and test.pt (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=None, help="write the runs and their summary here")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, got {args.runs}")
    device = pick_device(None if args.device == "auto" else args.device)
    skipped = None
    if device.type != "cuda":
        if not args.quick:
            print(f"error: airbench needs CUDA, and the device is {device}. On a machine without a GPU, --quick "
                  "trains only fastcnn's side on a small subset, to check that the script runs.", file=sys.stderr)
            return 2
        skipped = f"skipped: airbench needs CUDA, the device is {device}"
    else:
        try:
            import airbench  # noqa: F401
        except ImportError:
            print(f"error: airbench is not installed: pip install airbench=={AIRBENCH_VERSION} (or put its unpacked "
                  "source on PYTHONPATH)", file=sys.stderr)
            return 2

    train_set = load_cifar10("train", quick=args.quick, root=args.data, progress=False)
    test_set = load_cifar10("test", quick=args.quick, root=args.data, progress=False)
    train = {"image": train_set.images, "label": train_set.labels}
    test = {"image": test_set.images, "label": test_set.labels}
    print(f"{train_set.source}: {len(train_set)} training, {len(test_set)} test images; device {device}", flush=True)
    # Full batches only (both sides drop the last partial batch): a quick subset smaller than a batch gets smaller ones.
    batch_size = min(AIRBENCH_SIZE["batch_size"], max(2, len(train_set) // 4))
    overrides = {"epochs": 1, "batch_size": batch_size} if args.quick else {}
    epochs = 1 if args.quick else None

    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.workdir or Path(scratch)
        write_airbench_data(folder, train_set, test_set)
        if skipped is None:  # one untimed epoch each: cuDNN's algorithm search
            train_airbench(folder, seed=0, epochs=1, batch_size=batch_size)
            train_ours(train, test, FastCNNConfig(**{**AIRBENCH_SIZE, **overrides, "epochs": 1}), device)
        for seed in range(args.runs):
            if skipped is None:
                rows.append(train_airbench(folder, seed=seed, epochs=epochs, batch_size=batch_size))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
            rows.append(train_ours(train, test, FastCNNConfig(**{**AIRBENCH_SIZE, **overrides, "seed": seed}), device))
            print(table(rows[-1:]).splitlines()[-1], flush=True)

    summary = summarize(rows)
    print("\n" + table(rows))
    for side, figures in summary.items():
        print(f"{side}: mean {figures['test_accuracy']['mean']:.2%} without TTA, "
              f"{figures['test_accuracy_tta']['mean']:.2%} with 6 views, "
              f"{figures['train_seconds']['mean']:.2f} s of training "
              f"({figures['runs']} run{'s' if figures['runs'] > 1 else ''})")
    if skipped:
        print(f"airbench94: {skipped}")
    if args.json is not None:
        result = {
            "data": {"source": train_set.source, "train": len(train_set), "test": len(test_set), "quick": args.quick},
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
            "torch": torch.__version__,
            "airbench": skipped or AIRBENCH_VERSION,
            "airbench_settings": None if skipped else _airbench_settings(),
            "fastcnn_config": _jsonable({**AIRBENCH_SIZE, **overrides}),
            "runs": rows,
            "summary": summary,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
