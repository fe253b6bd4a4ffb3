"""The Reasoning chapter's VQA models on Sort-of-CLEVR (or the CIFAR-10 scenes) over several seeds.

    python benchmarks/vqa_seeds.py                      # full mode, seeds 0, 1, 2, the four models below
    python benchmarks/vqa_seeds.py --models concat film # some of them
    python benchmarks/vqa_seeds.py --images scenes      # questions about the book's CIFAR-10 scenes
    python benchmarks/vqa_seeds.py --question bow       # the question as a bag of words instead of an LSTM
    python benchmarks/vqa_seeds.py --images scenes --image-encoder pretrained   # a frozen CIFAR-10 backbone
    python benchmarks/vqa_seeds.py --epochs 24          # longer runs (also --scenes, --lr)
    python benchmarks/vqa_seeds.py --epochs 32 --curriculum 16   # non-relational questions only for 16 epochs
    python benchmarks/vqa_seeds.py --quick              # quick mode (a smoke test of the script)

Trains each model with ``train_scene_vqa(model, images, seed=S)`` at the CLI's defaults
(:data:`mmbook.reasoning.recipe.VQA_DEFAULTS`, the runs of ``mmbook train --task scene-vqa --images I --model M --seed S``;
``--question``, ``--image-encoder``, ``--epochs``, ``--scenes``, ``--lr`` and ``--curriculum`` are passed on as the
CLI's flags of the same names)
and prints accuracy overall, on non-relational and on relational questions, per run and as mean ± std, and the
mean ± std of every question family. A seed sets
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
    from mmbook.reasoning.models import IMAGE_ENCODERS, QUESTION_ENCODERS
    from mmbook.reasoning.recipe import IMAGE_SOURCES

    parser = benchmark_arguments(__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS, help="the models to train")
    parser.add_argument("--images", default="shapes", choices=IMAGE_SOURCES,
                        help="Sort-of-CLEVR shapes (default) or the book's CIFAR-10 scenes")
    parser.add_argument("--question", default="lstm", choices=QUESTION_ENCODERS,
                        help="the question encoder: an LSTM (default) or a bag of words")
    parser.add_argument("--image-encoder", default="scratch", choices=IMAGE_ENCODERS,
                        help="each model's own CNN (default) or the frozen backbone pretrained on CIFAR-10 (scenes)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the CLI's)")
    parser.add_argument("--scenes", type=int, default=None, help="training scenes (default: the CLI's)")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the CLI's)")
    parser.add_argument("--curriculum", type=int, default=0,
                        help="epochs of non-relational questions only before every question (default 0)")
    args = parser.parse_args(argv)
    from mmbook.reasoning.programs import families_for
    from mmbook.reasoning.recipe import train_scene_vqa

    settings = {"question": args.question, "image_encoder": args.image_encoder, "epochs": args.epochs,
                "scenes": args.scenes, "lr": args.lr, "curriculum": args.curriculum}

    values: dict[str, dict[str, list[float]]] = {}
    by_family: dict[str, dict[str, list[float]]] = {}  # model -> family -> one accuracy per seed
    print(f"{'model':<10}{'seed':>5}" + "".join(f"{f:>16}" for f in FIGURES) + f"{'train s':>9}", flush=True)
    for model in args.models:
        values[model] = {key: [] for key in (*FIGURES, "train_seconds")}
        for seed in range(args.seeds):
            report = train_scene_vqa(model, args.images, seed=seed, quick=args.quick, progress=False,
                                     **{key: value for key, value in settings.items() if value is not None})
            for key in values[model]:
                values[model][key].append(report[key])
            for family in families_for(args.images):
                by_family.setdefault(model, {}).setdefault(family, []).append(report[family])
            print(f"{model:<10}{seed:>5}" + "".join(f"{report[f]:>16.3f}" for f in FIGURES)
                  + f"{report['train_seconds']:>9.1f}", flush=True)
    print(f"\nmean ± std over {args.seeds} seeds:")
    for model, figures in values.items():
        print(f"{model:<10}" + "".join(f"  {f} {format_mean_std(figures[f])}" for f in FIGURES))
    print(f"\nper family, mean ± std over {args.seeds} seeds:")
    for model, families in by_family.items():
        print(f"{model:<10}" + "".join(f"  {family} {format_mean_std(v)}" for family, v in families.items()))
    verdicts = {}
    if args.seeds >= 2:
        for a, b in (("relation", "concat"), ("film", "concat"), ("relation", "film"), ("concat", "question"),
                     ("film", "question")):
            if a in values and b in values:
                for figure in (FIGURES if b == "question" else ("relational", "non_relational")):
                    verdicts[f"{a} vs {b}, {figure}"] = compare(values[a][figure], values[b][figure],
                                                                (f"{a} ({figure.replace('_', '-')})", b),
                                                                paired=True).sentence
                    print(verdicts[f"{a} vs {b}, {figure}"])
    write_results(args.json, images=args.images, settings=settings, values=values, by_family=by_family, verdicts=verdicts, seeds=args.seeds, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
