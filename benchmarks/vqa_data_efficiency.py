"""Accuracy against the number of training scenes: programs on parsed scenes against end-to-end VQA models.

    python benchmarks/vqa_data_efficiency.py            # full mode: 250, 500, 1,000 and 2,000 scenes, seed 0
    python benchmarks/vqa_data_efficiency.py --seeds 2  # and seed 1
    python benchmarks/vqa_data_efficiency.py --quick    # quick mode (a smoke test of the script)

On Sort-of-CLEVR scenes (no compositional condition), for each number of training scenes:

- **programs on parsed scenes** (NS-VQA in miniature, :mod:`mmbook.reasoning.symbolic`): a
  :class:`~mmbook.reasoning.ShapeSceneParser` trained on the scenes' tables (each object's colour, shape and
  centre; no questions), then every test question's program run on the parsed test scenes;
- **CNN + concatenation** and **FiLM**, trained end to end on the same scenes' 10 questions each
  (:func:`~mmbook.reasoning.train_scene_vqa`).

Every run takes as many optimiser steps as the largest size does in its epochs (fewer scenes, more epochs), so
the sizes differ in data, not in training. The two kinds of model are supervised differently: the parser reads a
full table of every training scene, the end-to-end models ten answers per scene. All of them answer the same test
questions on the same test scenes (the seed's :func:`~mmbook.reasoning.recipe.vqa_data`).
"""

from __future__ import annotations

import sys
import time

from cli_runs import benchmark_arguments, write_results

SIZES = {False: (250, 500, 1000, 2000), True: (50, 100)}
#: (scenes, epochs) whose number of steps every run of a mode takes, the test scenes, questions per scene.
SETTINGS = {False: {"steps_of": (2000, 8), "test_scenes": 1000, "per_scene": 10},
            True: {"steps_of": (100, 2), "test_scenes": 50, "per_scene": 10}}
MODELS = ("programs on parsed scenes", "concat", "film")


def run(scenes: int, seed: int, quick: bool) -> dict[str, dict]:
    """Accuracy (overall, relational, non-relational) of each of :data:`MODELS` after training on ``scenes``."""
    from mmbook.data.shapes import make_shape_scenes
    from mmbook.reasoning import answer_vocabulary, parse_scenes, program_accuracy, train_scene_parser
    from mmbook.reasoning import train_scene_vqa
    from mmbook.reasoning.recipe import vqa_data

    settings = SETTINGS[quick]
    largest, largest_epochs = settings["steps_of"]
    epochs = max(1, round(largest_epochs * largest / scenes))
    results = {}
    started = time.perf_counter()
    parser, _ = train_scene_parser(make_shape_scenes(scenes, seed=seed), epochs=epochs, seed=seed, progress=False)
    questions, tensors, _ = vqa_data("shapes", "test", settings["test_scenes"], settings["per_scene"], seed)
    report = program_accuracy(questions, parse_scenes(parser, tensors["image"]), answer_vocabulary("shapes"))
    results[MODELS[0]] = {**report, "seconds": time.perf_counter() - started}
    for model in MODELS[1:]:
        report = train_scene_vqa(model, "shapes", seed=seed, quick=quick, scenes=scenes,
                                 test_scenes=settings["test_scenes"], per_scene=settings["per_scene"], epochs=epochs,
                                 progress=False)
        results[model] = {key: report[key] for key in ("overall", "relational", "non_relational")}
        results[model]["seconds"] = report["train_seconds"]
    for figures in results.values():
        figures["epochs"] = epochs
    return results


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_arguments(__doc__.splitlines()[0], seeds=1)
    args = parser.parse_args(argv)
    rows = []
    print(f"{'scenes':>7}{'seed':>5}{'epochs':>7}  {'model':<26}{'overall':>9}{'relational':>11}{'non-rel.':>9}{'s':>7}",
          flush=True)
    for seed in range(args.seeds):
        for scenes in SIZES[args.quick]:
            for model, figures in run(scenes, seed, args.quick).items():
                rows.append({"scenes": scenes, "seed": seed, "model": model, **figures})
                print(f"{scenes:>7}{seed:>5}{figures['epochs']:>7}  {model:<26}{figures['overall']:>9.3f}"
                      f"{figures['relational']:>11.3f}{figures['non_relational']:>9.3f}{figures['seconds']:>7.0f}",
                      flush=True)
    write_results(args.json, rows=rows, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
