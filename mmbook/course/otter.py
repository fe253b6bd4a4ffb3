"""The book's exercises as otter-grader assignments: ``python -m mmbook.course.otter`` (``make instructor`` runs it).

`otter-grader <https://otter-grader.readthedocs.io>`_ 7 turns a *master notebook* into a
student notebook, a solutions notebook and an autograder zip for Gradescope or for its own
``otter grade`` / ``otter run``. This module writes one master notebook per book notebook:

- every exercise becomes an otter question named by its label (``ex-cnn-conv2d``), with the
  points of ``--points`` (default 1). Its prompt is the exercise's text and its starter
  cells; the book's solution cells become the question's solution (code wrapped in
  ``# BEGIN SOLUTION NO PROMPT`` … ``# END SOLUTION``, so the student notebook keeps only the
  starter);
- an autograded exercise gets two tests in otter's exception-based format: a public test
  worth 0 points, the *formative* check the student's notebook already runs (its messages say
  what kind of mistake was made, never the answer), and a hidden test worth the question's
  points, the *graded* check of the instructor's ``graded_checks.py`` (see
  :mod:`mmbook.course.judge`), run in a fresh Python process so that what the notebook did to
  its own process cannot change the verdict. ``graded_checks.py`` goes to the autograder only
  (otter's ``autograder_files``), never to students;
- an exercise graded by hand becomes a manual question: its solution is the book's answer,
  and the student notebook gets otter's answer cell instead;
- concept questions keep their question and lose their folded answer, as in the student
  edition; every other cell stays as it is.

Each master notebook sits in its own folder with ``graded_checks.py`` and a
``requirements.txt`` that installs ``mmbook``; ``otter assign <master>.ipynb dist`` there
makes the assignment. The tests call :func:`formative_test` and :func:`graded_test`, which
therefore must be importable where otter grades (the requirements see to it).
"""

from __future__ import annotations

import argparse
import copy
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

#: Where the grading environment installs mmbook from (the Colab cell of every notebook uses the same).
REQUIREMENT = "mmbook @ git+https://github.com/mmbook/mmbook@main"
#: Seconds a graded check may take in its own process.
GRADED_TIMEOUT = 300
_STARTER_MARK = "mmbook-otter-starter"


# --- the tests' side (runs where otter grades) --------------------------------------------------

def _answers(env: dict, checker_source: str, label: str) -> tuple[tuple, dict]:
    """The answers the checker cell of ``label`` passes to ``check``, evaluated in the notebook's globals ``env``."""
    from mmbook.course.judge import check_call_arguments

    positional, keywords = check_call_arguments(checker_source, label)
    return (tuple(eval(expression, env) for expression in positional),  # noqa: S307 - the book's own cell
            {key: eval(expression, env) for key, expression in keywords})  # noqa: S307


def formative_test(env: dict, label: str, checker_source: str) -> None:
    """The public test of ``label``: the formative check, as the student's checker cell runs it.

    Raises:
        AssertionError: the check failed; the message says what kind of mistake was made.
    """
    from mmbook import exercises

    positional, keywords = _answers(env, checker_source, label)
    try:
        exercises.check(label, *positional, **keywords)
    except exercises.ExerciseNotDone as error:
        raise AssertionError(str(error)) from None


