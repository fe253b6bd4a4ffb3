"""Add starter and checker cells to an exercise of a book notebook.

Usage::

    python -m mmbook.course.authoring SPEC.json

``SPEC.json`` maps a notebook path to its exercises, each with any of::

    {"book/ch03_cnn/01_convolution.ipynb": {
        "ex-cnn-conv2d": {
            "starter": "def my_conv2d(images, weight, bias, stride, padding):\\n    ...  # your code here",
            "checker": "from mmbook.exercises import check\\n\\ncheck(\\"ex-cnn-conv2d\\", my_conv2d)",
            "solution_append": "lines added at the end of the solution's last code cell"}}}

The starter cell (tags ``starter``, ``remove-cell``; id ``starter-<label>``) goes right before
the exercise's ``{solution-start}`` cell, the checker cell (tag ``checker``; id
``checker-<label>``) right after its ``{solution-end}`` cell (see :mod:`mmbook.course.markup`).
Running it again replaces those cells instead of adding more; ``solution_append`` is added
only once. Afterwards run ``scripts/record_expected_outputs.py`` on each notebook changed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from mmbook.course.markup import CHECKER_TAG, STARTER_TAG, MarkupError, cell_source, checker_label


def _find(cells: list[Any], pattern: str, start: int = 0) -> int:
    for index in range(start, len(cells)):
        if cells[index]["cell_type"] == "markdown" and re.search(pattern, cell_source(cells[index]), re.MULTILINE):
            return index
    return -1


def _code_cell(cell_id: str, source: str, tags: list[str]) -> dict:
    return {"cell_type": "code", "execution_count": None, "id": cell_id, "metadata": {"tags": tags},
            "outputs": [], "source": source}


def insert_exercise_cells(notebook: dict, label: str, starter: str | None = None, checker: str | None = None,
                          solution_append: str | None = None, where: str = "notebook") -> None:
    """Add (or replace) the starter and checker cells of exercise ``label`` in ``notebook``, in place.

    Raises:
        MarkupError: the exercise has no gated solution, the solution starts in the exercise's own
            cell, or the checker does not call ``check("<label>", ...)``.
    """
    cells = notebook["cells"]
    for cell_id in (f"starter-{label}", f"checker-{label}"):  # replace rather than add again
        cells[:] = [c for c in cells if c.get("id") != cell_id]
    start = _find(cells, rf"^[ \t]*(`{{3,}}|:{{3,}})\{{solution-start\}}[ \t]+{re.escape(label)}[ \t]*$")
    if start < 0:
        raise MarkupError(f"{where}: no {{solution-start}} {label}")
    if re.search(r"\{exercise(-start)?\}", cell_source(cells[start])):
        raise MarkupError(f"{where}: the solution of {label} starts in the exercise's cell; "
                          "put {solution-start} in a cell of its own first")
    end = _find(cells, r"^[ \t]*(`{3,}|:{3,})\{solution-end\}", start)
    if end < 0:
        raise MarkupError(f"{where}: the solution of {label} has no {{solution-end}}")
    if solution_append:
        code = [i for i in range(start + 1, end) if cells[i]["cell_type"] == "code"]
        if code:
            target = cells[code[-1]]
            if solution_append.strip() not in cell_source(target):
                target["source"] = cell_source(target).rstrip("\n") + "\n" + solution_append.rstrip("\n")
        else:
            cells.insert(end, _code_cell(f"solution-{label}", solution_append.rstrip("\n"), []))
            end += 1
    if checker is not None:
        cell = _code_cell(f"checker-{label}", checker.rstrip("\n"), [CHECKER_TAG])
        if checker_label(cell) != label:
            raise MarkupError(f"{where}: the checker of {label} must call check(\"{label}\", ...)")
        cells.insert(end + 1, cell)
    if starter is not None:
        cells.insert(start, _code_cell(f"starter-{label}", starter.rstrip("\n"), [STARTER_TAG, "remove-cell"]))


def apply_spec(spec: dict[str, dict[str, dict[str, str]]], root: Path = Path(".")) -> list[Path]:
    """Apply a spec (notebook path -> label -> cells) and write the notebooks; returns those written."""
    import nbformat

    written = []
    for relative, exercises in spec.items():
        path = Path(root) / relative
        notebook = json.loads(path.read_text(encoding="utf-8"))
        for label, cells in exercises.items():
            unknown = set(cells) - {"starter", "checker", "solution_append"}
            if unknown:
                raise ValueError(f"{relative} {label}: unknown keys {sorted(unknown)}")
            insert_exercise_cells(notebook, label, where=relative, **cells)
        nbformat.write(nbformat.from_dict(notebook), path)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmbook.course.authoring",
                                     description="Add starter and checker cells to exercises of book notebooks.")
    parser.add_argument("spec", type=Path, help="JSON: notebook path -> exercise label -> starter/checker/solution_append")
    parser.add_argument("--root", type=Path, default=Path("."), help="where the spec's paths start (default .)")
    args = parser.parse_args(argv)
    try:
        written = apply_spec(json.loads(args.spec.read_text(encoding="utf-8")), args.root)
    except (OSError, ValueError, MarkupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(f"{path}: updated; now run scripts/record_expected_outputs.py {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
