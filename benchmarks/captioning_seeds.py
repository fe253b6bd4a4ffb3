"""The Generation chapter's captioners and the nearest-neighbour baseline over several seeds.

    python benchmarks/captioning_seeds.py            # full mode, seeds 0, 1, 2
    python benchmarks/captioning_seeds.py --quick    # quick mode (a smoke test of the script)
    python benchmarks/captioning_seeds.py --regions oracle   # every system on ground-truth regions

For every seed: the blind GRU and the attention GRU as the captioning page trains them
(``train_scene_captioning(kind)`` with the chapter's defaults), the Transformer decoder as the decoding page
trains it (batch 32, one epoch fewer), and the nearest-neighbour baseline of the captioning page
(:func:`mmbook.generation.nearest_neighbour_captions`, k = 3). A seed sets the training and test scenes, their
references, the frozen encoder (pretrained per seed) and the decoders' initialisation and batch order, so the four
systems of one seed share everything but the system, and their comparisons are paired. Prints each run's
figures, mean ± std per system, and the paired verdicts of :func:`mmbook.results.compare` on CIDEr-D.

``--regions oracle`` gives every system the scenes' ground-truth regions
(:func:`mmbook.generation.encoder.oracle_region_features`) instead of the frozen encoder's: captioning with
recognition solved, which separates the hallucinations the encoder causes from those the decoder adds.
"""

from __future__ import annotations

import sys
import time

from cli_runs import benchmark_arguments, write_results
from mmbook.results import compare, format_mean_std

METRICS = ("cider_d", "bleu_4", "chair_i", "object_recall", "object_precision")
SYSTEMS = ("blind", "attention", "transformer", "nearest neighbour")
NEIGHBOURS = 3


def run_seed(seed: int, quick: bool, regions: str = "encoder") -> dict[str, dict]:
    """The four systems' figures on one seed (each a dict of :data:`METRICS` and ``seconds``), on ``regions``."""
    from mmbook.generation import CAPTIONING_DEFAULTS, evaluate_captions, nearest_neighbour_captions, train_scene_captioning
    from mmbook.generation.recipe import caption_data

    defaults = CAPTIONING_DEFAULTS[quick]
    results = {}
    for kind in ("blind", "attention", "transformer"):
        options = {"batch_size": 32, "epochs": defaults["epochs"] - (0 if quick else 1)} if kind == "transformer" else {}
        report = train_scene_captioning(kind, seed=seed, quick=quick, regions=regions, **options)
        results[kind] = {**{m: report[m] for m in METRICS}, "seconds": report["train_seconds"],
                         "test_scenes": report["test_scenes"]}
    test_set, test_references, test_tensors = caption_data("test", defaults["test_scenes"], seed, quick,
                                                           regions=regions)
    _, train_references, train_tensors = caption_data("train", defaults["scenes"], seed, quick, regions=regions)
    started = time.perf_counter()
    borrowed = nearest_neighbour_captions(train_tensors["features"], train_references, test_tensors["features"],
                                          k=NEIGHBOURS)
    report = evaluate_captions(borrowed, test_references, test_set)
    results["nearest neighbour"] = {**{m: report[m] for m in METRICS}, "seconds": time.perf_counter() - started,
                                    "test_scenes": len(test_set)}
    return results


def main(argv: list[str] | None = None) -> int:
    from mmbook.generation.recipe import REGION_SOURCES

    parser = benchmark_arguments(__doc__.splitlines()[0])
    parser.add_argument("--regions", choices=REGION_SOURCES, default="encoder",
                        help="the frozen encoder's region features (default) or the scenes' ground truth")
    args = parser.parse_args(argv)
    runs = [run_seed(seed, args.quick, args.regions) for seed in range(args.seeds)]
    print(f"\n{'system':<18}{'seed':>5}" + "".join(f"{m:>17}" for m in METRICS) + f"{'seconds':>9}")
    for seed, results in enumerate(runs):
        for system in SYSTEMS:
            row = results[system]
            print(f"{system:<18}{seed:>5}" + "".join(f"{row[m]:>17.3f}" for m in METRICS) + f"{row['seconds']:>9.1f}")
    values = {system: {m: [results[system][m] for results in runs] for m in (*METRICS, "seconds")} for system in SYSTEMS}
    print(f"\nmean ± std over {args.seeds} seeds, {runs[0]['attention']['test_scenes']} test scenes each, "
          f"{args.regions} regions:")
    for system in SYSTEMS:
        print(f"{system:<18}" + "".join(f"  {m} {format_mean_std(values[system][m], scale=1.0, digits=3)}"
                                        for m in METRICS))
    verdicts = {}
    if args.seeds >= 2:
        for a, b in (("attention", "blind"), ("transformer", "blind"), ("attention", "nearest neighbour"),
                     ("transformer", "nearest neighbour"), ("transformer", "attention")):
            verdicts[f"{a} vs {b}"] = compare(values[a]["cider_d"], values[b]["cider_d"], (a, b), paired=True,
                                              scale=1.0, unit="CIDEr-D", digits=3).sentence
            print(verdicts[f"{a} vs {b}"])
    write_results(args.json, values=values, verdicts=verdicts, seeds=args.seeds, quick=args.quick, regions=args.regions)
    return 0


if __name__ == "__main__":
    sys.exit(main())
