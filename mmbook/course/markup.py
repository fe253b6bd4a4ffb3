"""Read the exercise markup of a book notebook.

The conventions (README, "Rules of the house"):

- An exercise is a sphinx-exercise directive in a markdown cell, ```` ```{exercise} Title ````
  with a ``:label: ex-...`` option (``{exercise-start}`` … ``{exercise-end}`` counts too).
- Its solution is gated: a markdown cell ```` ```{solution-start} ex-... ```` , then any
  markdown and code cells, then ```` ```{solution-end} ````. A plain ```` ```{solution} ````
  directive counts as a solution too.
- Every cell *between* a solution's two marker cells is **folded** in JupyterLab
  (``metadata.jupyter.source_hidden``; :func:`fold_solutions`), so that a reader of the
  instructor's notebook sees the "Solution" dropdown that jupyterlab-myst draws for
  ``{solution-start}`` and a collapsed bar for each cell of the solution. The book's HTML
  ignores this metadata (it folds solutions with the dropdown class).
- A **concept question** of a "Check your understanding" section is an ``{exercise}`` whose
  label starts with ``cu-`` (:data:`CONCEPT_PREFIX`), with ``:nonumber:``; its answer is gated
  like a solution, so the student edition removes it. Concept questions are not exercises:
  :func:`exercises` leaves them out, :func:`concept_questions` lists them.
- A **starter** cell is a code cell tagged ``starter`` (and ``remove-cell``, so the
  instructor's HTML book does not show it), placed after the exercise and *before*
  ``{solution-start}``. It holds a scaffold with ``...`` where the student writes, and
  must run without error (it only defines names; a bare ``...`` in a function body is fine).
- A **checker** cell is a code cell tagged ``checker``, placed *after* ``{solution-end}``,
  that calls ``check("ex-...", answer, ...)`` from :mod:`mmbook.exercises`. In the
  instructor's notebook it checks the solution (so the notebook tests prove the solution passes);
  in the student's it checks the student's answer, and ``mmbook grade`` reads its output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

STARTER_TAG = "starter"
#: Label prefix of a "Check your understanding" question.
CONCEPT_PREFIX = "cu-"
CHECKER_TAG = "checker"
#: The tag of the cell the student edition adds for the answer to an exercise that is graded by hand.
ANSWER_TAG = "answer"
#: Tags a starter cell carries in the source that the student edition drops.
STARTER_SOURCE_TAGS = (STARTER_TAG, "remove-cell", "remove-input", "hide-input", "hide-cell")

_FENCE = re.compile(r"^[ \t]*(?P<fence>`{3,}|:{3,})\{(?P<name>[\w-]+)\}(?P<rest>.*)$")
_LABEL = re.compile(r"^[ \t]*:label:[ \t]*(?P<label>\S+)")
_CHECK_CALL = re.compile(r"""\bcheck\(\s*["'](?P<label>[^"']+)["']""")
_SOLUTION_DIRECTIVES = {"solution", "solution-start", "solution-end"}
_EXERCISE_DIRECTIVES = {"exercise", "exercise-start"}


class MarkupError(ValueError):
    """The exercise markup of a notebook is broken (says where and what to fix)."""


@dataclass(frozen=True)
class Exercise:
    """One exercise directive: its label (``None`` if it has none), title and markdown cell index."""

    label: str | None
    title: str
    cell: int


def cell_source(cell: Any) -> str:
    """A cell's source as one string (notebooks store it as a string or a list of lines)."""
    source = cell["source"]
    return "".join(source) if isinstance(source, list) else source


def cell_tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _closing_fence(lines: list[str], start: int, fence: str) -> int:
    """Index of the line that closes the directive opened at ``lines[start]`` (or -1)."""
    char, length = fence[0], len(fence)
    for index in range(start + 1, len(lines)):
        stripped = lines[index].strip()
        if stripped and set(stripped) == {char} and len(stripped) >= length:
            return index
    return -1


def exercises(notebook: Any) -> list[Exercise]:
    """The exercise directives of ``notebook`` in order (solutions and concept questions are not exercises)."""
    return [found for found in _exercise_directives(notebook) if not is_concept_question(found)]


def concept_questions(notebook: Any) -> list[Exercise]:
    """The "Check your understanding" questions of ``notebook`` in order (labels ``cu-...``)."""
    return [found for found in _exercise_directives(notebook) if is_concept_question(found)]


def is_concept_question(exercise: Exercise) -> bool:
    return exercise.label is not None and exercise.label.startswith(CONCEPT_PREFIX)


def _exercise_directives(notebook: Any) -> list[Exercise]:
    found = []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        lines = cell_source(cell).split("\n")
        for number, line in enumerate(lines):
            match = _FENCE.match(line)
            if not match or match["name"] not in _EXERCISE_DIRECTIVES:
                continue
            label = None
            for option in lines[number + 1:]:
                if not option.strip().startswith(":"):
                    break
                if label_match := _LABEL.match(option):
                    label = label_match["label"]
            found.append(Exercise(label, match["rest"].strip(), index))
    return found


def split_at_exercises(text: str) -> list[tuple[str | None, str]]:
    """A markdown cell's ``text`` cut before each exercise directive: ``(label, text)`` pieces, the
    first with label ``None`` when text comes before the first exercise (empty pieces are left out)."""
    lines = text.split("\n")
    starts = [number for number, line in enumerate(lines)
              if (match := _FENCE.match(line)) and match["name"] in _EXERCISE_DIRECTIVES]
    pieces = []
    for start, end in zip([0] + starts, starts + [len(lines)]):
        piece = "\n".join(lines[start:end]).strip("\n")
        if piece:
            found = _exercise_directives({"cells": [{"cell_type": "markdown", "source": piece}]})
            pieces.append((found[0].label if found and start in starts else None, piece))
    return pieces


def checker_label(cell: Any) -> str | None:
    """The exercise label a ``checker`` cell checks (the first argument of its ``check(...)`` call)."""
    match = _CHECK_CALL.search(cell_source(cell))
    return match["label"] if match else None


def checker_cells(notebook: Any, where: str = "notebook") -> list[tuple[int, str]]:
    """``(cell index, label)`` of every cell tagged ``checker``.

    Raises:
        MarkupError: a checker cell without a ``check("ex-...", ...)`` call.
    """
    result = []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "code" and CHECKER_TAG in cell_tags(cell):
            label = checker_label(cell)
            if label is None:
                raise MarkupError(f"{where}: cell {index} is tagged 'checker' but has no check(\"ex-...\", ...) call")
            result.append((index, label))
    return result


@dataclass
class Stripped:
    """A notebook's cells with the solutions cut out, the text that was cut, and the indices of the
    cells that lay wholly inside a gated solution (between its two marker cells)."""

    cells: list[Any]
    removed: list[str]
    inside: list[int]


def strip_solutions(cells: list[Any], where: str = "notebook") -> Stripped:
    """Remove every gated solution span (markdown and code) and every ``{solution}`` directive.

    Markdown cells that hold a marker are cut at the marker lines, so text outside the
    span in the same cell stays; a cell left empty is dropped. ``cells`` is not modified.

    Raises:
        MarkupError: a span that is never closed, an end without a start, a nested start,
            or a ``starter`` cell inside a solution.
    """
    kept: list[Any] = []
    removed: list[str] = []
    inside: list[int] = []
    in_span = False
    for index, cell in enumerate(cells):
        text = cell_source(cell)
        if cell["cell_type"] != "markdown":
            if in_span:
                if STARTER_TAG in cell_tags(cell):
                    raise MarkupError(f"{where}: cell {index} is tagged 'starter' but lies inside a solution; "
                                      "put starter cells before {solution-start}")
                removed.append(text)
                inside.append(index)
            else:
                kept.append(cell)
            continue
        lines = text.split("\n")
        out: list[str] = []
        cut: list[str] = []
        touched = False
        number = 0
        while number < len(lines):
            match = _FENCE.match(lines[number])
            if match and match["name"] in _SOLUTION_DIRECTIVES:
                touched = True
                close = _closing_fence(lines, number, match["fence"])
                if close < 0:
                    raise MarkupError(f"{where}: cell {index}: the {{{match['name']}}} directive is not closed "
                                      f"(no closing {match['fence']})")
                name = match["name"]
                if name == "solution-start":
                    if in_span:
                        raise MarkupError(f"{where}: cell {index}: {{solution-start}} inside another solution; "
                                          "close the first with {solution-end}")
                    in_span = True
                elif name == "solution-end":
                    if not in_span:
                        raise MarkupError(f"{where}: cell {index}: {{solution-end}} without a {{solution-start}}")
                    in_span = False
                removed.append("\n".join(lines[number:close + 1]))
                number = close + 1
                continue
            (cut if in_span else out).append(lines[number])
            number += 1
        if cut:
            removed.append("\n".join(cut))
        if not touched and in_span:
            inside.append(index)
        if not touched and not in_span:
            kept.append(cell)
        elif "\n".join(out).strip():
            new_cell = dict(cell)
            new_cell["source"] = "\n".join(out).strip("\n")
            kept.append(new_cell)
    if in_span:
        raise MarkupError(f"{where}: a {{solution-start}} is never closed by {{solution-end}}")
    return Stripped(kept, removed, inside)


def solution_texts(notebook: Any, where: str = "notebook") -> list[str]:
    """The text of every solution in ``notebook`` (what the student edition must not contain)."""
    return strip_solutions(notebook["cells"], where).removed


def directive_body(text: str, label: str) -> str:
    """The body of the ``{exercise}`` directive labelled ``label`` in a markdown cell's ``text``
    (without its fences and options), or ``""``."""
    lines = text.split("\n")
    for number, line in enumerate(lines):
        match = _FENCE.match(line)
        if not match or match["name"] not in _EXERCISE_DIRECTIVES:
            continue
        close = _closing_fence(lines, number, match["fence"]) if match["name"] == "exercise" else len(lines)
        body = lines[number + 1:close if close >= 0 else len(lines)]
        options = [m["label"] for m in map(_LABEL.match, body) if m]
        if options[:1] == [label]:
            return "\n".join(line for line in body if not re.match(r"^[ \t]*:[\w-]+:", line)).strip()
    return ""


def inline_solution(text: str, label: str) -> str:
    """The text between ``{solution-start} label`` and ``{solution-end}`` in one markdown cell, or ``""``."""
    lines = text.split("\n")
    for number, line in enumerate(lines):
        match = _FENCE.match(line)
        if match and match["name"] == "solution-start" and match["rest"].strip() == label:
            start = _closing_fence(lines, number, match["fence"]) + 1
            for end in range(start, len(lines)):
                closing = _FENCE.match(lines[end])
                if closing and closing["name"] == "solution-end":
                    return "\n".join(lines[start:end]).strip()
    return ""


_SOLUTION_START_LABEL = re.compile(r"\{solution-start\}\s+(?P<label>[\w-]+)")


def solutions_by_label(notebook: Any, where: str = "notebook") -> dict[str, list[Any]]:
    """The cells of each gated solution (those between its two marker cells), by the label it answers.

    Raises:
        MarkupError: as :func:`strip_solutions`.
    """
    inside = set(solution_span_cells(notebook["cells"], where))
    found: dict[str, list[Any]] = {}
    label = None
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "markdown" and (match := _SOLUTION_START_LABEL.search(cell_source(cell))):
            label = match["label"]
            found.setdefault(label, [])
        elif index in inside and label is not None:
            found[label].append(cell)
    return found


def solution_span_cells(cells: list[Any], where: str = "notebook") -> list[int]:
    """Indices of the cells strictly between a ``{solution-start}`` cell and its ``{solution-end}`` cell.

    Raises:
        MarkupError: as :func:`strip_solutions`.
    """
    return strip_solutions(cells, where).inside


#: The first line of every cell inside a gated solution. JupyterLab shows a folded cell's first
#: line, so it must say nothing of the answer; ``%`` starts a MyST comment, which the book does not show.
FOLDED_FIRST_LINE = {"code": "# Solution", "markdown": "% Solution"}


def unfolded_source(cell: Any) -> str:
    """A solution cell's source without its :data:`FOLDED_FIRST_LINE` (the answer key and the otter export show the rest)."""
    text = cell_source(cell)
    first, _, rest = text.partition("\n")
    return rest if first.strip() == FOLDED_FIRST_LINE.get(cell["cell_type"]) else text


def fold_solutions(notebook: Any, where: str = "notebook") -> int:
    """Fold (``metadata.jupyter.source_hidden``) every cell inside a gated solution, and start each with
    :data:`FOLDED_FIRST_LINE`, what JupyterLab shows of a folded cell; returns how many cells changed."""
    changed = 0
    for index in solution_span_cells(notebook["cells"], where):
        cell = notebook["cells"][index]
        jupyter = cell.setdefault("metadata", {}).setdefault("jupyter", {})
        first = FOLDED_FIRST_LINE.get(cell["cell_type"])
        text = cell_source(cell)
        touched = False
        if jupyter.get("source_hidden") is not True:
            jupyter["source_hidden"] = True
            touched = True
        if first is not None and text.split("\n", 1)[0].rstrip() != first:
            cell["source"] = f"{first}\n{text}"
            touched = True
        changed += touched
    return changed
