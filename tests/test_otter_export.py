"""The otter-grader export (mmbook.course.otter): every book notebook becomes a master notebook in
otter-assign's format, whose questions are the exercises, whose solution blocks hold the book's
solutions and nothing outside them does, with a public formative and a hidden graded test per
autograded exercise; the tests' functions grade as mmbook grade does.

otter-grader itself is not installed here: `make otter-check` runs `otter assign` and `otter run`
on the export in a virtual environment of its own (scripts/verify_otter_export.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmbook.course import otter
from mmbook.course.markup import FOLDED_FIRST_LINE, cell_source, checker_cells, concept_questions, exercises, solution_texts
from mmbook.course.student import book_notebooks, read_notebook_json, student_notebook

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
GRADED = ROOT / "instructor" / "graded_checks.py"
NOTEBOOKS = [path for path in book_notebooks(BOOK) if exercises(read_notebook_json(path))]


def blocks(master: dict) -> list[dict]:
    """The questions of a master notebook: name, config lines, the cells of its solution and its tests."""
    found, question, part = [], None, None
    for cell in master["cells"][1:]:
        text = cell_source(cell)
        if cell["cell_type"] == "raw":
            marker = text.split("\n", 1)[0]
            if marker == "# BEGIN QUESTION":
                assert question is None, "a question inside a question"
                question = {"config": text.split("\n")[1:], "solution": [], "tests": [], "prompt": []}
                part = "prompt"
            elif marker in {"# BEGIN SOLUTION", "# BEGIN TESTS"}:
                assert question is not None and part == "prompt" or (marker == "# BEGIN TESTS" and part == "after"), marker
                part = "solution" if marker == "# BEGIN SOLUTION" else "tests"
            elif marker in {"# END SOLUTION", "# END TESTS"}:
                assert part == ("solution" if marker == "# END SOLUTION" else "tests"), marker
                part = "after"
            elif marker == "# END QUESTION":
                assert part == "after", "a question ends inside a block"
                found.append(question)
                question, part = None, None
            else:
                raise AssertionError(f"unknown raw cell {text!r}")
        elif question is not None:
            question["prompt" if part == "prompt" else part].append(cell)
        else:
            found.append({"outside": cell})
    assert question is None, "a question is never closed"
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(BOOK).as_posix())
def test_master_notebook_keeps_solutions_inside_their_blocks(path):
    notebook = read_notebook_json(path)
    relative = path.relative_to(BOOK).as_posix()
    master = otter.master_notebook(notebook, relative)
    config = cell_source(master["cells"][0])
    assert master["cells"][0]["cell_type"] == "raw" and config.startswith("# ASSIGNMENT CONFIG")
    assert f"name: {relative.removesuffix('.ipynb').replace('/', '-')}" in config and "graded_checks.py" in config

    found = blocks(master)
    questions = [b for b in found if "config" in b]
    outside = [b["outside"] for b in found if "outside" in b] + [c for q in questions for c in q["prompt"]]
    autograded = {label for _, label in checker_cells(notebook)}
    labels = [e.label for e in exercises(notebook)]
    assert [q["config"][0] for q in questions] == [f"name: {label}" for label in labels]
    for label, question in zip(labels, questions):
        assert ("manual: true" in question["config"]) == (label not in autograded), label
        assert question["solution"], f"{label} has no solution"
        for cell in question["solution"]:
            text = cell_source(cell)
            assert text.split("\n", 1)[0] != FOLDED_FIRST_LINE.get(cell["cell_type"])
            if cell["cell_type"] == "code":
                assert text.startswith("# BEGIN SOLUTION NO PROMPT\n") and text.endswith("\n# END SOLUTION")
        if label in autograded:
            public, hidden = (cell_source(c) for c in question["tests"])
            assert "hidden: false\npoints: 0" in public and "formative_test(env, " + repr(label) in public
            assert "hidden: true\npoints: 1" in hidden and "graded_test(env, " + repr(label) in hidden
            compile(public, "public", "exec"), compile(hidden, "hidden", "exec")
        else:
            assert not question["tests"]

    # What the student notebook is made of (everything outside the solution blocks and tests) holds
    # no solution of the book, no checker cell and no answer cell of the student edition.
    shown = "\n".join(cell_source(c) for c in outside)
    edition = "\n".join(cell_source(c) for c in student_notebook(notebook, relative)[0]["cells"])
    for text in solution_texts(notebook, relative):
        body = "\n".join(line for line in text.split("\n") if not line.lstrip().startswith(("```", ":class:", "%", "#")))
        for line in (line.strip() for line in body.split("\n")):
            if len(line) > 40 and line not in edition:  # a starter's docstring may recur in its solution
                assert line not in shown, f"a line of a solution is outside its block: {line}"
    assert not any("checker" in c.get("metadata", {}).get("tags", []) for c in outside)
    assert not any("answer" in c.get("metadata", {}).get("tags", []) for c in outside)
    # Concept questions keep their question, without their folded answer.
    for question in concept_questions(notebook):
        assert f":label: {question.label}" in shown


def test_points_reach_the_question_and_its_hidden_test():
    notebook = read_notebook_json(BOOK / "ch03_cnn" / "01_convolution.ipynb")
    master = otter.master_notebook(notebook, "ch03_cnn/01_convolution.ipynb", {"ex-cnn-conv2d": 3})
    conv2d = next(b for b in blocks(master) if b.get("config", [""])[0] == "name: ex-cnn-conv2d")
    assert "points: 3" in conv2d["config"]
    assert "hidden: true\npoints: 3" in cell_source(conv2d["tests"][1])
    assert "hidden: false\npoints: 0" in cell_source(conv2d["tests"][0])


def test_export_writes_a_folder_per_notebook(tmp_path, capsys):
    written = otter.export(BOOK, tmp_path / "otter", GRADED, notebooks=["ch03_cnn/01_convolution.ipynb"])
    folder = tmp_path / "otter" / "ch03_cnn" / "01_convolution"
    assert written == [folder / "01_convolution.ipynb"]
    assert (folder / "graded_checks.py").read_text() == GRADED.read_text()
    requirements = (folder / "requirements.txt").read_text().split("\n")
    assert otter.REQUIREMENT in requirements and "cloudpickle" in requirements
    json.loads(written[0].read_text())  # a notebook otter can read

    with pytest.raises(FileNotFoundError, match="make instructor"):
        otter.export(BOOK, tmp_path / "x", tmp_path / "missing.py")
    with pytest.raises(FileNotFoundError, match="ch03_cnn/01_convolution.ipynb"):
        otter.export(BOOK, tmp_path / "x", GRADED, notebooks=["ch03_cnn/no_such.ipynb"])
    assert otter.main([str(BOOK), str(tmp_path / "x"), "--checks", str(tmp_path / "missing.py")]) == 2
    assert "make instructor" in capsys.readouterr().err
    bad = tmp_path / "points.json"
    bad.write_text('{"ex-no-such": 2}')
    assert otter.main([str(BOOK), str(tmp_path / "x"), "--checks", str(GRADED), "--points", str(bad)]) == 2
    assert "ex-no-such" in capsys.readouterr().err


# --- the tests' functions, as otter calls them with the notebook's globals ------------------------

NOTEBOOK_CODE = '''
import torch
import torchvision


def iou_from_torchvision(a, b):
    return torchvision.ops.box_iou(a, b)


def iou_by_hand(a, b):
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    area = lambda boxes: (boxes[:, 2:] - boxes[:, :2]).prod(-1)
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def iou_wrong(a, b):
    return torch.zeros(len(a), len(b))
'''
CHECKER = 'from mmbook.exercises import check\n\ncheck("ex-obj-iou", pairwise_iou)'


@pytest.fixture(scope="module")
def env():
    namespace = {"__name__": "__main__"}  # as in a notebook: cloudpickle carries its functions by value
    exec(NOTEBOOK_CODE, namespace)
    return namespace


def test_formative_test_runs_the_checker_cells_check(env, capsys):
    otter.formative_test(dict(env, pairwise_iou=env["iou_from_torchvision"]), "ex-obj-iou", CHECKER)
    assert "ex-obj-iou: passed" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="ex-obj-iou"):
        otter.formative_test(dict(env, pairwise_iou=env["iou_wrong"]), "ex-obj-iou", CHECKER)
    with pytest.raises(AssertionError, match="replace the ..."):
        otter.formative_test(dict(env, pairwise_iou=...), "ex-obj-iou", CHECKER)


def test_graded_test_judges_in_a_fresh_process_with_the_graded_checks(env, tmp_path):
    pytest.importorskip("cloudpickle")
    otter.graded_test(dict(env, pairwise_iou=env["iou_by_hand"]), "ex-obj-iou", CHECKER, GRADED)
    with pytest.raises(AssertionError, match=r"ex-obj-iou: .*forbids.*box_iou"):
        otter.graded_test(dict(env, pairwise_iou=env["iou_from_torchvision"]), "ex-obj-iou", CHECKER, GRADED)
    with pytest.raises(FileNotFoundError, match="autograder_files"):
        otter.graded_test(dict(env, pairwise_iou=env["iou_by_hand"]), "ex-obj-iou", CHECKER, tmp_path / "none.py")
