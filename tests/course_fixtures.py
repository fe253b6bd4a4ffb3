"""A small synthetic chapter notebook with the course markup, for the student-build and grading tests.

It has one "Check your understanding" question (``cu-demo-sign``) and three exercises: two autograded (``ex-demo-square``: write a function;
``ex-demo-answer``: give a number) with starter and checker cells, and one open
question whose solution is one markdown cell holding both gate markers. Every piece
of solution text contains ``SOLUTION-``, so a leak is easy to find.
"""

from __future__ import annotations

import json
from pathlib import Path

INSTALL = ('# Colab only: install mmbook from the book\'s repository. Elsewhere this cell does nothing.\n'
           'import sys\n\nif "google.colab" in sys.modules:\n    import subprocess\n\n'
           '    subprocess.run([sys.executable, "-m", "pip", "install", "-q", '
           '"mmbook @ git+https://github.com/mmbook/mmbook@main"], check=True)')

SETUP = '''from mmbook.exercises import check_value, register


def check_square(square):
    for x in (0.0, 3.0, -2.5):
        check_value(square(x), x * x, name=f"square({x})", hint="multiply x by itself")


register("ex-demo-square", check_square)
register("ex-demo-answer", lambda answer: check_value(answer, 42, name="your answer",
                                                      wrong={24: "the digits are swapped"}))
print("setup done")'''

# The same checks as the instructor's graded checks (`mmbook grade --checks FILE`): the grader
# checks answers in a fresh process, where the notebook's own registrations do not exist.
DEMO_CHECKS = SETUP.replace('print("setup done")', "")

SQUARE_SOLUTION = "def square(x):\n    return x * x  # SOLUTION-SQUARE-CODE"
ANSWER_SOLUTION = "answer = 6 * 7  # SOLUTION-ANSWER-CODE"
SQUARE_STARTER = "def square(x):\n    ...  # your code here"
ANSWER_STARTER = "answer = ...  # a number"



def _cell(kind: str, source: str, tags: list[str] | None = None, number: int = 0) -> dict:
    cell = {"cell_type": kind, "id": f"cell-{number:02d}", "metadata": {}, "source": source}
    if tags:
        cell["metadata"]["tags"] = tags
    if kind == "code":
        cell.update(outputs=[], execution_count=None)
    return cell


def demo_notebook() -> dict:
    """The source (instructor) notebook."""
    cells = [
        ("code", INSTALL, None),
        ("code", SETUP, None),
        ("markdown", "(demo-chapter)=\n# A demo chapter\n\n**Learning objectives**\n\n- Square a number.", None),
        ("markdown", "## Check your understanding", None),
        ("markdown", "```{exercise} Sign\n:label: cu-demo-sign\n:nonumber:\n\nCan a square be negative?\n```", None),
        ("markdown", "```{solution-start} cu-demo-sign\n:class: dropdown\n```", None),
        ("markdown", "No, a real number times itself is never negative: SOLUTION-CU-TEXT.", None),
        ("markdown", "```{solution-end}\n```", None),
        ("markdown", "## Exercises", None),
        ("markdown", "```{exercise} Square\n:label: ex-demo-square\n\nWrite `square(x)`.\n```", None),
        ("code", SQUARE_STARTER, ["starter", "remove-cell"]),
        ("markdown", "```{solution-start} ex-demo-square\n:class: dropdown\n```", None),
        ("code", SQUARE_SOLUTION, None),
        ("markdown", "Multiply the number by itself: SOLUTION-SQUARE-TEXT.", None),
        ("markdown", "```{solution-end}\n```", None),
        ("code", 'from mmbook.exercises import check\n\ncheck("ex-demo-square", square)', ["checker"]),
        ("markdown", "```{exercise} The answer\n:label: ex-demo-answer\n\nWhat is six times seven?\n```", None),
        ("code", ANSWER_STARTER, ["starter", "remove-cell"]),
        ("markdown", "```{solution-start} ex-demo-answer\n:class: dropdown\n```", None),
        ("code", ANSWER_SOLUTION, None),
        ("markdown", "```{solution-end}\n```", None),
        ("code", 'check("ex-demo-answer", answer)', ["checker"]),
        ("markdown", "```{exercise} Why?\n:label: ex-demo-why\n\nWhy is it so?\n```\n\n"
                     "```{solution-start} ex-demo-why\n:class: dropdown\n```\nBecause SOLUTION-WHY-TEXT.\n"
                     "```{solution-end}\n```\n\nText after the solution stays.", None),
    ]
    return {
        "cells": [_cell(kind, source, tags, number) for number, (kind, source, tags) in enumerate(cells)],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def cell_index(notebook: dict, text: str) -> int:
    """Index of the first cell of ``notebook`` whose source contains ``text``."""
    return next(i for i, cell in enumerate(notebook["cells"]) if text in "".join(cell["source"]))


def write_demo_book(root: Path, chapter: str = "ch90_demo", name: str = "demo.ipynb") -> Path:
    """Write ``root/<chapter>/<name>`` and return the notebook's path."""
    path = root / chapter / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(demo_notebook(), indent=1), encoding="utf-8")
    return path


def replace_cells(notebook: dict, replacements: dict[str, str]) -> dict:
    """A copy of ``notebook`` in which every cell whose source is a key of ``replacements`` gets its value."""
    notebook = json.loads(json.dumps(notebook))
    found = set()
    for cell in notebook["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if source in replacements:
            cell["source"] = replacements[source]
            found.add(source)
    assert found == set(replacements), f"cells not found: {set(replacements) - found}"
    return notebook
