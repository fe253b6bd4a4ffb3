"""`mmbook grade` on a synthetic chapter: a correct, an empty and a broken submission, and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from course_fixtures import (ANSWER_SOLUTION, ANSWER_STARTER, DEMO_CHECKS, SQUARE_SOLUTION, SQUARE_STARTER,
                             replace_cells, write_demo_book)
from mmbook.course import grade, student
from mmbook.course.sandbox import NO_SANDBOX_WARNING, find_bubblewrap

pytest.importorskip("nbclient")


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A book with the demo chapter, its student edition, and submissions written from it."""
    root = tmp_path_factory.mktemp("course")
    write_demo_book(root / "book")
    student.build(root / "book", root / "student")
    edition = json.loads((root / "student" / "ch90_demo" / "demo.ipynb").read_text())
    edition["cells"] = edition["cells"][1:]  # the Colab install cell would do nothing here; skip its process
    submissions = {
        # The instructor's solutions put into the student edition's starter cells.
        "correct": replace_cells(edition, {SQUARE_STARTER: SQUARE_SOLUTION, ANSWER_STARTER: ANSWER_SOLUTION,
                                           student.answer_cell("ex-demo-why")["source"]: "STUDENT-WHY: x * x >= 0"}),
        "empty": edition,
        # A crash in one exercise, a wrong answer with a known mistake in the other.
        "broken": replace_cells(edition, {SQUARE_STARTER: "def square(x):\n    return x / 0",
                                          ANSWER_STARTER: "answer = 24"}),
        # A student who edited the checker cell to skip the check.
        "tampered": replace_cells(replace_cells(edition, {SQUARE_STARTER: "def square(x):\n    return 0"}),
                                  {'check("ex-demo-answer", answer)': 'print("ex-demo-answer: passed")  # checker',
                                   'from mmbook.exercises import check\n\ncheck("ex-demo-square", square)':
                                   'from mmbook.exercises import check\n\nprint("ex-demo-square: passed")  # check("ex-demo-square", square)'}),
    }
    (root / "checks.py").write_text(DEMO_CHECKS)
    paths = {}
    for name, notebook in submissions.items():
        paths[name] = root / "submissions" / f"{name}.ipynb"
        paths[name].parent.mkdir(exist_ok=True)
        paths[name].write_text(json.dumps(notebook))
    return root, paths


def rows_of(output: str) -> dict[str, list[str]]:
    lines = output.strip().splitlines()
    assert lines[0].split()[:1] == ["submission"] and set(lines[1]) <= {"-", " "}
    return {Path(line.split()[0]).stem: line for line in lines[2:]}