def graded_test(env: dict, label: str, checker_source: str, checks: str | Path = "graded_checks.py") -> None:
    """The hidden test of ``label``: the graded check of ``checks``, in a fresh Python process.

    The answers are saved with ``cloudpickle`` (a function defined in the notebook travels by
    value) and judged by ``python -m mmbook.course.judge``, as ``mmbook grade`` does.

    Raises:
        AssertionError: the graded check failed, or gave no verdict; the message says why.
        FileNotFoundError: ``checks`` is missing (the autograder was made without it).
    """
    import cloudpickle

    from mmbook.course.grade import json_line, last_error

    checks = Path(checks).resolve()
    if not checks.is_file():
        raise FileNotFoundError(f"the graded checks {checks} are missing; the assignment's autograder_files must "
                                "list graded_checks.py (python -m mmbook.course.otter writes it beside the master notebook)")
    positional, keywords = _answers(env, checker_source, label)
    with tempfile.TemporaryDirectory(prefix="mmbook-otter-") as folder:
        answer_file = Path(folder) / f"{label}.pkl"
        try:
            answer_file.write_bytes(cloudpickle.dumps((positional, keywords)))
        except (pickle.PicklingError, TypeError, AttributeError) as error:
            raise AssertionError(f"{label}: the answer could not be saved for grading ({type(error).__name__}: {error})"
                                 ) from None
        try:
            result = subprocess.run([sys.executable, "-m", "mmbook.course.judge", label, str(answer_file),
                                     "--checks", str(checks)], capture_output=True, text=True, timeout=GRADED_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{label}: the graded check ran past its time limit of {GRADED_TIMEOUT} s") from None
    try:
        verdict = json_line(result)
    except (IndexError, ValueError):
        raise AssertionError(f"{label}: the graded check gave no verdict (exit status {result.returncode}: "
                             f"{last_error(result)})") from None
    if verdict.get("status") != "pass":
        raise AssertionError(f"{label}: {verdict.get('detail') or verdict.get('status')}")


# --- the master notebooks -------------------------------------------------------------------------

def _cell(cell_type: str, source: str, **metadata: Any) -> dict:
    cell = {"cell_type": cell_type, "metadata": dict(metadata), "source": source}
    if cell_type == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def _raw(source: str) -> dict:
    return _cell("raw", source)


def _clean(cell: dict) -> dict:
    """A copy of a book cell for the master notebook: no outputs, no book-only metadata."""
    cell = copy.deepcopy(cell)
    cell.pop("id", None)
    metadata = cell.get("metadata", {})
    for key in ("mmbook", "execution", "jupyter", "collapsed", _STARTER_MARK):
        metadata.pop(key, None)
    if cell["cell_type"] == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def _test_cell(kind: str, label: str, checker_source: str, points: float, hidden: bool) -> dict:
    function = f"test_{kind}_{re.sub(r'[^0-9A-Za-z]', '_', label)}"
    call = "graded_test" if hidden else "formative_test"
    config = f"hidden: {'true' if hidden else 'false'}\npoints: {points:g}"
    return _cell("code", f'""" # BEGIN TEST CONFIG\n{config}\n""" # END TEST CONFIG\n'
                         f"def {function}(env):\n"
                         f"    from mmbook.course.otter import {call}\n\n"
                         f"    {call}(env, {label!r}, {checker_source!r})\n\n"
                         f"{function}(globals())")


def assignment_config(name: str, manual: bool) -> dict:
    """The ``# ASSIGNMENT CONFIG`` cell of a master notebook."""
    lines = ["# ASSIGNMENT CONFIG", f"name: {name}", "requirements: requirements.txt",
             "autograder_files:", "  - graded_checks.py", "tests:", "  files: false", "  ok_format: false",
             "export_cell:", f"  pdf: {'true' if manual else 'false'}", "generate:",
             f"  pdf: {'true' if manual else 'false'}", "  filtering: true", "run_tests: true"]
    return _raw("\n".join(lines))


def master_notebook(notebook: dict, source: str, points: dict[str, float] | None = None) -> dict:
    """The otter-grader master notebook of one book notebook.

    Args:
        notebook: the book's notebook (nbformat 4 as a dict, sources as strings); not modified.
        source: its path relative to the book folder, e.g. ``ch03_cnn/01_convolution.ipynb``.
        points: points per exercise label; those left out count 1.

    Raises:
        MarkupError: broken exercise markup (as for the student edition).
    """
    from mmbook.course.markup import (ANSWER_TAG, CHECKER_TAG, STARTER_TAG, cell_source, cell_tags, checker_label,
                                      exercises, inline_solution, solutions_by_label, split_at_exercises)
    from mmbook.course.student import student_notebook

    points = points or {}
    marked = copy.deepcopy(notebook)
    for cell in marked["cells"]:
        if cell["cell_type"] == "code" and STARTER_TAG in cell_tags(cell):
            cell.setdefault("metadata", {})[_STARTER_MARK] = True
    edition, _ = student_notebook(marked, source)
    autograded = set(edition["metadata"]["mmbook"]["autograded"])
    solutions = solutions_by_label(notebook, source)
    found = exercises(notebook)
    labels = {exercise.label for exercise in found}
    inline = {e.label: inline_solution(cell_source(notebook["cells"][e.cell]), e.label) for e in found}
    checkers = {checker_label(c): cell_source(c) for c in edition["cells"] if CHECKER_TAG in cell_tags(c)}

    name = source.removesuffix(".ipynb").replace("/", "-")
    cells = [assignment_config(name, manual=bool(labels - autograded))]
    edition_cells = edition["cells"]
    index = 0
    while index < len(edition_cells):
        cell = edition_cells[index]
        index += 1
        if cell["cell_type"] == "code" and CHECKER_TAG in cell_tags(cell):
            continue  # its exercise's tests stand for it (otter adds its own check cell)
        if cell["cell_type"] == "markdown" and ANSWER_TAG in cell_tags(cell):
            continue  # otter writes its own answer cell for a manual question
        pieces = split_at_exercises(cell_source(cell)) if cell["cell_type"] == "markdown" else [(None, "")]
        if all(label not in labels for label, _ in pieces):  # no exercise (concept questions stay as they are)
            cells.append(_clean(cell))
            continue
        for number, (label, text) in enumerate(pieces):
            last = number == len(pieces) - 1
            if label not in labels:
                cells.append(dict(_clean(cell), source=text))
                continue
            cells += _question(label, dict(cell, source=text), edition_cells[index:] if last else [],
                               label not in autograded, points.get(label, 1.0), inline.get(label, ""),
                               solutions.get(label, []), checkers.get(label))
            if last:
                while index < len(edition_cells) and edition_cells[index].get("metadata", {}).get(_STARTER_MARK):
                    index += 1
    metadata = {key: copy.deepcopy(value) for key, value in notebook.get("metadata", {}).items()
                if key in {"kernelspec", "language_info"}}
    return {"cells": cells, "metadata": metadata, "nbformat": 4, "nbformat_minor": 4}


def _question(label: str, prompt: dict, following: list[dict], manual: bool, points: float, inline: str,
              solutions: list[dict], checker: str | None) -> list[dict]:
    """The cells of one otter question: its prompt (``prompt`` and the starter cells at the head of
    ``following``), its solution block and, when autograded, its tests."""
    from mmbook.course.markup import unfolded_source

    cells = [_raw(f"# BEGIN QUESTION\nname: {label}\npoints: {points:g}" + ("\nmanual: true" if manual else "")),
             _clean(prompt)]
    for cell in following:
        if not cell.get("metadata", {}).get(_STARTER_MARK):
            break
        cells.append(_clean(cell))
    answer = ([_cell("markdown", inline)] if inline else []) + solutions
    if not answer:
        answer = [_cell("markdown", "The book gives no reference answer to this exercise.")]
    cells.append(_raw("# BEGIN SOLUTION"))
    for solution in answer:
        text = unfolded_source(solution).strip("\n")
        if solution["cell_type"] == "code":
            text = f"# BEGIN SOLUTION NO PROMPT\n{text}\n# END SOLUTION"
        cleaned = _clean(solution)
        cleaned["metadata"].pop("tags", None)  # the book's display and nbval tags mean nothing to otter
        cells.append(dict(cleaned, source=text))
    cells.append(_raw("# END SOLUTION"))
    if not manual:
        if checker is None:
            raise ValueError(f"{label} is autograded but has no checker cell")
        cells += [_raw("# BEGIN TESTS"),
                  _test_cell("formative", label, checker, 0, hidden=False),
                  _test_cell("graded", label, checker, points, hidden=True),
                  _raw("# END TESTS")]
    return cells + [_raw("# END QUESTION")]


def export(book: Path, out: Path, checks: Path, points: dict[str, float] | None = None,
           notebooks: list[str] | None = None) -> list[Path]:
    """Write a master notebook per book notebook into ``out/<chapter>/<notebook>/<notebook>.ipynb``,
    each beside a copy of ``checks`` (as ``graded_checks.py``) and a ``requirements.txt``.

    Args:
        notebooks: only these (paths relative to ``book``); default all with exercises.

    Returns the master notebooks written.

    Raises:
        FileNotFoundError: no notebooks under ``book``, or ``checks`` is missing, or a named notebook is not in the book.
    """
    from mmbook.course.markup import exercises
    from mmbook.course.student import book_notebooks, dumps_notebook, read_notebook_json

    book, out, checks = Path(book), Path(out), Path(checks)
    if not checks.is_file():
        raise FileNotFoundError(f"no graded checks at {checks}; run `make instructor` and give "
                                "_build/instructor/graded_checks.py")
    sources = {path.relative_to(book).as_posix(): path for path in book_notebooks(book)} if book.is_dir() else {}
    if not sources:
        raise FileNotFoundError(f"no notebooks under {book}; give the book's folder, e.g. `book`")
    if notebooks:
        missing = [name for name in notebooks if name not in sources]
        if missing:
            raise FileNotFoundError(f"not notebooks of {book}: {', '.join(missing)} (give paths such as "
                                    "ch03_cnn/01_convolution.ipynb)")
        sources = {name: sources[name] for name in notebooks}
    written = []
    for relative, path in sources.items():
        notebook = read_notebook_json(path)
        if not exercises(notebook):
            continue
        folder = out / relative.removesuffix(".ipynb")
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / path.name
        target.write_text(dumps_notebook(master_notebook(notebook, relative, points)), encoding="utf-8")
        shutil.copyfile(checks, folder / "graded_checks.py")
        (folder / "requirements.txt").write_text(f"{REQUIREMENT}\ncloudpickle\n", encoding="utf-8")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    from mmbook.course.grade import GradeInputError, read_points
    from mmbook.course.markup import MarkupError, exercises
    from mmbook.course.student import book_notebooks, read_notebook_json

    parser = argparse.ArgumentParser(prog="python -m mmbook.course.otter",
                                     description="Write otter-grader master notebooks of the book's exercises.")
    parser.add_argument("book", type=Path, nargs="?", default=Path("book"))
    parser.add_argument("out", type=Path, nargs="?", default=Path("_build/instructor/otter"))
    parser.add_argument("--checks", type=Path, default=Path("_build/instructor/graded_checks.py"),
                        help="the instructor's graded checks (make instructor writes them)")
    parser.add_argument("--points", type=Path, metavar="FILE.json",
                        help='points per exercise, e.g. {"ex-cnn-conv2d": 2}; exercises it leaves out count 1')
    parser.add_argument("--notebook", action="append", dest="notebooks", metavar="CHAPTER/NOTEBOOK.ipynb",
                        help="export only this notebook (repeatable)")
    args = parser.parse_args(argv)
    try:
        labels = [e.label for path in book_notebooks(args.book) for e in exercises(read_notebook_json(path))]
        points = read_points(args.points, labels) if args.points else None
        written = export(args.book, args.out, args.checks, points, args.notebooks)
    except (FileNotFoundError, MarkupError, GradeInputError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} otter-grader master notebooks under {args.out}; in a notebook's folder run "
          "`otter assign <notebook>.ipynb dist`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
