"""Train the worked example's three models through the CLI and compare them.

    python benchmarks/worked_example_cli.py            # quick mode (the default here)
    python benchmarks/worked_example_cli.py --full     # full mode

Runs ``mmbook train --modalities {image,text,image+text} --json ...`` and prints a
table of test accuracy, training seconds and images/s, then whether the fused
model beats both single-modality models. Exit status 1 if it does not.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from cli_runs import train_json


def run(modalities: str, quick: bool, out_dir: Path, extra: list[str]) -> dict:
    flags = ["--task", "cifar10-captions", "--modalities", modalities, "--fusion", "concat", *extra]
    return train_json([*flags, "--quick"] if quick else flags, out_dir / f"{modalities.replace('+', '_')}.json")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="full mode instead of quick mode")
    parser.add_argument("extra", nargs="*", help="more flags for mmbook train, after --")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {m: run(m, not args.full, Path(tmp), args.extra) for m in ("image", "text", "image+text")}
    print(f"\n{'modalities':<12}{'test acc':>10}{'train s':>10}{'images/s':>10}  device")
    for modalities, result in results.items():
        print(f"{modalities:<12}{result['test_accuracy']:>10.3f}{result['train_seconds']:>10.1f}"
              f"{result['train_images_per_second']:>10.0f}  {result['device']}")
    fused = results["image+text"]["test_accuracy"]
    ordered = fused > results["image"]["test_accuracy"] and fused > results["text"]["test_accuracy"]
    print(f"fused > image-only and fused > text-only: {ordered}")
    return 0 if ordered else 1


if __name__ == "__main__":
    sys.exit(main())
