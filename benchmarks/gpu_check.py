"""The GPU figures of ``benchmarks/RESULTS.md`` in one run: fastcnn's recipes, the loader benchmark, the detector.

With a CUDA GPU and the CIFAR-10 data (``MMBOOK_DATA``), this runs, in order:

1. each fastcnn recipe of ``--recipes`` (default ``gpu`` and ``gpu-93``, the recipes of
   ``mmbook train --task cifar10 --model fastcnn --recipe NAME``; ``cpu`` is the CPU recipe),
   for each seed of ``--seeds``, on CUDA after one untimed epoch per set of widths (cuDNN's
   algorithm search); each row has the test accuracy without test-time augmentation (``test_accuracy``),
   with flips (``test_accuracy_flip``), with six views (flips and one-pixel shifts,
   ``test_accuracy_shift``), with the recipe's own (``test_accuracy_tta``), and the training seconds;
2. ``mmbook bench loader --baseline-images 20000``: the source's ``DataLoader`` loop against
   mmbook's on-device fast path (20,000 images of the slow loop are plenty on a GPU);
3. ``mmbook train --task scene-detection``: the objectives chapter's detector at its defaults.

    python benchmarks/gpu_check.py --out results/                 # about 5 minutes on an H200 (estimate)
    python benchmarks/gpu_check.py --quick --out /tmp/check       # any machine: one epoch, small subsets

``benchmarks/gpu_check.sh`` does the same on a GPU machine without network access or an installed
mmbook. A step starts only while ``--budget`` seconds last, so a run that must stop early still
brings back the first steps. A run that fails (a diverging loss, say) is recorded with its error,
and the others go on. Every result is printed as it arrives and appended to ``OUT/gpu_check.jsonl``
(one JSON object per line), so a run that is cut off keeps what it measured. The records behind
``benchmarks/RESULTS.md`` are in ``benchmarks/gpu_runs/``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch

from mmbook.cli import main as mmbook_main
from mmbook.data import DeviceLoader, load_cifar10
from mmbook.fastcnn import RECIPES, FastCNNConfig, evaluate_images
from mmbook.recipes import train_fastcnn
from mmbook.runtime import environment_report, pick_device, resolve_amp

STEPS = ("fastcnn", "loader", "detection")


def record(out: Path, row: dict) -> None:
    """Print ``row`` and append it to ``out/gpu_check.jsonl``."""
    print(json.dumps(row), flush=True)
    with open(out / "gpu_check.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def _jsonable(config: dict) -> dict:
    return {key: list(value) if isinstance(value, tuple) else value for key, value in config.items()}


def fastcnn_row(recipe: str, config: FastCNNConfig, train: dict, test: dict, device: torch.device) -> dict:
    """Train fastcnn with ``config`` and return its figures as one row (or the error it raised)."""
    row: dict = {"step": "fastcnn", "recipe": recipe, "seed": config.seed, "epochs": config.epochs,
                 "device": str(device), "config": _jsonable(asdict(config))}
    started = time.perf_counter()
    try:
        run = train_fastcnn(train, test, config, device=device, progress=False)
    except (FloatingPointError, RuntimeError) as error:  # record it and go on with the next run
        return {**row, "error": repr(error)}
    loader = DeviceLoader(test, 1000, device=device, channels_last=config.channels_last)
    amp = resolve_amp(config.amp, device)
    views = {shift: run.metrics["test_accuracy_tta"] if config.tta and config.tta_shift == shift
             else evaluate_images(run.model, loader, tta=True, amp=amp, shift=shift) for shift in (0, 1)}
    return {**row, "test_accuracy": run.metrics["test_accuracy"], "test_accuracy_tta": run.metrics["test_accuracy_tta"],
            "test_accuracy_flip": views[0], "test_accuracy_shift": views[1],
            "train_accuracy_last_epoch": run.history.last["train_accuracy"],
            "train_seconds": run.history.train_seconds, "images_per_second": run.history.samples_per_second,
            "epoch_seconds": [round(s, 3) for s in run.history.column("train_seconds")],
            "wall_seconds": time.perf_counter() - started}


def cli_row(step: str, argv: list[str], out: Path) -> dict:
    """Run ``mmbook ARGV --json FILE`` in this process and return what it wrote, with the command."""
    path = out / f"{step}.json"
    row = {"step": step, "command": "mmbook " + " ".join(argv)}
    try:
        status = mmbook_main([*argv, "--json", str(path)])
    except (Exception, SystemExit) as error:  # record it (an argparse error too) and go on with the next step
        return {**row, "error": repr(error)}
    row["status"] = status
    return {**row, **json.loads(path.read_text())} if status == 0 and path.exists() else row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for gpu_check.jsonl")
    parser.add_argument("--recipes", nargs="+", choices=sorted(RECIPES), default=["gpu", "gpu-93"],
                        help="fastcnn recipes to train (mmbook.fastcnn.RECIPES)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one run per recipe and seed")
    parser.add_argument("--quick", action="store_true", help="the quick subsets and one-epoch runs: checks every step")
    parser.add_argument("--budget", type=float, default=540.0, help="seconds after which no new step starts")
    parser.add_argument("--skip", nargs="*", default=[], choices=STEPS, help="steps to leave out")
    args = parser.parse_args(argv)
    if args.quick:
        os.environ["MMBOOK_QUICK"] = "1"  # so that the environment report says "mode quick"
    args.out.mkdir(parents=True, exist_ok=True)
    started_at = time.perf_counter()

    def time_left(needed: float) -> bool:
        return time.perf_counter() - started_at + needed < args.budget

    device = pick_device()
    print(environment_report(device), flush=True)
    quick_flag = ["--quick"] if args.quick else []

    if "fastcnn" not in args.skip:
        train_set = load_cifar10("train", quick=args.quick, progress=False)
        test_set = load_cifar10("test", quick=args.quick, progress=False)
        train = {"image": train_set.images, "label": train_set.labels}
        test = {"image": test_set.images, "label": test_set.labels}
        record(args.out, {"step": "data", "source": train_set.source, "train": len(train_set), "test": len(test_set)})

        def config(recipe: str, **overrides) -> FastCNNConfig:
            quick = {"epochs": 1, "batch_size": min(512, len(train_set) // 4)} if args.quick else {}
            return FastCNNConfig(**{**RECIPES[recipe], **quick, **overrides})

        warmed_up: set[tuple[int, ...]] = set()
        for recipe in args.recipes:
            if device.type == "cuda" and tuple(config(recipe).widths) not in warmed_up and time_left(60):
                warmed_up.add(tuple(config(recipe).widths))
                record(args.out, {**fastcnn_row(recipe, config(recipe, epochs=1), train, test, device), "step": "warmup"})
            for seed in args.seeds:
                if time_left(60):
                    record(args.out, {**fastcnn_row(recipe, config(recipe, seed=seed), train, test, device),
                                      "elapsed": time.perf_counter() - started_at})

    if "loader" not in args.skip and time_left(60):
        record(args.out, cli_row("loader", ["bench", "loader", "--baseline-images", "2000" if args.quick else "20000",
                                            *quick_flag], args.out))
    if "detection" not in args.skip and time_left(60):
        record(args.out, cli_row("detection", ["train", "--task", "scene-detection", "--no-progress", *quick_flag],
                                 args.out))
    record(args.out, {"step": "done", "elapsed": time.perf_counter() - started_at})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