def test_grades_three_submissions(course, capsys):
    root, paths = course
    out_csv, out_json, feedback = root / "grades.csv", root / "gradebook.json", root / "feedback"
    (root / "points.json").write_text(json.dumps({"ex-demo-square": 3}))
    status = grade.main([str(paths[name]) for name in ("correct", "empty", "broken", "tampered")] +
                        ["--book", str(root / "book"), "--csv", str(out_csv), "--timeout", "120",
                         "--checks", str(root / "checks.py"), "--json", str(out_json),
                         "--points", str(root / "points.json"), "--feedback", str(feedback), "--jobs", "2",
                         "--review", str(root / "review")])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    if find_bubblewrap():
        assert "sandbox: bubblewrap" in captured.err and "no network" in captured.err
    else:
        assert NO_SANDBOX_WARNING in captured.err
    header = captured.out.splitlines()[0].split()
    assert header == ["submission", "ex-demo-square", "ex-demo-answer", "total"]
    with out_csv.open() as handle:
        table = {Path(row["submission"]).stem: row for row in csv.DictReader(handle)}
    assert table["correct"]["ex-demo-square"] == "pass" and table["correct"]["ex-demo-answer"] == "pass"
    assert table["correct"]["passed"] == "2" and table["correct"]["out_of"] == "2"
    for label in ("ex-demo-square", "ex-demo-answer"):
        assert table["empty"][label] == "fail: not done (the starter's ... is still there)"
    assert table["empty"]["passed"] == "0"
    assert table["broken"]["ex-demo-square"] == "error: ZeroDivisionError: float division by zero"
    assert table["broken"]["ex-demo-answer"].startswith("fail: your answer")
    assert table["broken"]["ex-demo-answer"].endswith("the digits are swapped")
    assert table["broken"]["passed"] == "0"
    # An edited checker cell is flagged, even where its label can no longer be read.
    for label in ("ex-demo-square", "ex-demo-answer"):
        assert table["tampered"][label].startswith("flagged: the checker cell was edited (cell ")
    rows = rows_of(captured.out)
    assert rows["correct"].split()[-1] == "2/2" and rows["empty"].split()[-1] == "0/2"
    assert rows["broken"].split()[-1] == "0/2" and rows["tampered"].split()[-1] == "0/2"
    # The gradebook: points per exercise (3 for the square, 1 by default), the same statuses as the table.
    book = json.loads(out_json.read_text())
    assert book["points"] == {"ex-demo-square": 3.0, "ex-demo-answer": 1.0} and book["out_of"] == 4.0
    scores = {Path(entry["submission"]).stem: entry for entry in book["submissions"]}
    assert scores["correct"]["score"] == 4.0 and scores["empty"]["score"] == 0.0
    assert scores["broken"]["exercises"]["ex-demo-square"]["status"] == "error"
    assert scores["tampered"]["exercises"]["ex-demo-answer"]["status"] == "flagged"
    # One feedback file per student, with the score and each exercise's verdict.
    notes = {path.stem: path.read_text() for path in feedback.glob("*.md")}
    assert set(notes) == {"correct", "empty", "broken", "tampered"}
    assert "Score: 4 / 4." in notes["correct"] and "Score: 0 / 4." in notes["broken"]
    assert "ZeroDivisionError" in notes["broken"] and "the digits are swapped" in notes["broken"]
    assert "not graded" in notes["tampered"]
    # The exercise graded by hand: every student's answer to it in one file, after the question.
    review = (root / "review" / "demo" / "ex-demo-why.md").read_text()
    assert review.index("Why is it so?") < review.index("## broken") < review.index("## correct")
    assert "STUDENT-WHY: x * x >= 0" in review and "*(no answer written)*" in review
    assert "SOLUTION-WHY-TEXT" not in review


def test_time_limit_per_notebook(course, tmp_path, capsys):
    root, paths = course
    slow = json.loads(paths["correct"].read_text())
    slow["cells"].insert(4, {"cell_type": "code", "execution_count": None, "id": "slow", "metadata": {},
                             "outputs": [], "source": "import time\ntime.sleep(60)"})
    path = tmp_path / "slow.ipynb"
    path.write_text(json.dumps(slow))
    assert grade.main([str(path), "--book", str(root / "book"), "--timeout", "8", "--csv", str(tmp_path / "g.csv"),
                       "--checks", str(root / "checks.py"), "--no-sandbox"]) == 0
    assert NO_SANDBOX_WARNING in capsys.readouterr().err
    with (tmp_path / "g.csv").open() as handle:
        row = next(csv.DictReader(handle))
    assert row["ex-demo-square"] == "error: not run (the notebook ran past the time limit of 8 s)"
    assert row["passed"] == "0"


# A submission that tries what the sandbox stops, in a cell before the (correct) answers.
ESCAPES = f"""import socket, subprocess
from pathlib import Path
try:
    Path({str(Path(__file__).resolve().parent)!r}, "escaped-from-grading.txt").write_text("x")
except OSError as error:
    print(error)
try:
    socket.create_connection(("192.0.2.1", 80), timeout=5)
except OSError as error:
    print(error)
children = []
try:
    for _ in range(300):
        children.append(subprocess.Popen(["sleep", "1000003.5"]))
except OSError as error:
    print(error)
for child in children:
    child.kill()
    child.wait()
subprocess.Popen(["sleep", "1000004.5"], start_new_session=True)  # left running"""


