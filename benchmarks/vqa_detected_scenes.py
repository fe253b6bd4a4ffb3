"""Programs on detected scenes: NS-VQA in miniature on the book's CIFAR-10 scenes, against the question alone.

    python benchmarks/vqa_detected_scenes.py            # full mode, seeds 0, 1, 2
    python benchmarks/vqa_detected_scenes.py --seeds 1  # seed 0 only
    python benchmarks/vqa_detected_scenes.py --quick    # quick mode (a smoke test of the script)

For each seed:

- the Objectives chapter's detector is trained as ``mmbook train --task scene-detection --seed S`` trains it
  (full mode: 20,000 training scenes, 10 epochs), on the scenes' boxes and classes, no questions;
- it detects the objects of the VQA test scenes (``vqa_data("scenes", "test", ...)``, the test questions of
  ``mmbook train --task scene-vqa --images scenes --seed S``), and each detection scoring at least a threshold
  becomes an object with its class, kind, size, place and row (:func:`mmbook.reasoning.detect_scenes`);
- every test question's program runs on those detected scenes (:func:`mmbook.reasoning.program_answers`);
- the question-only LSTM is trained on the seed's VQA training questions, the bias baseline of the same test
  questions, so the two are paired.

The threshold 0.5 is the one fixed in advance; 0.3 and 0.7 are reported beside it to show how much the answers
depend on it, and are not used to pick a winner. The programs on the ground-truth scenes answer every question (a
check of the pipeline, printed too).
"""

from __future__ import annotations

import sys
import time

from cli_runs import benchmark_arguments, write_results

THRESHOLDS = (0.3, 0.5, 0.7)
#: The threshold fixed before any measurement; the verdicts use it.
THRESHOLD = 0.5
FIGURES = ("overall", "non_relational", "relational")


def run(seed: int, quick: bool) -> dict[str, dict[str, float]]:
    """Accuracy per family, relational, non-relational and overall of the programs on the scenes detected at each
    of :data:`THRESHOLDS`, on the ground truth, and of the question-only model, for one seed."""
    from mmbook.recipes import TASKS, Settings
    from mmbook.reasoning import answer_vocabulary, detect_scenes, program_accuracy, scene_objects, train_scene_vqa
    from mmbook.reasoning.recipe import VQA_DEFAULTS, vqa_data

    started = time.perf_counter()
    detector_run, _ = TASKS["scene-detection"].train(Settings(quick=quick, seed=seed, progress=False))
    detector_seconds = time.perf_counter() - started
    settings = VQA_DEFAULTS["scenes"][quick]
    questions, tensors, _ = vqa_data("scenes", "test", settings["test_scenes"], settings["per_scene"], seed, quick)
    vocabulary = answer_vocabulary("scenes")
    results = {f"programs, detections >= {t}": program_accuracy(questions, detect_scenes(
        detector_run.model, tensors["image"], score_threshold=t), vocabulary) for t in THRESHOLDS}
    results["programs, ground truth"] = program_accuracy(questions, scene_objects(_test_scenes(seed, quick)), vocabulary)
    blind = train_scene_vqa("question", "scenes", seed=seed, quick=quick, progress=False)
    results["question only"] = {key: value for key, value in blind.items() if isinstance(value, float)
                                and key not in ("train_seconds", "lr")}
    results["detector"] = {"map50": detector_run.metrics["map50"], "train_seconds": detector_seconds}
    return results


def _test_scenes(seed: int, quick: bool):
    """The VQA test scenes of ``seed`` (the scenes :func:`~mmbook.reasoning.recipe.vqa_data` asks about)."""
    from mmbook.data.scenes import load_scenes
    from mmbook.reasoning.recipe import VQA_DEFAULTS

    return load_scenes("test", VQA_DEFAULTS["scenes"][quick]["test_scenes"], seed=seed, quick=quick)


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_arguments(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    from mmbook.results import compare, format_mean_std

    runs = []
    for seed in range(args.seeds):
        results = run(seed, args.quick)
        runs.append(results)
        detector = results["detector"]
        print(f"seed {seed}: detector mAP@0.5 {detector['map50']:.3f} after {detector['train_seconds']:.0f} s")
        for name, figures in results.items():
            if name != "detector":
                unrunnable = f"  unrunnable {figures['unrunnable']:.3f}" if "unrunnable" in figures else ""
                print(f"  {name:<28}" + "".join(f"  {f} {figures[f]:.3f}" for f in FIGURES) + unrunnable, flush=True)
    names = [name for name in runs[0] if name != "detector"]
    print(f"\nmean ± std over {args.seeds} seeds:")
    for name in names:
        print(f"{name:<30}" + "".join(f"  {f} {format_mean_std([r[name][f] for r in runs])}" for f in FIGURES))
    for name in names:
        if "unrunnable" in runs[0][name]:
            print(f"{name:<30}  programs that cannot run on the scene {format_mean_std([r[name]['unrunnable'] for r in runs])}")
    families = [key for key in runs[0]["question only"] if key not in FIGURES]
    print("\nper family (programs on detections >= 0.5 / question only):")
    for family in families:
        print(f"  {family:<15} {format_mean_std([r[f'programs, detections >= {THRESHOLD}'][family] for r in runs])}"
              f" / {format_mean_std([r['question only'][family] for r in runs])}")
    verdicts = {}
    if args.seeds >= 2:
        for figure in FIGURES:
            verdicts[figure] = compare([r[f"programs, detections >= {THRESHOLD}"][figure] for r in runs],
                                       [r["question only"][figure] for r in runs],
                                       (f"programs on detected scenes ({figure.replace('_', '-')})", "the question alone"),
                                       paired=True).sentence
            print(verdicts[figure])
    write_results(args.json, runs=runs, verdicts=verdicts, threshold=THRESHOLD, seeds=args.seeds, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
