"""The student edition: solutions cut out (checked against the source), starters kept, same bytes every time."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from course_fixtures import ANSWER_STARTER, SQUARE_STARTER, cell_index, demo_notebook, write_demo_book
from mmbook.course import student
from mmbook.course.markup import MarkupError, cell_source, exercises, solution_texts, strip_solutions

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"


def all_text(notebook: dict) -> str:
    return "\n".join(cell_source(cell) for cell in notebook["cells"])


def leaked_lines(source: dict, edition: dict) -> list[str]:
    """Solution text of ``source`` found in ``edition``: each removed piece whole, and each of its lines of 25+
    characters that does not also occur outside the solutions in the source."""
    stripped = strip_solutions(source["cells"])
    outside = all_text({"cells": stripped.cells})
    text = all_text(edition)
    leaks = [piece for piece in stripped.removed if piece.strip() and piece in text]
    for piece in stripped.removed:
        for line in piece.splitlines():
            line = line.strip()
            if len(line) >= 25 and line not in outside and line in text:
                leaks.append(line)
    return leaks


# --- the synthetic chapter ------------------------------------------------------------------------

def test_demo_student_edition_cuts_solutions_and_keeps_starters(tmp_path):
    source = demo_notebook()
    edition, removed = student.student_notebook(source, "ch90_demo/demo.ipynb")
    text = all_text(edition)
    assert "SOLUTION-" not in text and "solution-start" not in text and "solution-end" not in text
    assert removed == len(solution_texts(source))
    assert SQUARE_STARTER in text and ANSWER_STARTER in text
    assert "Text after the solution stays." in text  # the cell that held a whole solution keeps its other text
    assert [e.label for e in exercises(edition)] == ["ex-demo-square", "ex-demo-answer", "ex-demo-why"]
    starters = [c for c in edition["cells"] if cell_source(c) in (SQUARE_STARTER, ANSWER_STARTER)]
    assert starters and all("tags" not in c["metadata"] for c in starters), "starter cells must lose their tags"
    checkers = [c for c in edition["cells"] if "checker" in c["metadata"].get("tags", [])]
    assert len(checkers) == 2 and all("raises-exception" in c["metadata"]["tags"] for c in checkers)
    assert edition["metadata"]["mmbook"] == {"edition": "student", "source": "ch90_demo/demo.ipynb",
                                             "exercises": ["ex-demo-square", "ex-demo-answer", "ex-demo-why"],
                                             "autograded": ["ex-demo-square", "ex-demo-answer"]}
    # The exercise graded by hand gets an answer cell right after its question; the autograded ones do not.
    answers = [(i, c) for i, c in enumerate(edition["cells"]) if "answer" in c["metadata"].get("tags", [])]
    assert [c["metadata"]["mmbook"]["answer"] for _, c in answers] == ["ex-demo-why"]
    assert "Why is it so?" in cell_source(edition["cells"][answers[0][0] - 1])
    assert source == demo_notebook(), "the source notebook must not be modified"


def test_demo_build_writes_the_layout_and_is_deterministic(tmp_path):
    write_demo_book(tmp_path / "book")
    (tmp_path / "book" / "ch90_demo" / "figure.svg").write_text("<svg/>")
    first = student.build(tmp_path / "book", tmp_path / "out1")
    student.build(tmp_path / "book", tmp_path / "out2")
    assert [p.relative_to(tmp_path / "out1").as_posix() for p in first.notebooks] == ["ch90_demo/demo.ipynb"]
    assert (tmp_path / "out1" / "ch90_demo" / "figure.svg").exists()
    assert (tmp_path / "out1/ch90_demo/demo.ipynb").read_bytes() == (tmp_path / "out2/ch90_demo/demo.ipynb").read_bytes()
    # A notebook whose source is gone is removed from the output.
    (tmp_path / "out1" / "ch90_demo" / "old.ipynb").write_text("{}")
    student.build(tmp_path / "book", tmp_path / "out1")
    assert not (tmp_path / "out1" / "ch90_demo" / "old.ipynb").exists()


def test_unfinished_starter_stops_with_one_clear_line(tmp_path):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    edition, _ = student.student_notebook(demo_notebook(), "ch90_demo/demo.ipynb")
    edition["cells"] = edition["cells"][1:]  # not the Colab cell: nothing to install here
    node = nbformat.from_dict(edition)
    nbclient.NotebookClient(node, timeout=120, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [(cell_source(c), o) for c in node.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert [source.splitlines()[-1] for source, _ in errors] == ['check("ex-demo-square", square)',
                                                                'check("ex-demo-answer", answer)']
    for (_, output), label in zip(errors, ["ex-demo-square", "ex-demo-answer"]):
        assert output.ename == "ExerciseNotDone"  # a NotImplementedError; Jupyter shows only the line below
        assert output.traceback == [f"NotImplementedError: exercise {label} : replace the ... with your code"]


@pytest.mark.parametrize("markdown, message", [
    ("```{solution-start} ex-x\n```\nnever closed", "never closed"),
    ("```{solution-end}\n```", "without a"),
    ("```{solution-start} ex-x\n```\n```{solution-start} ex-y\n```", "inside another solution"),
    ("```{solution-start} ex-x\n:class: dropdown\n", "not closed"),
])
def test_broken_markup_is_an_error(markdown, message):
    notebook = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": markdown}], "metadata": {},
                "nbformat": 4, "nbformat_minor": 5}
    with pytest.raises(MarkupError, match=message):
        student.student_notebook(notebook, "x.ipynb")


def test_checker_for_an_unknown_exercise_is_an_error():
    notebook = demo_notebook()
    notebook["cells"][cell_index(notebook, 'check("ex-demo-square"')]["source"] = 'check("ex-demo-elsewhere", square)'
    with pytest.raises(MarkupError, match="ex-demo-elsewhere.*not an exercise of this notebook"):
        student.student_notebook(notebook, "ch90_demo/demo.ipynb")


def test_starter_inside_a_solution_is_an_error():
    notebook = demo_notebook()
    notebook["cells"][cell_index(notebook, "SOLUTION-SQUARE-CODE")]["metadata"]["tags"] = ["starter"]
    with pytest.raises(MarkupError, match="starter.*inside a solution"):
        student.student_notebook(notebook, "ch90_demo/demo.ipynb")


def test_main_reports_a_missing_book(tmp_path, capsys):
    assert student.main([str(tmp_path / "nothing"), str(tmp_path / "out")]) == 2
    assert "no notebooks under" in capsys.readouterr().err


# --- the real book (read only) --------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    report = student.build(BOOK, out)
    return out, report


def test_real_book_student_edition_has_every_notebook(real_edition):
    out, report = real_edition
    sources = [p.relative_to(BOOK) for p in student.book_notebooks(BOOK)]
    assert sorted(p.relative_to(out) for p in report.notebooks) == sorted(sources)


def test_every_exercise_graded_by_hand_has_one_answer_cell(real_edition):
    out, report = real_edition
    for path in report.notebooks:
        notebook = json.loads(path.read_text())
        meta = notebook["metadata"]["mmbook"]
        by_hand = [label for label in meta["exercises"] if label not in meta["autograded"]]
        answers = [c["metadata"]["mmbook"]["answer"] for c in notebook["cells"]
                   if "answer" in c.get("metadata", {}).get("tags", [])]
        assert answers == by_hand, path


def test_real_book_leaks_no_solution(real_edition):
    out, _ = real_edition
    checked = 0
    for path in student.book_notebooks(BOOK):
        source = json.loads(path.read_text(encoding="utf-8"))
        edition = json.loads((out / path.relative_to(BOOK)).read_text(encoding="utf-8"))
        assert not leaked_lines(source, edition), f"{path.relative_to(BOOK)}: solution text in the student edition"
        assert "{solution-start}" not in all_text(edition) and "{solution-end}" not in all_text(edition)
        # The cells before the exercises are the chapter, unchanged.
        assert cell_source(edition["cells"][0]) == cell_source(source["cells"][0])  # Colab install cell
        assert cell_source(edition["cells"][1]) == cell_source(source["cells"][1])  # environment cell
        assert [e.label for e in exercises(edition)] == [e.label for e in exercises(source)]
        assert student.FOLDED_ANSWERS[0] not in all_text(edition), "it says answers are folded below, but they are removed"
        checked += len(solution_texts(source))
    assert checked > 0


def test_real_book_student_edition_is_deterministic(real_edition, tmp_path):
    out, _ = real_edition
    copy = tmp_path / "book"
    shutil.copytree(BOOK, copy, ignore=shutil.ignore_patterns("_build", ".ipynb_checkpoints"))
    student.build(copy, tmp_path / "again")
    for path in student.book_notebooks(BOOK):
        relative = path.relative_to(BOOK)
        assert (out / relative).read_bytes() == (tmp_path / "again" / relative).read_bytes(), relative


# --- the student HTML book ------------------------------------------------------------------------

def write_demo_jupyter_book(root: Path) -> Path:
    """A two-page Jupyter Book (preface and the demo chapter) that executes its notebook, as the real one does."""
    write_demo_book(root / "book")
    (root / "book" / "index.md").write_text("# A demo book\n\nThe preface; the student edition is "
                                            "{ref}`made by your instructor <course-map>`, see {ref}`course-map`.\n")
    (root / "book" / "course_map.md").write_text("(course-map)=\n# For instructors\n\nINSTRUCTOR-ONLY text.\n")
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/index\nchapters:\n  - file: book/course_map\n"
                                   "  - file: book/ch90_demo/demo\n")
    (root / "_config.yml").write_text(
        "title: Demo\nauthor: The tests\nonly_build_toc_files: true\n"
        "exclude_patterns: [_build]\n"
        "execute:\n  execute_notebooks: force\n  timeout: 120\n  allow_errors: false\n"
        "sphinx:\n  extra_extensions:\n    - sphinx_exercise\n  local_extensions:\n    demo_marker: ext/\n")
    (root / "ext").mkdir()
    (root / "ext" / "demo_marker.py").write_text(  # a local extension, as the real book has one
        "def setup(app):\n    return {'parallel_read_safe': True}\n")
    return root


def test_student_html_book_has_no_solution_text_or_code(tmp_path):
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    if not jupyter_book.exists():
        pytest.skip("jupyter-book is not installed (pip install -e '.[book]')")
    source = write_demo_jupyter_book(tmp_path / "src")
    student.build_tree(source, tmp_path / "student-book")
    assert (tmp_path / "student-book" / "book" / "index.md").exists()
    assert (tmp_path / "student-book" / "ext" / "demo_marker.py").exists()
    result = subprocess.run([str(jupyter_book), "build", str(tmp_path / "student-book"), "-W", "-n", "--keep-going"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    page = (tmp_path / "student-book" / "_build" / "html" / "book" / "ch90_demo" / "demo.html").read_text()
    assert "SOLUTION-" not in page, "solution text or code in the student HTML book"
    assert "Write <code" in page and "square" in page  # the exercise is there
    assert "your code here" in page  # its starter cell is shown
    assert "NotImplementedError" not in page  # the checker's output is removed
    # The instructors' page is left out, and links to it become plain words.
    assert not (tmp_path / "student-book" / "book" / "course_map.md").exists()
    assert "course_map" not in (tmp_path / "student-book" / "_toc.yml").read_text()
    assert "INSTRUCTOR-ONLY" not in "".join(p.read_text() for p in (tmp_path / "student-book" / "_build").rglob("*.html"))
    preface = (tmp_path / "student-book" / "book" / "index.md").read_text()
    assert "made by your instructor, see the course map for instructors." in preface and "{ref}" not in preface


def test_build_tree_needs_a_jupyter_book(tmp_path):
    (tmp_path / "book").mkdir()
    with pytest.raises(FileNotFoundError, match="not a Jupyter Book: it has no _config.yml"):
        student.build_tree(tmp_path, tmp_path / "out")


# --- adding starter and checker cells ---------------------------------------------------------------

def test_authoring_inserts_starter_and_checker_cells_once(tmp_path):
    from mmbook.course import authoring

    notebook = demo_notebook()
    notebook["cells"] = [c for c in notebook["cells"]  # the demo without its starter and checker cells
                         if not {"starter", "checker"} & set(c["metadata"].get("tags", []))]
    path = tmp_path / "book" / "demo.ipynb"
    path.parent.mkdir()
    path.write_text(json.dumps(notebook))
    spec = {"book/demo.ipynb": {"ex-demo-answer": {
        "starter": "answer = ...", "checker": 'from mmbook.exercises import check\n\ncheck("ex-demo-answer", answer)',
        "solution_append": "answer = int(answer)"}}}
    for _ in range(2):  # a second run replaces the cells instead of adding more
        authoring.apply_spec(spec, tmp_path)
    cells = json.loads(path.read_text())["cells"]
    sources = ["".join(c["source"]) for c in cells]
    start = next(i for i, s in enumerate(sources) if "{solution-start} ex-demo-answer" in s)
    end = next(i for i, s in enumerate(sources) if "{solution-end}" in s and i > start)
    assert sources[start - 1] == "answer = ..." and cells[start - 1]["metadata"]["tags"] == ["starter", "remove-cell"]
    assert 'check("ex-demo-answer", answer)' in sources[end + 1] and cells[end + 1]["metadata"]["tags"] == ["checker"]
    assert sum(s == "answer = ..." for s in sources) == 1 and sum("check(\"ex-demo-answer\"" in s for s in sources) == 1
    assert sources[end - 1].endswith("answer = int(answer)") and sources[end - 1].count("answer = int(answer)") == 1
    edition, _ = student.student_notebook(json.loads(path.read_text()), "demo.ipynb")
    assert edition["metadata"]["mmbook"]["autograded"] == ["ex-demo-answer"]
    assert "SOLUTION-" not in all_text(edition)


@pytest.mark.parametrize("label, cells, message", [
    ("ex-demo-missing", {"starter": "x = ..."}, "no {solution-start} ex-demo-missing"),
    ("ex-demo-answer", {"checker": 'check("ex-demo-square", answer)'}, 'must call check\\("ex-demo-answer"'),
    ("ex-demo-why", {"starter": "why = ..."}, "starts in the exercise's cell"),
])
def test_authoring_refuses_what_it_cannot_place(label, cells, message):
    from mmbook.course import authoring

    with pytest.raises(MarkupError, match=message):
        authoring.insert_exercise_cells(demo_notebook(), label, **cells)


def _top_level_names(source: str) -> tuple[set[str], set[str]]:
    """Names a notebook cell defines and reads at module level (not inside functions, classes or lambdas)."""
    import ast

    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    tree = ast.parse(code)
    defined: set[str] = set()
    read: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
            for decorator in node.decorator_list:
                visit(decorator)
            return
        if isinstance(node, ast.Lambda):
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
            return
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            inner = {n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)}
            for child in ast.walk(node):
                if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Load) and child.id not in inner:
                    read.add(child.id)
            return
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else defined).add(node.id)
        for child in ast.iter_child_nodes(node):
            visit(child)

    for statement in tree.body:
        visit(statement)
    return defined, read


def _solution_only_reads(edition: dict) -> list[str]:
    """Cells after the first exercise that read a name no kept cell before them defines."""
    import builtins

    first_exercise = min((e.cell for e in exercises(edition)), default=len(edition["cells"]))
    defined = set(dir(builtins)) | {"display", "get_ipython"}
    problems = []
    for index, cell in enumerate(edition["cells"]):
        if cell["cell_type"] != "code":
            continue
        names, reads = _top_level_names(cell_source(cell))
        missing = sorted(reads - defined - names)
        if index > first_exercise and missing:
            problems.append(f"cell {index} reads {missing}")
        defined |= names
    return problems


def test_a_name_defined_only_in_a_solution_is_found():
    notebook = demo_notebook()
    del notebook["cells"][cell_index(notebook, ANSWER_STARTER)]
    edition, _ = student.student_notebook(notebook, "demo.ipynb")
    assert any("['answer']" in problem for problem in _solution_only_reads(edition))
    edition, _ = student.student_notebook(demo_notebook(), "demo.ipynb")
    assert _solution_only_reads(edition) == []


def test_real_student_edition_defines_every_name_its_exercise_cells_read(real_edition):
    """With the solutions cut, no starter, checker or later cell reads a name only a solution defined."""
    out, _ = real_edition
    problems = [f"{path.relative_to(BOOK)}: {problem}" for path in student.book_notebooks(BOOK)
                for problem in _solution_only_reads(json.loads((out / path.relative_to(BOOK)).read_text(encoding="utf-8")))]
    assert not problems, "\n".join(problems)


def test_fold_solutions_folds_the_cells_inside_each_solution_only():
    from mmbook.course.markup import fold_solutions, solution_span_cells

    notebook = demo_notebook()
    inside = solution_span_cells(notebook["cells"])
    assert [cell_source(notebook["cells"][i]) for i in inside if "SOLUTION-SQUARE" in cell_source(notebook["cells"][i])]
    assert fold_solutions(notebook) == len(inside) and fold_solutions(notebook) == 0  # idempotent
    folded = [i for i, c in enumerate(notebook["cells"]) if c["metadata"].get("jupyter", {}).get("source_hidden")]
    assert folded == inside
    starters = [i for i, c in enumerate(notebook["cells"]) if "starter" in c["metadata"].get("tags", [])]
    assert not set(starters) & set(folded)
    # What JupyterLab shows of a folded cell, its first line, says nothing of the answer.
    for index in inside:
        cell = notebook["cells"][index]
        first, _, rest = cell_source(cell).partition("\n")
        assert first == {"code": "# Solution", "markdown": "% Solution"}[cell["cell_type"]] and "SOLUTION-" in rest


def test_every_solution_cell_of_the_book_is_folded_for_jupyterlab():
    from mmbook.course.markup import FOLDED_FIRST_LINE, solution_span_cells

    unfolded = []
    for path in student.book_notebooks(BOOK):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        unfolded += [f"{path.relative_to(BOOK)} cell {i}" for i in solution_span_cells(cells, str(path))
                     if not cells[i]["metadata"].get("jupyter", {}).get("source_hidden")
                     or cell_source(cells[i]).split("\n", 1)[0] not in FOLDED_FIRST_LINE.values()]
    assert not unfolded, "run scripts/record_expected_outputs.py (or mmbook.course.markup.fold_solutions):\n" + \
        "\n".join(unfolded)