@pytest.mark.skipif(find_bubblewrap() is None, reason="bubblewrap is not installed")
def test_sandbox_stops_and_reports_escapes(course, tmp_path, capsys):
    root, paths = course
    notebook = json.loads(paths["correct"].read_text())
    notebook["cells"].insert(2, {"cell_type": "code", "execution_count": None, "id": "escapes", "metadata": {},
                                 "outputs": [], "source": ESCAPES})
    path = tmp_path / "escapes.ipynb"
    path.write_text(json.dumps(notebook))
    assert grade.main([str(path), "--book", str(root / "book"), "--checks", str(root / "checks.py"),
                       "--json", str(tmp_path / "book.json"), "--feedback", str(tmp_path / "fb"),
                       "--max-processes", "128"]) == 0
    assert not (Path(__file__).resolve().parent / "escaped-from-grading.txt").exists()
    entry = json.loads((tmp_path / "book.json").read_text())["submissions"][0]
    assert entry["score"] == 2.0  # the answers are right; the sandbox only stopped the rest
    found = " | ".join(entry["sandbox"])
    for event in ("tried to write outside its own folder", "tried to use the network",
                  "reached the limit on processes", "left "):
        assert event in found, found
    assert "tried to use the network" in (tmp_path / "fb" / "escapes.md").read_text()
    assert "tried to write outside" in capsys.readouterr().err
    for process in Path("/proc").glob("[0-9]*"):
        try:
            command = (process / "cmdline").read_bytes()
            state = (process / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        assert not (b"1000003.5" in command or b"1000004.5" in command) or state == "Z"


# Tampering that once passed a wrong answer: each is inserted as a cell of its own before the exercises.
TAMPERING = {
    "one_line": ('import mmbook.exercises as _e; _e.check = lambda label, *a, **k: print(f"{label}: passed")',
                 "changes _e.check"),
    "checkers": ('from mmbook.exercises import CHECKERS\nCHECKERS["ex-demo-square"] = lambda f: None\n'
                 'CHECKERS["ex-demo-answer"] = lambda a: None', 'changes CHECKERS['),
    "builtins": ('import builtins\n_print = builtins.print\n'
                 'builtins.print = lambda *a, **k: _print("ex-demo-square: passed")', "imports builtins"),
    "comparison": ('import math\nmath.isclose = lambda *a, **k: True', "changes math.isclose"),
}


def test_tampering_is_flagged_and_scores_zero(course, tmp_path, capsys):
    root, paths = course
    wrong = json.loads(paths["broken"].read_text())
    files = []
    for name, (code, _) in TAMPERING.items():
        notebook = json.loads(json.dumps(wrong))
        notebook["cells"].insert(3, {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                                     "source": code})
        files.append(tmp_path / f"{name}.ipynb")
        files[-1].write_text(json.dumps(notebook))
    assert grade.main([str(f) for f in files] + ["--book", str(root / "book"), "--csv", str(tmp_path / "g.csv"),
                                                 "--checks", str(root / "checks.py")]) == 0
    with (tmp_path / "g.csv").open() as handle:
        table = {Path(row["submission"]).stem: row for row in csv.DictReader(handle)}
    for name, (_, reason) in TAMPERING.items():
        assert table[name]["passed"] == "0", table[name]
        for label in ("ex-demo-square", "ex-demo-answer"):
            assert table[name][label].startswith("flagged: ") and reason in table[name][label], table[name][label]


def test_the_grade_comes_from_a_fresh_process_not_from_what_the_kernel_printed(course, tmp_path, capsys):
    root, paths = course
    # Patching hidden from a reading of the code: the kernel's check() now prints "passed" for anything.
    hidden = ('exec("import mmbook.exercises as e\\n'
              'e.check = lambda label, *a, **k: print(label + \': passed\')")')
    notebook = replace_cells(json.loads(paths["correct"].read_text()),
                             {SQUARE_SOLUTION: "def square(x):\n    return 0"})
    notebook["cells"].insert(3, {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                                 "source": hidden})
    path = tmp_path / "hidden.ipynb"
    path.write_text(json.dumps(notebook))
    assert grade.main([str(path), "--book", str(root / "book"), "--csv", str(tmp_path / "g.csv"),
                       "--checks", str(root / "checks.py")]) == 0
    with (tmp_path / "g.csv").open() as handle:
        row = next(csv.DictReader(handle))
    assert row["ex-demo-square"].startswith("fail: square("), row
    assert row["ex-demo-answer"] == "pass" and row["passed"] == "1"


def test_without_the_instructors_checks_an_unknown_exercise_is_an_error_not_a_pass(course, tmp_path, capsys):
    root, paths = course
    assert grade.main([str(paths["correct"]), "--book", str(root / "book"), "--csv", str(tmp_path / "g.csv")]) == 0
    with (tmp_path / "g.csv").open() as handle:
        row = next(csv.DictReader(handle))
    assert row["ex-demo-square"] == "error: no graded check for ex-demo-square; give the instructor's checks with --checks"
    assert grade.main([str(paths["correct"]), "--book", str(root / "book"), "--checks", str(tmp_path / "no.py")]) == 2
    assert "--checks" in capsys.readouterr().err


def test_a_file_that_is_not_a_notebook_is_exit_2(course, tmp_path, capsys):
    root, paths = course
    text = tmp_path / "essay.ipynb"
    text.write_text("my answers are below\n")
    assert grade.main([str(paths["correct"]), str(text), "--book", str(root / "book")]) == 2
    err = capsys.readouterr().err
    assert "essay.ipynb is not a Jupyter notebook (not JSON" in err
    assert "WARNING" not in err, "nothing may run when the input is bad"


def test_a_notebook_from_another_chapter_is_exit_2(course, tmp_path, capsys):
    root, paths = course
    other = json.loads(paths["correct"].read_text())
    for cell in other["cells"]:
        if cell["cell_type"] == "markdown":
            cell["source"] = "".join(cell["source"]).replace("ex-demo-answer", "ex-other-answer")
    path = tmp_path / "other.ipynb"
    path.write_text(json.dumps(other))
    assert grade.main([str(path), "--book", str(root / "book")]) == 2
    assert "do not match those of ch90_demo/demo.ipynb" in capsys.readouterr().err


def test_against_names_the_chapter_and_catches_a_mismatch(course, tmp_path, capsys):
    root, paths = course
    plain = json.loads(paths["correct"].read_text())
    del plain["metadata"]["mmbook"]
    path = tmp_path / "no_metadata.ipynb"
    path.write_text(json.dumps(plain))
    assert grade.main([str(path), "--book", str(root / "book")]) == 2
    assert "does not say which notebook" in capsys.readouterr().err
    # With --against it is graded (the reference is the book's notebook, cut to its student edition).
    other_book = tmp_path / "book2"
    source = write_demo_book(other_book)
    notebook = json.loads(source.read_text())
    for cell in notebook["cells"]:
        cell["source"] = cell["source"].replace("ex-demo-square", "ex-demo-cube")
    source.write_text(json.dumps(notebook))
    assert grade.main([str(path), "--against", str(source)]) == 2
    assert "is it from another chapter or an older edition?" in capsys.readouterr().err


def test_missing_file_and_bad_timeout_are_exit_2(course, tmp_path, capsys):
    root, paths = course
    assert grade.main([str(tmp_path / "absent.ipynb"), "--book", str(root / "book")]) == 2
    assert "absent.ipynb: no such file" in capsys.readouterr().err
    assert grade.main([str(paths["correct"]), "--timeout", "0", "--book", str(root / "book")]) == 2
    assert "--timeout must be a positive" in capsys.readouterr().err


def test_help_warns_that_it_runs_student_code(capsys):
    assert grade.main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "runs the students' code" in out and "container or a throwaway VM" in out


def test_add_arguments_builds_a_subcommand():
    import argparse

    parser = argparse.ArgumentParser(prog="mmbook")
    commands = parser.add_subparsers(dest="command")
    grade.add_arguments(commands.add_parser("grade"))
    args = parser.parse_args(["grade", "a.ipynb", "b.ipynb", "--csv", "g.csv", "--timeout", "30"])
    assert args.submissions == [Path("a.ipynb"), Path("b.ipynb")] and args.timeout == 30.0 and args.csv == Path("g.csv")


def _reference(labels):
    return grade.Reference(source="ch90_demo/demo.ipynb", notebook={}, labels=list(labels),
                           checkers={label: "" for label in labels})


def test_points_default_to_one_and_bad_points_files_are_clear_errors(tmp_path):
    labels = ["ex-a", "ex-b"]
    assert grade.read_points(None, labels) == {"ex-a": 1.0, "ex-b": 1.0}
    path = tmp_path / "points.json"
    path.write_text('{"ex-b": 2.5}')
    assert grade.read_points(path, labels) == {"ex-a": 1.0, "ex-b": 2.5}
    for text, message in (('{"ex-c": 1}', "does not grade automatically: ex-c"), ('{"ex-a": -1}', "give a number >= 0"),
                          ('[1, 2]', "expected a JSON object"), ("{oops", "cannot read it as JSON"),
                          ('{"ex-a": true}', "give a number >= 0")):
        path.write_text(text)
        with pytest.raises(grade.GradeInputError, match=message):
            grade.read_points(path, labels)


def test_gradebook_and_feedback_from_outcomes(tmp_path):
    labels = ["ex-a", "ex-b"]
    rows = [("class/ana.ipynb", {"ex-a": grade.Outcome("pass"), "ex-b": grade.Outcome("fail", "off by one")}),
            ("other/ana.ipynb", {"ex-a": grade.Outcome("flagged", "rebinds check"), "ex-b": grade.Outcome("pass")})]
    book = grade.gradebook(rows, _reference(labels), {"ex-a": 2.0, "ex-b": 1.0}, "quick")
    first, second = book["submissions"]
    assert (first["score"], first["out_of"], second["score"]) == (2.0, 3.0, 1.0)
    assert first["exercises"]["ex-b"] == {"status": "fail", "detail": "off by one", "points": 0.0, "out_of": 1.0}
    written = grade.write_feedback(tmp_path / "fb", book)
    assert [p.name for p in written] == ["ana.md", "ana-2.md"]  # same file name from two folders: both kept
    assert "Score: 2 / 3." in written[0].read_text() and "off by one" in written[0].read_text()
    assert "not graded" in written[1].read_text()


def test_a_partly_right_answer_earns_the_share_of_its_parts():
    rows = [("ana.ipynb", {"ex-a": grade.Outcome("fail", "the second size is too large (the other parts are right)", 0.5),
                           "ex-b": grade.Outcome("error", "crashed", 0.5)})]  # only a failed check earns credit
    book = grade.gradebook(rows, _reference(["ex-a", "ex-b"]), {"ex-a": 2.0, "ex-b": 1.0}, "quick")
    entry = book["submissions"][0]
    assert entry["exercises"]["ex-a"]["points"] == 1.0 and entry["score"] == 1.0
    assert "(1 / 2)" in grade.feedback(entry, "demo.ipynb")


@pytest.fixture(scope="module")
def course_of_two(tmp_path_factory):
    """A book of two chapters, its student edition, and a folder per student (ana: both, ben: one)."""
    root = tmp_path_factory.mktemp("two")
    write_demo_book(root / "book")
    write_demo_book(root / "book", "ch91_again", "again.ipynb")
    student.build(root / "book", root / "student")
    for name, chapter in (("ana", "ch90_demo/demo"), ("ana", "ch91_again/again"), ("ben", "ch90_demo/demo")):
        edition = json.loads((root / "student" / f"{chapter}.ipynb").read_text())
        edition["cells"] = edition["cells"][1:]
        answered = replace_cells(edition, {SQUARE_STARTER: SQUARE_SOLUTION, ANSWER_STARTER: ANSWER_SOLUTION})
        path = root / "submissions" / name / f"{Path(chapter).name}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(answered))
    (root / "roster.csv").write_text("student,name\nana,Ana\nben,Ben\ncy,Cy\n")
    (root / "checks.py").write_text(DEMO_CHECKS)
    return root


def test_a_whole_course_in_one_call(course_of_two, tmp_path, capsys):
    root = course_of_two
    status = grade.main([str(root / "submissions"), "--book", str(root / "book"), "--checks", str(root / "checks.py"),
                         "--id-pattern", r"submissions/(?P<student>\w+)/", "--roster", str(root / "roster.csv"),
                         "--csv", str(tmp_path / "g.csv"), "--json", str(tmp_path / "course.json"),
                         "--feedback", str(tmp_path / "fb"), "--jobs", "2"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "ch90_demo/demo.ipynb" in captured.out and "ch91_again/again.ipynb" in captured.out
    course = json.loads((tmp_path / "course.json").read_text())
    assert [book["notebook"] for book in course["notebooks"]] == ["ch91_again/again.ipynb", "ch90_demo/demo.ipynb"]
    assert course["out_of"] == 4.0
    assert course["students"]["ana"]["score"] == 4.0 and course["students"]["ana"]["missing"] == []
    assert course["students"]["ben"]["score"] == 2.0
    assert course["students"]["ben"]["missing"] == ["ch91_again/again.ipynb"]
    assert course["students"]["cy"]["score"] == 0.0 and len(course["students"]["cy"]["missing"]) == 2
    assert course["notebooks"][1]["missing"] == ["cy"]
    with (tmp_path / "g.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted((row["student"], row["notebook"], row["passed"]) for row in rows) == [
        ("ana", "ch90_demo/demo.ipynb", "2"), ("ana", "ch91_again/again.ipynb", "2"), ("ben", "ch90_demo/demo.ipynb", "2")]
    assert sorted(path.name for path in (tmp_path / "fb").glob("*.md")) == ["ana-again.md", "ana-demo.md", "ben-demo.md"]


@pytest.mark.parametrize("options, message", [
    (["--id-pattern", r"submissions/(\w+)/"], "no group named 'student'"),
    (["--id-pattern", r"(?P<student>zzz\d)"], "finds no student ID"),
    (["--id-pattern", r"(?P<student>submissions)/"], "are both student submissions's answer"),
    (["--id-pattern", r"submissions/(?P<student>\w+)/", "--roster", "ROSTER"], "not on the roster"),
    ([], "are both student demo's answer to ch90_demo/demo.ipynb"),  # the default ID is the file name
    (["--id-pattern", r"submissions/(?P<student>\w+)/", "--jobs", "0"], "--jobs must be at least 1"),
    (["--id-pattern", r"submissions/(?P<student>\w+)/", "--max-processes", "2"], "at least 8"),
])
def test_bad_course_options_are_exit_2(course_of_two, tmp_path, capsys, options, message):
    root = course_of_two
    (tmp_path / "roster.txt").write_text("ana\n")
    options = [str(tmp_path / "roster.txt") if option == "ROSTER" else option for option in options]
    assert grade.main([str(root / "submissions"), "--book", str(root / "book")] + options) == 2
    err = capsys.readouterr().err
    assert message in err, err
