"""Verify the otter-grader export offline with otter-grader itself (``make otter-check``).

Usage::

    python scripts/verify_otter_export.py OTTER_BIN [--only CHAPTER/NOTEBOOK.ipynb ...]

``OTTER_BIN`` is the ``otter`` command of a virtual environment that has otter-grader 7 and
mmbook installed (``make otter-check`` makes one in ``_build/otter-venv``, apart from the
project's own). For every master notebook ``python -m mmbook.course.otter`` wrote under
``_build/instructor/otter`` (``make instructor``):

1. ``otter assign`` must succeed. It runs the question's tests, public and hidden, on the
   solutions notebook, so every book solution passes its formative and its graded check
   there, and it checks that the student notebook it writes holds no hidden test.
2. For ``ch03_cnn/01_convolution``, ``otter run`` grades two sample submissions: the solutions
   (full marks expected) and a wrong one that calls ``F.conv2d`` where the exercise forbids
   it and gives a wrong receptive field (0 expected, with the forbidden routine named in the
   hidden test's output, while the public formative test of the conv2d exercise passes).

Quick mode (``MMBOOK_QUICK=1``) is set, as the notebooks run in full while otter assigns them.
Prints one line per notebook and a summary; exits 1 on the first failure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPORT = ROOT / "_build" / "instructor" / "otter"
SAMPLE = "ch03_cnn/01_convolution"
WRONG_CELLS = {
    "def my_conv2d": "import torch.nn.functional as F\n\n\ndef my_conv2d(images, weight, bias, stride, padding):\n"
                     "    return F.conv2d(images, weight, bias, stride=stride, padding=padding)\n",
    "fields = (...": "fields = (11, 40)\n",
}


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True)


def assign(otter: str, master: Path) -> float:
    dist = master.parent / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    started = time.perf_counter()
    result = run([otter, "assign", master.name, "dist"], master.parent)
    if result.returncode != 0:
        sys.exit(f"otter assign failed for {master.relative_to(EXPORT)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    student = (dist / "student" / master.name).read_text(encoding="utf-8")
    if "graded_test" in student or "graded_checks" in student:
        sys.exit(f"{master.relative_to(EXPORT)}: the student notebook holds a hidden test")
    return time.perf_counter() - started


def grade(otter: str, autograder: Path, submission: Path) -> dict:
    out = submission.parent
    result = run([otter, "run", "-a", str(autograder), "-o", str(out), str(submission)], out)
    if result.returncode != 0:
        sys.exit(f"otter run failed for {submission}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return json.loads((out / "results.json").read_text(encoding="utf-8"))


def scores(results: dict) -> dict[str, tuple[float, float]]:
    return {test["name"]: (test["score"], test["max_score"]) for test in results["tests"] if "max_score" in test}


def samples(otter: str, folder: Path) -> None:
    dist = folder / "dist"
    name = folder.name + ".ipynb"
    autograder = next((dist / "autograder").glob("*.zip"))
    correct = folder / "samples" / "correct"
    wrong = folder / "samples" / "wrong"
    for place in (correct, wrong):
        shutil.rmtree(place, ignore_errors=True)
        place.mkdir(parents=True)
    shutil.copyfile(dist / "autograder" / name, correct / name)
    notebook = json.loads((dist / "student" / name).read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        source = "".join(cell["source"])
        for start, replacement in WRONG_CELLS.items():
            if source.startswith(start):
                cell["source"] = replacement
    (wrong / name).write_text(json.dumps(notebook), encoding="utf-8")

    right = scores(grade(otter, autograder, correct / name))
    if not right or any(score != maximum for score, maximum in right.values()):
        sys.exit(f"the correct sample did not get full marks: {right}")
    results = grade(otter, autograder, wrong / name)
    wrong_scores = scores(results)
    if not wrong_scores or any(score != 0 for score, _ in wrong_scores.values()):
        sys.exit(f"the wrong sample did not score 0: {wrong_scores}")
    outputs = {test["name"]: test.get("output", "") for test in results["tests"]}
    hidden = outputs.get("ex-cnn-conv2d", "")
    if "forbids" not in hidden or "conv2d" not in hidden.split("forbids", 1)[1]:
        sys.exit(f"the hidden test of ex-cnn-conv2d does not name the forbidden routine:\n{outputs.get('ex-cnn-conv2d')}")
    print(f"otter run {SAMPLE}: correct sample {right}, wrong sample {wrong_scores}; "
          f"hidden conv2d test: {outputs['ex-cnn-conv2d'].strip().splitlines()[-1].strip()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("otter", help="the otter command of a virtual environment with otter-grader and mmbook")
    parser.add_argument("--only", action="append", help="only this notebook (CHAPTER/NOTEBOOK.ipynb; repeatable)")
    args = parser.parse_args()
    os.environ["MMBOOK_QUICK"] = "1"
    args.otter = os.path.abspath(args.otter)  # otter runs in each notebook's folder
    masters = sorted(EXPORT.glob("*/*/*.ipynb"))
    masters = [m for m in masters if m.parent.name + ".ipynb" == m.name]
    if args.only:
        masters = [m for m in masters if f"{m.parent.parent.name}/{m.name}" in args.only]
    if not masters:
        sys.exit(f"no master notebooks under {EXPORT}; run `make instructor` first")
    started = time.perf_counter()
    for master in masters:
        seconds = assign(args.otter, master)
        print(f"otter assign {master.parent.relative_to(EXPORT)}: ok in {seconds:.0f} s", flush=True)
    sample = EXPORT / SAMPLE
    if sample in [m.parent for m in masters]:
        samples(args.otter, sample)
    print(f"{len(masters)} master notebooks assigned by otter-grader in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
