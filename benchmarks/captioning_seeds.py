"""The Generation chapter's captioners and the nearest-neighbour baseline over several seeds.

    python benchmarks/captioning_seeds.py            # full mode, seeds 0, 1, 2
    python benchmarks/captioning_seeds.py --quick    # quick mode (a smoke test of the script)
    python benchmarks/captioning_seeds.py --regions oracle   # every system on ground-truth regions
    python benchmarks/captioning_seeds.py --encoder large    # every system on the large encoder's regions

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
``--encoder large`` gives every system the regions of the larger encoder
(:class:`mmbook.objectives.LargeSceneBackbone`, pretrained per seed for
:data:`mmbook.generation.encoder.PRETRAIN_DEFAULTS` ``["large"]`` epochs): how far better recognition moves the
captions.
"""

from __future__ import annotations

import sys
import time

from cli_runs import benchmark_arguments, write_results
from mmbook.results import compare, format_mean_std

METRICS = ("cider_d", "bleu_4", "chair_i", "object_recall", "object_precision")
SYSTEMS = ("blind", "attention", "transformer", "nearest neighbour")
NEIGHBOURS = 3
#: What :func:`mmbook.generation.train_scene_captioning` reports of the frozen encoder.
ENCODER_FACTS = ("pretrain_accuracy", "pretrain_seconds", "pretrain_images", "pretrain_epochs")


def run_seed(seed: int, quick: bool, regions: str = "encoder", encoder: str = "small", mirror: bool = False,
             scenes: int | None = None, beam_width: int = 1) -> dict[str, dict]:
    """The four systems' figures on one seed (each a dict of :data:`METRICS` and ``seconds``).

    ``regions``, ``encoder`` and ``mirror`` say which region features every system reads
    (:func:`mmbook.generation.recipe.caption_data`); ``scenes`` training scenes (``None``: the chapter's); the
    decoders write greedily, or with beam search of ``beam_width`` above 1.
    """
    from mmbook.generation import CAPTIONING_DEFAULTS, evaluate_captions, nearest_neighbour_captions, train_scene_captioning
    from mmbook.generation.recipe import caption_data

    defaults = CAPTIONING_DEFAULTS[quick]
    scenes = defaults["scenes"] if scenes is None else scenes
    reading = {"regions": regions, "encoder": encoder, "mirror": mirror}
    decoding = {"decoding": "beam", "decoding_options": {"width": beam_width}} if beam_width > 1 else {}
    results = {}
    for kind in ("blind", "attention", "transformer"):
        options = {"batch_size": 32, "epochs": defaults["epochs"] - (0 if quick else 1)} if kind == "transformer" else {}
        report = train_scene_captioning(kind, seed=seed, quick=quick, scenes=scenes, **reading, **decoding, **options)
        results[kind] = {**{m: report[m] for m in METRICS}, "seconds": report["train_seconds"],
                         "test_scenes": report["test_scenes"]}
    if regions == "encoder":  # the encoder's accuracy on shrunk CIFAR-10 test images and its pretraining, as reported
        results["encoder"] = {key: report[key] for key in ENCODER_FACTS}
    test_set, test_references, test_tensors = caption_data("test", defaults["test_scenes"], seed, quick, **reading)
    _, train_references, train_tensors = caption_data("train", scenes, seed, quick, **reading)
    started = time.perf_counter()
    borrowed = nearest_neighbour_captions(train_tensors["features"], train_references, test_tensors["features"],
                                          k=NEIGHBOURS)
    report = evaluate_captions(borrowed, test_references, test_set)
    results["nearest neighbour"] = {**{m: report[m] for m in METRICS}, "seconds": time.perf_counter() - started,
                                    "test_scenes": len(test_set)}
    return results


def main(argv: list[str] | None = None) -> int:
    from mmbook.generation.encoder import ENCODERS
    from mmbook.generation.recipe import REGION_SOURCES

    parser = benchmark_arguments(__doc__.splitlines()[0])
    parser.add_argument("--regions", choices=REGION_SOURCES, default="encoder",
                        help="the frozen encoder's region features (default) or the scenes' ground truth")
    parser.add_argument("--encoder", choices=tuple(ENCODERS), default="small",
                        help="with --regions encoder: the pretrained encoder, the pages' small one (default) or the "
                             "large one")
    parser.add_argument("--mirror", action="store_true",
                        help="with --regions encoder: average each region's features with the mirrored scene's")
    parser.add_argument("--scenes", type=int, default=None,
                        help="training scenes of every system (default: the chapter's)")
    parser.add_argument("--beam-width", type=int, default=1,
                        help="the decoders write with beam search of this width (default 1: greedy)")
    args = parser.parse_args(argv)
    if args.regions == "oracle" and (args.encoder != "small" or args.mirror):
        parser.error("--encoder and --mirror choose how an encoder's regions are read: they need --regions encoder")
    if args.scenes is not None and args.scenes < 1 or args.beam_width < 1:
        parser.error(f"--scenes and --beam-width must be 1 or more, got {args.scenes} and {args.beam_width}")
    runs = [run_seed(seed, args.quick, args.regions, args.encoder, args.mirror, args.scenes, args.beam_width)
            for seed in range(args.seeds)]
    print(f"\n{'system':<18}{'seed':>5}" + "".join(f"{m:>17}" for m in METRICS) + f"{'seconds':>9}")
    for seed, results in enumerate(runs):
        for system in SYSTEMS:
            row = results[system]
            print(f"{system:<18}{seed:>5}" + "".join(f"{row[m]:>17.3f}" for m in METRICS) + f"{row['seconds']:>9.1f}")
    values = {system: {m: [results[system][m] for results in runs] for m in (*METRICS, "seconds")} for system in SYSTEMS}
    if args.regions == "encoder":
        for seed, results in enumerate(runs):
            print(f"seed {seed}: the {args.encoder} encoder names {results['encoder']['pretrain_accuracy']:.3f} of the "
                  f"shrunk CIFAR-10 test images ({results['encoder']['pretrain_seconds']:.0f} s of pretraining)")
    print(f"\nmean ± std over {args.seeds} seeds, {runs[0]['attention']['test_scenes']} test scenes each, "
          f"{args.regions} regions" + (f" of the {args.encoder} encoder" + (", mirrored" if args.mirror else "")
                                       if args.regions == "encoder" else "")
          + (f", {args.scenes} training scenes, " if args.scenes else ", the chapter's training scenes, ")
          + (f"beam width {args.beam_width}:" if args.beam_width > 1 else "greedy:"))
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
    encoders = [results["encoder"] for results in runs] if args.regions == "encoder" else None
    write_results(args.json, values=values, verdicts=verdicts, seeds=args.seeds, quick=args.quick, regions=args.regions,
                  encoder=args.encoder if args.regions == "encoder" else None, encoders=encoders, mirror=args.mirror,
                  scenes=args.scenes, beam_width=args.beam_width)
    return 0


if __name__ == "__main__":
    sys.exit(main())
