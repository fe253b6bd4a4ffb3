"""CIDEr-D against the number of image-caption pairs: a prefix captioner over a pretrained language model
against an attention decoder from scratch, over several seeds.

    python benchmarks/vlm_data_efficiency.py            # full mode: 250, 500 and 1,000 pairs, seeds 0, 1, 2
    python benchmarks/vlm_data_efficiency.py --quick    # quick mode (a smoke test of the script)

The curve of the vision-language page (``book/ch07_generation/03_vlm.ipynb``) with more seeds. For every seed: a
caption language model trained on the text of the training scenes' references
(:func:`~mmbook.generation.pretrain_caption_lm`), scored as a blind captioner; then, for each number of pairs, a
:class:`~mmbook.generation.PrefixCaptioner` over that language model with the language model tuned, and the attention
GRU from scratch, both with the steps of the largest size (fewer pairs, more epochs). A seed sets the scenes, their
references, the frozen encoder, the language model and the decoders' initialisation and batch order, so the two
captioners of a seed and size are paired.
"""

from __future__ import annotations

import sys

from cli_runs import benchmark_arguments, write_results
from mmbook.results import compare, format_mean_std

#: Per mode: the pairs of each point, the text scenes of the language model, its epochs, the test scenes, and
#: the epochs at the largest size (as the vision-language page sets them).
SETTINGS = {False: {"sizes": (250, 500, 1000), "text_scenes": 2000, "lm_epochs": 4, "test_scenes": 500, "epochs": 6},
            True: {"sizes": (75, 150, 300), "text_scenes": 300, "lm_epochs": 1, "test_scenes": 150, "epochs": 2}}
SYSTEMS = ("tuned prefix", "attention from scratch")


def run_seed(seed: int, quick: bool) -> dict:
    """The blind language model's CIDEr-D and each system's CIDEr-D per size on one seed."""
    from mmbook.generation import (PrefixCaptioner, evaluate_captions, generate, generation_vocabulary,
                                   pretrain_caption_lm, train_scene_captioning)
    from mmbook.generation.recipe import caption_data
    from mmbook.runtime import seed_everything

    settings = SETTINGS[quick]
    vocab = generation_vocabulary()
    _, _, text_tensors = caption_data("train", settings["text_scenes"], seed, quick)
    test_scenes, test_references, test_tensors = caption_data("test", settings["test_scenes"], seed, quick)
    lm, facts = pretrain_caption_lm(text_tensors["text"], len(vocab), epochs=settings["lm_epochs"], seed=seed)
    blind = evaluate_captions(generate(lm, test_tensors["features"], vocab), test_references, test_scenes)
    largest = max(settings["sizes"])
    result = {"blind": blind["cider_d"], "lm_seconds": facts["lm_seconds"], "cider_d": {}, "seconds": {}}
    for system in SYSTEMS:
        result["cider_d"][system], result["seconds"][system] = [], []
        for size in settings["sizes"]:
            seed_everything(seed)  # the projection starts the same whatever was trained before it (as on the page)
            model = (PrefixCaptioner(lm, test_tensors["features"].shape[2], freeze_lm=False)
                     if system == "tuned prefix" else None)
            report = train_scene_captioning("attention", model=model, seed=seed, quick=quick, scenes=size,
                                            test_scenes=settings["test_scenes"],
                                            epochs=settings["epochs"] * largest // size)
            result["cider_d"][system].append(report["cider_d"])
            result["seconds"][system].append(report["train_seconds"])
    return result


def main(argv: list[str] | None = None) -> int:
    args = benchmark_arguments(__doc__.splitlines()[0]).parse_args(argv)
    sizes = SETTINGS[args.quick]["sizes"]
    runs = []
    print(f"{'seed':>4}  {'system':<24}" + "".join(f"{size:>8}" for size in sizes) + "   (CIDEr-D per pairs)", flush=True)
    for seed in range(args.seeds):
        runs.append(run_seed(seed, args.quick))
        for system in SYSTEMS:
            print(f"{seed:>4}  {system:<24}" + "".join(f"{v:>8.3f}" for v in runs[-1]["cider_d"][system]), flush=True)
        print(f"{seed:>4}  {'blind language model':<24}{runs[-1]['blind']:>8.3f}", flush=True)
    print(f"\nmean ± std over {args.seeds} seeds:")
    for system in SYSTEMS:
        print(f"{system:<24}" + "".join(
            f"  {size}: {format_mean_std([run['cider_d'][system][i] for run in runs])}" for i, size in enumerate(sizes)))
    print(f"{'blind language model':<24}  {format_mean_std([run['blind'] for run in runs])}")
    verdicts = {}
    if args.seeds >= 2:
        for i, size in enumerate(sizes):
            verdicts[str(size)] = compare([run["cider_d"]["tuned prefix"][i] for run in runs],
                                          [run["cider_d"]["attention from scratch"][i] for run in runs],
                                          (f"the tuned prefix model at {size} pairs", "the attention decoder"),
                                          paired=True, scale=1.0, unit="CIDEr-D", digits=3).sentence
            print(verdicts[str(size)])
    write_results(args.json, sizes=list(sizes), runs=runs, verdicts=verdicts, seeds=args.seeds, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
