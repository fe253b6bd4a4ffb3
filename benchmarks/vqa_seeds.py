"""The Reasoning chapter's VQA models on Sort-of-CLEVR (or the CIFAR-10 scenes) over several seeds.

    python benchmarks/vqa_seeds.py                      # full mode, seeds 0, 1, 2, the four models below
    python benchmarks/vqa_seeds.py --models concat film # some of them
    python benchmarks/vqa_seeds.py --images scenes      # questions about the book's CIFAR-10 scenes
    python benchmarks/vqa_seeds.py --quick              # quick mode (a smoke test of the script)

Trains each model with ``train_scene_vqa(model, images, seed=S)`` at the CLI's defaults
(:data:`mmbook.reasoning.recipe.VQA_DEFAULTS`, the runs of ``mmbook train --task scene-vqa --images I --model M --seed S``)
and prints accuracy overall, on non-relational and on relational questions, per run and as mean ± std. A seed sets
the scenes, the questions, the initialisation and the batch order, so the models of one seed answer the same test
questions and their comparisons are paired (:func:`mmbook.results.compare` with ``paired=True``).
"""

from __future__ import annotations

import sys

from cli_runs import benchmark_arguments, write_results
from mmbook.results import compare, format_mean_std

MODELS = ("question", "concat", "film", "relation")
FIGURES = ("overall", "non_relational", "relational")


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_arguments(__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS, help="the models to train")
    parser.add_argument("--images", default="shapes", choices=("shapes", "scenes"),
                        help="Sort-of-CLEVR shapes (default) or the book's CIFAR-10 scenes")
    args = parser.parse_args(argv)
    from mmbook.reasoning.recipe import train_scene_vqa

    values: dict[str, dict[str, list[float]]] = {}
    print(f"{'model':<10}{'seed':>5}" + "".join(f"{f:>16}" for f in FIGURES) + f"{'train s':>9}", flush=True)
    for model in args.models:
        values[model] = {key: [] for key in (*FIGURES, "train_seconds")}
        for seed in range(args.seeds):
            report = train_scene_vqa(model, args.images, seed=seed, quick=args.quick, progress=False)
            for key in values[model]:
                values[model][key].append(report[key])
            print(f"{model:<10}{seed:>5}" + "".join(f"{report[f]:>16.3f}" for f in FIGURES)
                  + f"{report['train_seconds']:>9.1f}", flush=True)
    print(f"\nmean ± std over {args.seeds} seeds:")
    for model, figures in values.items():
        print(f"{model:<10}" + "".join(f"  {f} {format_mean_std(figures[f])}" for f in FIGURES))
    verdicts = {}
    if args.seeds >= 2:
        for a, b in (("relation", "concat"), ("film", "concat"), ("relation", "film"), ("concat", "question")):
            if a in values and b in values:
                for figure in ("relational", "non_relational"):
                    verdicts[f"{a} vs {b}, {figure}"] = compare(values[a][figure], values[b][figure],
                                                                (f"{a} ({figure.replace('_', '-')})", b),
                                                                paired=True).sentence
                    print(verdicts[f"{a} vs {b}, {figure}"])
    write_results(args.json, images=args.images, values=values, verdicts=verdicts, seeds=args.seeds, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
