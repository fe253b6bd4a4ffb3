"""The GPU figures in one run: fast CNN trainer sweep, loader benchmark, scene detector.

Written for the ``device`` tool's 10-minute, 15-minute-budget GPU loans (see
``benchmarks/gpu_check.sh``, which unpacks the data and calls this), but it runs anywhere:
on a CPU, ``--quick`` finishes in about a minute and checks that every step works.

    python benchmarks/gpu_check.py --out results/           # full: about 5 minutes on an H100
    MMBOOK_QUICK=1 python benchmarks/gpu_check.py --quick   # smoke test on any machine

Every result is printed as it arrives and appended to ``OUT/gpu_check.jsonl`` (one JSON
object per line), so a run that is cut off still leaves what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from mmbook.bench import bench_loader
from mmbook.data import DeviceLoader, load_cifar10
from mmbook.fastcnn import FastCNNConfig, train_fastcnn
from mmbook.runtime import environment_report, pick_device

# Fast-trainer recipes to try, cheapest first. The CPU recipe is the book's default; the
# wider ones follow airbench's proportions (64/256/256 channels), which a GPU can afford.
FASTCNN_SWEEP: list[tuple[str, dict]] = [
    ("cpu recipe (32/64/128, 8 epochs)", {}),
    # The learning rate for batch 1024 is a guess (the CPU recipe uses 0.4 at batch 512), so bracket it.
    ("wide 64/256/256, 10 epochs, lr 0.4", {"widths": (64, 256, 256), "epochs": 10, "batch_size": 1024, "lr": 0.4}),
    ("wide 64/256/256, 10 epochs, lr 0.8", {"widths": (64, 256, 256), "epochs": 10, "batch_size": 1024, "lr": 0.8}),
    ("wide 64/256/256, 16 epochs, lr 0.6", {"widths": (64, 256, 256), "epochs": 16, "batch_size": 1024, "lr": 0.6}),
    ("wide 64/256/256, 10 epochs, lr 0.6, compile", {"widths": (64, 256, 256), "epochs": 10, "batch_size": 1024,
                                                     "lr": 0.6, "compile": True}),
]


def record(out: Path, row: dict) -> None:
    """Print ``row`` and append it to ``out/gpu_check.jsonl``."""
    print(json.dumps(row), flush=True)
    with open(out / "gpu_check.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for gpu_check.jsonl")
    parser.add_argument("--quick", action="store_true", help="5,000 images and one short run of each step")
    parser.add_argument("--skip", nargs="*", default=[], choices=("fastcnn", "loader", "detection"),
                        help="steps to leave out")
    args = parser.parse_args()
    if args.quick:
        os.environ["MMBOOK_QUICK"] = "1"  # so that the environment report says "mode quick"
    args.out.mkdir(parents=True, exist_ok=True)
    device = pick_device()
    print(environment_report(device), flush=True)
    if device.type == "cuda":
        print(torch.cuda.get_device_name(device), flush=True)
    train_set = load_cifar10("train", quick=args.quick)
    test_set = load_cifar10("test", quick=args.quick)
    train = {"image": train_set.images, "label": train_set.labels}
    test = {"image": test_set.images, "label": test_set.labels}

    if "fastcnn" not in args.skip:
        sweep = FASTCNN_SWEEP[:2] if args.quick else FASTCNN_SWEEP
        for name, overrides in sweep:
            if args.quick:
                overrides = {**overrides, "epochs": 1}
            started = time.perf_counter()
            result = train_fastcnn(train, test, FastCNNConfig(**overrides), device=device, progress=False)
            record(args.out, {"step": "fastcnn", "recipe": name, "device": str(device),
                              "config": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
                              "test_accuracy": result.test_accuracy, "test_accuracy_tta": result.test_accuracy_tta,
                              "train_seconds": result.train_seconds, "images_per_second": result.images_per_second,
                              "wall_seconds": time.perf_counter() - started})

    if "loader" not in args.skip:
        # The source's loop is slow on any device; on a GPU a third of an epoch is plenty.
        result = bench_loader(train["image"], train["label"], device=device,
                              baseline_images=2000 if args.quick else 20000)
        print(result.table(), flush=True)
        record(args.out, {"step": "loader", "device": result.device, "ratio": result.ratio,
                          "baseline_images_per_second": result.baseline_images_per_second,
                          "fast_images_per_second": result.fast_images_per_second,
                          "ceiling_images_per_second": result.ceiling_images_per_second, "amp": result.fast_amp})

    if "detection" not in args.skip:
        from mmbook.data import AugmentedLoader
        from mmbook.objectives.tasks import DEFAULT_EPOCHS, SCENE_COUNTS, build_scene_task, scene_metrics
        from mmbook.scenes import load_scenes
        from mmbook.training import fit

        for width in (32, 64):
            task = build_scene_task("scene-detection", "image", width=width)
            train_count, test_count = SCENE_COUNTS[task.name][args.quick]
            scenes = load_scenes("train", train_count, quick=args.quick)
            test_scenes = load_scenes("test", test_count, quick=args.quick)
            loader = AugmentedLoader(DeviceLoader(scenes.tensors(), 64, shuffle=True, device=device), task.augment)
            history = fit(task.model, loader, epochs=DEFAULT_EPOCHS[task.name][args.quick], lr=3e-3, device=device,
                          loss_fn=task.loss_fn, accuracy_fn=task.accuracy_fn, progress=False)
            metrics = scene_metrics(task, DeviceLoader(test_scenes.tensors(), 500, device=device))
            record(args.out, {"step": "detection", "width": width, "device": str(device),
                              "train_seconds": history.train_seconds, **metrics})


if __name__ == "__main__":
    main()
