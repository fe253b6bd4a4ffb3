"""The GMU with and without layer-normalised inputs, on the book's data, over several seeds.

    python benchmarks/gmu_normalize.py            # full mode, seeds 0, 1, 2
    python benchmarks/gmu_normalize.py --quick    # quick mode (a smoke test of the script)

Runs ``mmbook train --task cifar10-captions --fusion gmu --fusion-option normalize={false,true} --seed S --json ...``
(the worked example's data: CIFAR-10 images with generated captions) and prints the test accuracy of each run
and the paired verdict of :func:`mmbook.results.compare` (both settings train on the
same seeds: the same data, weights at the start and batch order). The own-data page
(``book/ch11_own_data/own_data.ipynb``, exercise ``ex-own-gmu``) measures the same question on generated data.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from cli_runs import benchmark_arguments, train_json, write_results
from mmbook.results import compare, format_mean_std

SETTINGS = {"plain": ["--fusion-option", "normalize=false"], "normalized": ["--fusion-option", "normalize=true"]}


def run(name: str, seed: int, quick: bool, folder: Path) -> dict:
    """One training run through the CLI; its JSON result."""
    flags = ["--task", "cifar10-captions", "--fusion", "gmu", *SETTINGS[name], "--seed", str(seed)]
    return train_json([*flags, "--quick"] if quick else flags, folder / f"{name}-{seed}.json")


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_arguments(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        results = {name: [run(name, seed, args.quick, Path(tmp)) for seed in range(args.seeds)] for name in SETTINGS}
    print(f"\n{'GMU inputs':<12}{'seed':>5}{'test acc':>10}{'train s':>9}  device")
    for name, runs in results.items():
        for seed, result in enumerate(runs):
            print(f"{name:<12}{seed:>5}{result['test_accuracy']:>10.3f}{result['train_seconds']:>9.1f}  {result['device']}")
    accuracy = {name: [result["test_accuracy"] for result in runs] for name, runs in results.items()}
    verdict = compare(accuracy["normalized"], accuracy["plain"], ("normalized inputs", "the paper's GMU"), paired=True)
    print(f"test accuracy, mean ± std over {args.seeds} seeds: plain {format_mean_std(accuracy['plain'])}, "
          f"normalized {format_mean_std(accuracy['normalized'])}\n{verdict.sentence}")
    write_results(args.json, accuracy=accuracy, verdict=verdict.sentence,
                  fusion_options={n: runs[0]["fusion_options"] for n, runs in results.items()},
                  train_seconds={n: [r["train_seconds"] for r in runs] for n, runs in results.items()},
                  device=results["plain"][0]["device"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
