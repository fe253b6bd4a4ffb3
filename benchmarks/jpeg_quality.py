"""How much JPEG compression costs: the CPU fastcnn recipe on the data re-encoded at lower qualities.

The book's offline CIFAR-10 is a JPEG copy (quality about 75), and no copy of the official
files is at hand to compare with. This script measures the slope instead: it re-encodes every
image of the copy at each ``--qualities`` value into a temporary folder, trains the CPU recipe
(``FastCNNConfig()``, seed 0) on each version, and prints test accuracies next to the copy's own.
A re-encoding at quality 95 is the control: it should change nothing.

    python benchmarks/jpeg_quality.py                      # 95, 50, 25: about 9 minutes on two cores
    python benchmarks/jpeg_quality.py --quick              # 5,000 images, one epoch: a check that it runs

Results are in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

from PIL import Image

from mmbook.data import load_cifar10
from mmbook.data.cifar10 import locate_cifar10
from mmbook.fastcnn import FastCNNConfig
from mmbook.recipes import train_fastcnn


def reencode(path: Path, source: Path, target: Path, quality: int) -> None:
    """Save the image at ``path`` (under ``source``) as a JPEG of ``quality`` at the same place under ``target``."""
    out = target / path.relative_to(source)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.open(path).convert("RGB").save(out, quality=quality)


def accuracy_on(root: Path, quick: bool, epochs: int | None) -> tuple[float, float]:
    """Test accuracy (plain, flip TTA) of the CPU fastcnn recipe trained on the copy under ``root``."""
    train = load_cifar10("train", root=root, quick=quick, progress=False)
    test = load_cifar10("test", root=root, quick=quick, progress=False)
    config = FastCNNConfig() if epochs is None else FastCNNConfig(epochs=epochs)
    run = train_fastcnn({"image": train.images, "label": train.labels},
                        {"image": test.images, "label": test.labels}, config, device="cpu", progress=False)
    return run.metrics["test_accuracy"], run.metrics["test_accuracy_tta"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qualities", type=int, nargs="+", default=[95, 50, 25], help="JPEG qualities, 1-95")
    parser.add_argument("--quick", action="store_true", help="5,000 training images, one epoch, quality 50 only")
    args = parser.parse_args()
    if any(not 1 <= quality <= 95 for quality in args.qualities):
        parser.error(f"--qualities must lie in 1..95, got {args.qualities}")
    found = locate_cifar10()
    if found is None or found[0] != "imagefolder":
        parser.error("needs the JPEG copy of CIFAR-10 (MMBOOK_DATA=.../data with cifar10/{train,test}/<class>/*.jpg)")
    source = found[1]
    qualities, epochs = ([50], 1) if args.quick else (args.qualities, None)
    files = sorted(source.rglob("*.jpg"))

    rows = [("the copy as it is (about 75)", *accuracy_on(source.parent, args.quick, epochs))]
    print(f"{rows[-1][0]}: {rows[-1][1]:.2%} ({rows[-1][2]:.2%} with flip TTA)", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        # The decoded re-encodings are cached in the scratch folder too, not in the reader's cache.
        os.environ["MMBOOK_CACHE"] = str(Path(scratch) / "tensors")
        for quality in qualities:
            root = Path(scratch) / f"q{quality}"
            with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
                list(pool.map(partial(reencode, source=source, target=root / "cifar10", quality=quality), files,
                              chunksize=500))
            rows.append((f"re-encoded at quality {quality}", *accuracy_on(root, args.quick, epochs)))
            print(f"{rows[-1][0]}: {rows[-1][1]:.2%} ({rows[-1][2]:.2%} with flip TTA)", flush=True)

    print(f"\nCPU fastcnn recipe{' (quick: 5,000 images, 1 epoch)' if args.quick else ''}, test accuracy:")
    print(f"{'data':<32}{'plain':>8}{'flip TTA':>10}")
    for name, plain, tta in rows:
        print(f"{name:<32}{plain:>8.2%}{tta:>10.2%}")


if __name__ == "__main__":
    main()
