"""Grade submitted student notebooks: ``mmbook grade SUBMISSION.ipynb ... [--csv grades.csv]``.

Each submission is executed top to bottom in a fresh Jupyter kernel (quick mode unless
``--full``), in a new empty working folder, with a time limit for the whole notebook.
Errors in cells do not stop it. Then each autograded exercise is read off its
``checker`` cell (see :mod:`mmbook.course.markup`):

- ``pass``   the cell printed ``<label>: passed`` (:func:`mmbook.exercises.passed_line`) and raised nothing;
- ``fail``   it raised ``ExerciseError``/``AssertionError`` (wrong answer) or ``NotImplementedError``
  (the ``...`` is still there), with the first line of the message;
- ``error``  anything else: another exception, the cell never ran (time limit, dead kernel),
  or the checker cell is missing from the submission;
- ``flagged`` the submission's code tampers with grading (see above); scores 0.

Before running, the grader puts the edition's own source back into each checker cell.
What that cell prints in the kernel is feedback only: the student's code ran first in the
same process and could have replaced ``check`` or anything it calls. The grade comes from
:mod:`mmbook.course.judge`: a cell added after each checker cell saves the answer it
checks, and when the notebook has run, each answer is checked again in a fresh Python
process with the installed package's checkers (or the instructor's ``--checks`` file).
A submission whose own code tampers with grading (rebinds ``check``, changes
``CHECKERS``, touches ``builtins``, monkeypatches an imported module, edits a checker
cell) is ``flagged``: the exercises it can affect score 0, and the report says why.
It prints one row per submission, one column per autograded exercise and a total, and
can write the same table as CSV (``--csv``), a gradebook as JSON with points per exercise
(``--json``, weights from ``--points``), and one feedback file per student (``--feedback``).

**Grading runs the students' code**, each submission and each graded check in a sandbox
(:mod:`mmbook.course.sandbox`): under bubblewrap it has no network, can write only in its own
temporary folder, cannot see the submissions' or the checks' folders, and whatever it leaves
running is ended; memory and processes are limited. What the sandbox stopped is reported per
submission (``sandbox`` in the gradebook, a line in the feedback). Without bubblewrap the
grader warns and the code runs with your permissions: use a container or a throwaway VM.
``--jobs N`` grades N submissions at a time.

One call may grade a whole course: folders are searched for notebooks, each submission is
graded against the notebook it answers, ``--id-pattern`` reads the student's ID from the
path (default: the file name) and ``--roster`` lists the students, so the gradebook names
who submitted nothing. With several notebooks, ``--json`` writes a course gradebook (per
student: the score in each notebook and in all; per notebook: the gradebook of one).

Exit status: 0 when every submission was graded (whatever the grades), 2 for bad input
(a file that is not a notebook, a notebook whose exercise labels do not match its chapter
in this edition of the book, two submissions of one student to one notebook, a student not
on the roster, a bad ``--id-pattern``).
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mmbook.course.judge import capture_source, tampering
from mmbook.course.markup import (CHECKER_TAG, MarkupError, cell_source, cell_tags, checker_cells, checker_label,
                                  exercises)
from mmbook.course.sandbox import DEFAULT_MEMORY_GIB, DEFAULT_PROCESSES, Limits, Sandbox, SandboxResult
from mmbook.course.student import EDITION, answer_cell, read_notebook_json, student_notebook
from mmbook.exercises import passed_line

WARNING = ("mmbook grade runs the students' code. Under bubblewrap (apt-get install bubblewrap) it has no network "
           "and writes only in its own folder; without it, it runs with your permissions and can read, change or "
           "delete your files and use the network: then run it in a container or a throwaway VM.")
DEFAULT_TIMEOUT = 600
#: Seconds for one graded check in its own process (importing torch and mmbook included).
JUDGE_TIMEOUT = 300
#: Exceptions that mean "the answer is wrong" or "not done" rather than "the code broke".
FAIL_EXCEPTIONS = {"ExerciseError", "AssertionError", "NotImplementedError", "ExerciseNotDone"}


class GradeInputError(ValueError):
    """Bad input to the grader (exit status 2)."""


@dataclass(frozen=True)
class Outcome:
    """The grade of one exercise in one submission."""

    status: str  # "pass", "fail", "error" or "flagged"
    detail: str = ""
    credit: float = 0.0  # the fraction of the points a "fail" still earns: the parts that are right

    @property
    def fraction(self) -> float:
        """The fraction of the exercise's points this outcome earns."""
        return 1.0 if self.status == "pass" else self.credit if self.status == "fail" else 0.0

    def text(self, width: int | None = None) -> str:
        text = self.status if not self.detail else f"{self.status}: {self.detail}"
        return text if width is None or len(text) <= width else text[: width - 3] + "..."


@dataclass
class Reference:
    """The notebook the submissions answer, in its student edition."""

    source: str
    notebook: dict
    labels: list[str]
    checkers: dict[str, str]  # label -> the checker cell's source

    @property
    def autograded(self) -> list[str]:
        return list(self.checkers)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``mmbook grade``'s arguments to ``parser``."""
    parser.add_argument("submissions", nargs="+", type=Path, metavar="SUBMISSION.ipynb",
                        help="student notebooks, or folders of them (searched recursively); they may answer "
                             "several notebooks of the book")
    parser.add_argument("--id-pattern", metavar="REGEX",
                        help="a regular expression with a group named 'student' that finds the student's ID in "
                             r"each submission's path, e.g. '(?P<student>[a-z]+\d+)_' (default: the file name)")
    parser.add_argument("--roster", type=Path, metavar="FILE",
                        help="the course's students, one ID per line (or a CSV with a 'student' column); the "
                             "gradebook lists who submitted nothing, and IDs not on it are refused")
    parser.add_argument("--csv", type=Path, metavar="FILE", help="also write the table to this CSV file")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write a gradebook: every submission's status, detail and points per exercise")
    parser.add_argument("--points", type=Path, metavar="FILE.json",
                        help='points per exercise, e.g. {"ex-cnn-nms": 2}; exercises it leaves out count 1')
    parser.add_argument("--feedback", type=Path, metavar="FOLDER",
                        help="also write one Markdown feedback file per submission into this folder")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"time limit for each whole notebook (default {DEFAULT_TIMEOUT})")
    parser.add_argument("--against", type=Path, metavar="NOTEBOOK.ipynb",
                        help="the book's notebook the submissions answer (default: the one each submission "
                             "names in its metadata, looked up in --book)")
    parser.add_argument("--book", type=Path, default=Path("book"), help="the book's folder (default: book)")
    parser.add_argument("--full", action="store_true", help="run in full mode instead of quick mode")
    parser.add_argument("--kernel", default="python3", help="the Jupyter kernel to run them in (default python3)")
    parser.add_argument("--checks", type=Path, metavar="FILE.py",
                        help="the instructor's graded checks: a Python file that registers a checker per exercise "
                             "with mmbook.exercises.register (default: the installed package's checkers)")
    parser.add_argument("--review", type=Path, metavar="FOLDER",
                        help="also write, per exercise graded by hand, one Markdown file with every student's answer "
                             "(FOLDER/<notebook>/<label>.md), to read all answers to one exercise together")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="grade N submissions at a time (default 1; each runs its own kernel)")
    parser.add_argument("--memory-gib", type=float, default=DEFAULT_MEMORY_GIB, metavar="GIB",
                        help=f"address-space limit of each submission's processes (default {DEFAULT_MEMORY_GIB:g})")
    parser.add_argument("--max-processes", type=int, default=DEFAULT_PROCESSES, metavar="N",
                        help=f"processes and threads each submission may start (default {DEFAULT_PROCESSES})")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run without bubblewrap even where it is installed (limits still apply)")


def build_parser(prog: str = "mmbook grade") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Execute submitted student notebooks and grade their autograded exercises.",
        epilog=f"WARNING: {WARNING}")
    add_arguments(parser)
    return parser


# --- input ---------------------------------------------------------------------------------------

def reference_from(path: Path, source: str | None = None) -> Reference:
    """The student edition of the notebook at ``path`` (a book notebook or its student edition)."""
    notebook = read_notebook_json(path)
    meta = notebook.get("metadata", {}).get("mmbook", {})
    if meta.get("edition") != EDITION:
        notebook, _ = student_notebook(notebook, source or meta.get("source") or path.name)
    source = notebook["metadata"]["mmbook"]["source"]
    checkers: dict[str, str] = {}
    for index, label in checker_cells(notebook, where=source):
        checkers.setdefault(label, cell_source(notebook["cells"][index]))
    return Reference(source, notebook, [e.label for e in exercises(notebook) if e.label], checkers)


def submission_files(paths: list[Path]) -> list[Path]:
    """The notebooks named, with each folder replaced by the ``.ipynb`` files under it (checkpoints left out)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        else:
            files.append(path)
    return files


def student_ids(paths: list[Path], pattern: str | None) -> dict[Path, str]:
    """Each submission's student ID: the ``student`` group of ``pattern`` in its path, else its file name's stem.

    Raises:
        GradeInputError: a bad pattern, or paths it does not match.
    """
    if pattern is None:
        return {path: path.stem for path in paths}
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise GradeInputError(f"--id-pattern {pattern!r} is not a regular expression ({error})") from None
    if "student" not in regex.groupindex:
        raise GradeInputError(f"--id-pattern {pattern!r} has no group named 'student', e.g. (?P<student>...)")
    ids, unmatched = {}, []
    for path in paths:
        found = regex.search(str(path))
        if found and found.group("student"):
            ids[path] = found.group("student")
        else:
            unmatched.append(str(path))
    if unmatched:
        raise GradeInputError(f"--id-pattern {pattern!r} finds no student ID in: {', '.join(unmatched[:5])}"
                              + (f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else ""))
    return ids


def read_roster(path: Path) -> list[str]:
    """Student IDs from a roster: one per line, or a CSV file with a ``student`` column.

    Raises:
        GradeInputError: the file is missing, empty, or a CSV without a ``student`` column.
    """
    if not path.is_file():
        raise GradeInputError(f"--roster {path}: no such file")
    text = path.read_text(encoding="utf-8-sig")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and "," in lines[0]:
        rows = list(csv.DictReader(io.StringIO(text)))
        if not rows or "student" not in rows[0]:
            raise GradeInputError(f"--roster {path}: a CSV roster needs a column named 'student'")
        ids = [row["student"].strip() for row in rows if (row.get("student") or "").strip()]
    else:
        ids = lines
    if not ids:
        raise GradeInputError(f"--roster {path} lists no students")
    return ids


def load_inputs(args: argparse.Namespace) -> list[tuple[Reference, list[tuple[Path, dict]]]]:
    """Read and check every submission, and find the notebook each answers.

    Returns the submissions grouped by the notebook they answer, in the order first seen.

    Raises:
        GradeInputError: with every problem found, one per line.
    """
    problems: list[str] = []
    submissions: list[tuple[Path, dict]] = []
    for path in submission_files(args.submissions):
        if not path.is_file():
            problems.append(f"{path}: no such file")
            continue
        try:
            submissions.append((path, read_notebook_json(path)))
        except ValueError as error:
            problems.append(str(error))
    if not problems and not submissions:
        problems.append(f"no notebooks in {', '.join(map(str, args.submissions))}")
    if problems:
        raise GradeInputError("\n".join(problems))
    references: dict[str, Reference] = {}
    groups: dict[str, list[tuple[Path, dict]]] = {}
    for path, notebook in submissions:
        try:
            if args.against is not None:
                key = str(args.against)
                if key not in references:
                    references[key] = reference_from(args.against)
            else:
                source = notebook.get("metadata", {}).get("mmbook", {}).get("source")
                if not source:
                    problems.append(f"{path} does not say which notebook of the book it answers (no metadata.mmbook."
                                    f"source: was it written by `make student`?); name it with --against "
                                    f"{args.book}/<chapter>/<notebook>.ipynb")
                    continue
                key = source
                if key not in references:
                    original = args.book / source
                    if not original.is_file():
                        problems.append(f"{path} answers {source}, which is not in {args.book}/; give the book's "
                                        "folder with --book or the notebook with --against")
                        continue
                    references[key] = reference_from(original, source)
        except (ValueError, MarkupError) as error:
            problems.append(str(error))
            continue
        reference = references[key]
        labels = [e.label for e in exercises(notebook) if e.label]
        if labels != reference.labels:
            problems.append(f"{path}: its exercises ({', '.join(labels) or 'none'}) do not match those of "
                            f"{reference.source} in this edition of the book ({', '.join(reference.labels) or 'none'}); "
                            "is it from another chapter or an older edition?")
            continue
        groups.setdefault(key, []).append((path, notebook))
    for key in groups:
        if not references[key].autograded:
            problems.append(f"{references[key].source} has no autograded exercises (no cell tagged '{CHECKER_TAG}'); "
                            "there is nothing to grade")
    if problems:
        raise GradeInputError("\n".join(problems))
    return [(references[key], group) for key, group in groups.items()]


# --- running -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CheckerCell:
    """One checker cell of a prepared submission: where it is and where its answers are saved."""

    index: int
    answer_file: Path


def prepare(notebook: dict, reference: Reference, answers: Path) -> tuple[dict, dict[str, list[CheckerCell]]]:
    """A copy of ``notebook`` ready to run: outputs cleared, the reference source in every checker
    cell, and after each one a cell that saves its answers into the folder ``answers``.

    Returns the copy and, per autograded label, its checker cells.
    """
    notebook = copy.deepcopy(notebook)
    cells: dict[str, list[CheckerCell]] = {label: [] for label in reference.autograded}
    prepared = []
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        prepared.append(cell)
        if cell["cell_type"] != "code" or CHECKER_TAG not in cell_tags(cell):
            continue
        label = checker_label(cell)
        if label not in cells:
            continue
        cell["source"] = reference.checkers[label]
        answer_file = answers / f"{label}.{len(cells[label])}.pkl"
        cells[label].append(CheckerCell(len(prepared) - 1, answer_file))
        prepared.append({"cell_type": "code", "execution_count": None, "metadata": {"tags": ["mmbook-grade-capture"]},
                         "outputs": [], "source": capture_source(reference.checkers[label], label, answer_file)})
    for cell in prepared:
        cell.pop("id", None)  # the added cells have none; nbformat gives every cell a fresh one
    notebook["cells"] = prepared
    notebook["nbformat_minor"] = min(int(notebook.get("nbformat_minor", 4)), 4)
    return notebook, cells


def graded_check(label: str, answer_file: Path, checks: Path | None, quick: bool, sandbox: Sandbox) -> Outcome:
    """The verdict of ``label``'s checker on the saved answers, in a fresh Python process in the sandbox
    (see :mod:`mmbook.course.judge`)."""
    folder = answer_file.parent
    command = [sys.executable, "-m", "mmbook.course.judge", label, str(answer_file)]
    if checks is not None:
        # A private copy: the sandbox hides the instructor's folder, and the notebook has ended.
        copied = folder / "graded-checks" / checks.name
        copied.parent.mkdir(exist_ok=True)
        shutil.copyfile(checks, copied)
        command += ["--checks", str(copied)]
    result = sandbox.run(command, folder, JUDGE_TIMEOUT, {"MMBOOK_QUICK": "1" if quick else "0"})
    if result.returncode is None:
        return Outcome("error", f"the graded check ran past its time limit of {JUDGE_TIMEOUT} s")
    try:
        verdict = json_line(result)
        return Outcome(str(verdict["status"]), str(verdict.get("detail", "")), float(verdict.get("credit", 0.0)))
    except (IndexError, ValueError, KeyError, TypeError):
        return Outcome("error", f"the graded check gave no verdict (exit status {result.returncode}: "
                                f"{last_error(result)})")


def execute(notebook: dict, timeout: float, kernel: str, quick: bool, sandbox: Sandbox, folder: Path
            ) -> tuple[str | None, list[str]]:
    """Run ``notebook`` in place in a fresh kernel in the sandbox, with ``folder`` as its private folder.

    Errors in cells do not stop it. Returns why it stopped (``None`` when it ran to the end:
    time limit, dead kernel) and what the sandbox saw (:func:`sandbox_events`).
    """
    source, output = folder / "submission.ipynb", folder / "executed.ipynb"
    source.write_text(json.dumps(notebook), encoding="utf-8")
    command = [sys.executable, "-m", "mmbook.course.execute", str(source), str(output), "--timeout", f"{timeout:g}",
               "--kernel", kernel, "--folder", str(folder / "work")]
    # The notebook's own limit ends it first; the sandbox's adds the kernel's start and shutdown.
    result = sandbox.run(command, folder, timeout + 180, {"MMBOOK_QUICK": "1" if quick else "0"})
    stopped = None
    if result.returncode is None:
        stopped = f"the notebook ran past the time limit of {timeout:g} s"
    try:
        executed = json.loads(output.read_text(encoding="utf-8"))
        notebook["cells"] = executed["cells"]
        try:
            stopped = json_line(result)["stopped"]
        except IndexError:  # the notebook was written but the runner printed no verdict: keep what we know
            pass
    except (OSError, ValueError, KeyError):
        stopped = stopped or (f"the notebook's runner failed (exit status {result.returncode}: "
                              f"{last_error(result)})")
    return stopped, ([stopped] if stopped else []) + result.events + sandbox_events(notebook)


#: What a confined submission's errors look like, and what the report says of them.
_SANDBOX_SIGNS = (
    ("Read-only file system", "tried to write outside its own folder (stopped: the file system is read-only)"),
    ("Network is unreachable", "tried to use the network (stopped: no network)"),
    ("Temporary failure in name resolution", "tried to use the network (stopped: no network)"),
    ("Resource temporarily unavailable", "reached the limit on processes (stopped: no new process)"),
    ("MemoryError", "reached the memory limit"),
    ("Cannot allocate memory", "reached the memory limit"),
)


def sandbox_events(notebook: dict) -> list[str]:
    """What a run's outputs show the sandbox stopped: writing outside, the network, processes, memory."""
    texts = []
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            texts.append(output.get("text", "") if isinstance(output.get("text"), str) else "".join(output.get("text", [])))
            texts.append(f"{output.get('ename', '')}: {output.get('evalue', '')}")
    found = []
    for sign, event in _SANDBOX_SIGNS:
        if any(sign in text for text in texts) and event not in found:
            found.append(event)
    return found


def json_line(result: SandboxResult | subprocess.CompletedProcess) -> dict:
    """The last JSON line a runner printed (its verdict). Raises IndexError when there is none."""
    return json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])


def last_error(result: SandboxResult | subprocess.CompletedProcess) -> str:
    """The first words of the last line a command wrote to stderr (why it failed)."""
    return _first_line(result.stderr.splitlines()[-1] if result.stderr.strip() else "")


def _first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def outcome_of(cell: dict, label: str, stopped: str | None) -> Outcome:
    """Read one executed checker cell's verdict."""
    outputs = cell.get("outputs", [])
    for output in outputs:
        if output.get("output_type") == "error":
            name, value = output.get("ename", "Error"), _first_line(output.get("evalue", ""))
            if name == "ExerciseNotDone":
                return Outcome("fail", "not done (the starter's ... is still there)")
            if name == "ExerciseError":
                return Outcome("fail", value[len(label) + 2:] if value.startswith(f"{label}: ") else value)
            status = "fail" if name in FAIL_EXCEPTIONS else "error"
            return Outcome(status, f"{name}: {value}" if value else name)
    if cell.get("execution_count") is None and not outputs:
        return Outcome("error", f"not run ({stopped})" if stopped else "not run")
    printed = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    if passed_line(label) in printed.splitlines():
        return Outcome("pass")
    return Outcome("error", f"not run ({stopped})" if stopped else "the checker printed no verdict")


def flags(notebook: dict, reference: Reference) -> dict[str, Outcome]:
    """The exercises a submission's tampering can affect, each with why (see :func:`mmbook.course.judge.tampering`).

    Tampering in a cell affects every exercise whose checker cell comes after it; an edited
    checker cell affects its own exercise.
    """
    checker_at = {label: [i for i, c in enumerate(notebook["cells"]) if c["cell_type"] == "code"
                          and CHECKER_TAG in cell_tags(c) and checker_label(c) == label]
                  for label in reference.autograded}
    flagged: dict[str, Outcome] = {}
    for found in tampering(notebook, reference.notebook, reference.checkers):
        affected = [found.label] if found.label else [
            label for label, indices in checker_at.items() if any(i > found.cell for i in indices)]
        for label in affected:
            flagged.setdefault(label, Outcome("flagged", f"{found.reason} (cell {found.cell})"))
    return flagged


def grade_one(notebook: dict, reference: Reference, timeout: float, kernel: str, quick: bool,
              checks: Path | None = None, sandbox: Sandbox | None = None
              ) -> tuple[dict[str, Outcome], list[str], dict[str, float]]:
    """Execute one submission in the sandbox and grade each autograded exercise (the graded checks run
    outside its kernel). Returns the outcome per exercise, what the sandbox saw, and the seconds the
    notebook and the graded checks took."""
    sandbox = sandbox if sandbox is not None else Sandbox()
    flagged = flags(notebook, reference)
    with tempfile.TemporaryDirectory(prefix="mmbook-grade-") as folder:
        answers = Path(folder) / "answers"
        answers.mkdir()
        prepared, cells = prepare(notebook, reference, answers)
        started = time.monotonic()
        stopped, events = execute(prepared, timeout, kernel, quick, sandbox, Path(folder))
        seconds = {"notebook": round(time.monotonic() - started, 1), "checks": 0.0}
        outcomes: dict[str, Outcome] = {}
        for label in reference.autograded:
            if label in flagged:
                outcomes[label] = flagged[label]
                continue
            if not cells[label]:
                outcomes[label] = Outcome("error", "the checker cell is missing; restore it from the student edition")
                continue
            verdicts = []
            for cell in cells[label]:
                in_kernel = outcome_of(prepared["cells"][cell.index], label, stopped)
                if not cell.answer_file.exists():
                    # the checker cell failed before check() returned, or never ran: the kernel says why
                    verdicts.append(in_kernel if in_kernel.status != "pass" else
                                    Outcome("error", "the answers were not saved after the checker cell"))
                    continue
                started = time.monotonic()
                verdicts.append(graded_check(label, cell.answer_file, checks, quick, sandbox))
                seconds["checks"] = round(seconds["checks"] + time.monotonic() - started, 1)
            outcomes[label] = next((v for v in verdicts if v.status != "pass"), verdicts[0])
    return outcomes, events, seconds


# --- exercises graded by hand -------------------------------------------------------------------

def answers_by_hand(notebook: dict, reference: Reference, label: str) -> str | None:
    """A submission's answer to ``label`` (an exercise without a checker): its answer cell and the cells the
    student added right after it, as Markdown; ``None`` when the answer cell is gone."""
    cells = notebook.get("cells", [])
    start = next((i for i, cell in enumerate(cells)
                  if cell.get("metadata", {}).get("mmbook", {}).get("answer") == label), None)
    if start is None:
        return None
    edition = {cell_source(cell) for cell in reference.notebook["cells"]}
    parts = []
    for index in range(start, len(cells)):
        cell = cells[index]
        if index > start and cell_source(cell) in edition:
            break
        text = cell_source(cell).strip()
        if cell["cell_type"] == "code" and text:
            parts.append(f"```python\n{text}\n```")
        elif text and text != cell_source(answer_cell(label)).strip():
            parts.append(text)
    return "\n\n".join(parts) if parts else ""


def write_review(folder: Path, reference: Reference, group: list[tuple[Path, dict]], ids: dict[Path, str]) -> list[Path]:
    """One ``<folder>/<notebook>/<label>.md`` per exercise graded by hand: the question, then every student's answer."""
    written = []
    questions = {e.label: cell_source(reference.notebook["cells"][e.cell]) for e in exercises(reference.notebook)}
    for label in [label for label in reference.labels if label not in reference.checkers]:
        lines = [f"# {label} ({reference.source}): every answer", "", questions.get(label, "").strip(), ""]
        for path, notebook in sorted(group, key=lambda item: ids[item[0]]):
            answer = answers_by_hand(notebook, reference, label)
            text = ("*(the answer cell was deleted from this notebook)*" if answer is None else
                    answer or "*(no answer written)*")
            lines += [f"## {ids[path]}", "", f"<!-- {path} -->", "", text, ""]
        path = folder / Path(reference.source).stem / f"{label}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines), encoding="utf-8")
        written.append(path)
    return written


# --- output --------------------------------------------------------------------------------------

def table(rows: list[tuple[str, dict[str, Outcome]]], labels: list[str], width: int = 36) -> str:
    """The grades as a plain-text table: one row per submission, one column per exercise, and a total."""
    header = ["submission", *labels, "total"]
    body = []
    for name, outcomes in rows:
        passed = sum(outcomes[label].status == "pass" for label in labels)
        body.append([name, *(outcomes[label].text(width) for label in labels), f"{passed}/{len(labels)}"])
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_csv(path: Path, books: list[dict], labels: list[str]) -> None:
    """Every graded submission as one CSV row: submission, student, notebook, one column per exercise of any
    notebook graded (status: detail; empty where the notebook has no such exercise), passed, out_of."""
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["submission", "student", "notebook", *labels, "passed", "out_of"])
        for book in books:
            for entry in book["submissions"]:
                results = entry["exercises"]
                cells = [Outcome(results[label]["status"], results[label]["detail"]).text() if label in results else ""
                         for label in labels]
                writer.writerow([entry["submission"], entry["student"], book["notebook"], *cells,
                                 sum(r["status"] == "pass" for r in results.values()), len(results)])


def read_points(path: Path | None, labels: list[str]) -> dict[str, float]:
    """Points per autograded exercise: 1 each, or the weights of the JSON object in ``path``.

    Raises:
        GradeInputError: for a file that is not a JSON object of non-negative numbers, or that names an
            exercise the notebook does not grade automatically.
    """
    points = {label: 1.0 for label in labels}
    if path is None:
        return points
    try:
        given = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise GradeInputError(f"--points {path}: cannot read it as JSON ({error}); write an object such as "
                              f'{{"{labels[0] if labels else "ex-label"}": 2}}') from None
    if not isinstance(given, dict):
        raise GradeInputError(f"--points {path}: expected a JSON object of exercise label -> points, got "
                              f"{type(given).__name__}")
    unknown = sorted(set(given) - set(labels))
    if unknown:
        raise GradeInputError(f"--points {path} names exercises this notebook does not grade automatically: "
                              f"{', '.join(unknown)}; its autograded exercises are {', '.join(labels)}")
    for label, value in given.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise GradeInputError(f"--points {path}: {label} has {value!r} points; give a number >= 0")
        points[label] = float(value)
    return points


def gradebook(rows: list[tuple[str, dict[str, Outcome]]], reference: Reference, points: dict[str, float],
              mode: str, events: dict[str, list[str]] | None = None, students: dict[str, str] | None = None) -> dict:
    """The grades as a JSON-ready dict: per submission, each exercise's status, detail and points awarded
    (its full points on ``pass``, the share of its parts that are right on a partly right answer, 0
    otherwise), the submission's score out of the total, and what the
    sandbox stopped (``events``, per submission)."""
    out_of = sum(points.values())
    entries = []
    for name, outcomes in rows:
        exercises_of = {label: {"status": outcomes[label].status, "detail": outcomes[label].detail,
                                "points": points[label] * outcomes[label].fraction,
                                "out_of": points[label]}
                        for label in reference.autograded}
        entries.append({"submission": name, "student": (students or {}).get(name, Path(name).stem), "score": sum(e["points"] for e in exercises_of.values()),
                        "out_of": out_of, "exercises": exercises_of, "sandbox": (events or {}).get(name, [])})
    return {"notebook": reference.source, "edition": EDITION, "mode": mode, "points": points, "out_of": out_of,
            "submissions": entries}


_FEEDBACK_STATUS = {"pass": "passed", "fail": "not yet right", "error": "did not run",
                    "flagged": "not graded: the notebook changes how it is graded"}


def feedback(entry: dict, notebook: str) -> str:
    """One submission's feedback as Markdown, from its :func:`gradebook` entry."""
    lines = [f"# Feedback on {Path(entry['submission']).name}", "",
             f"Notebook: {notebook}. Score: {entry['score']:g} / {entry['out_of']:g}.", ""]
    for label, result in entry["exercises"].items():
        lines.append(f"- **{label}** ({result['points']:g} / {result['out_of']:g}): {_FEEDBACK_STATUS[result['status']]}"
                     + (f". {result['detail']}" if result["detail"] else ""))
    if any(r["status"] == "flagged" for r in entry["exercises"].values()):
        lines += ["", "Exercises marked as not graded score 0 because the notebook's own code replaces or edits what "
                      "checks the answers; ask your instructor."]
    if entry.get("sandbox"):
        lines += ["", "While it ran, the notebook " + "; ".join(entry["sandbox"]) + "."]
    return "\n".join(lines) + "\n"


def course_gradebook(books: list[dict], mode: str, roster: list[str] | None) -> dict:
    """Several notebooks' gradebooks, and per student the score in each and in all (roster students who
    submitted nothing score 0)."""
    students: dict[str, dict] = {student: {"score": 0.0, "notebooks": {}} for student in roster or []}
    for book in books:
        for entry in book["submissions"]:
            record = students.setdefault(entry["student"], {"score": 0.0, "notebooks": {}})
            record["notebooks"][book["notebook"]] = entry["score"]
            record["score"] += entry["score"]
    out_of = sum(book["out_of"] for book in books)
    for record in students.values():
        record["out_of"] = out_of
        record["missing"] = [book["notebook"] for book in books if book["notebook"] not in record["notebooks"]]
    return {"edition": EDITION, "mode": mode, "out_of": out_of, "students": students, "notebooks": books}


def write_feedback(folder: Path, book: dict, several: bool = False, seen: set[str] | None = None) -> list[Path]:
    """One ``<student>.md`` per submission of ``book`` (a :func:`gradebook`) in ``folder``
    (``<student>-<notebook>.md`` when ``several`` notebooks are graded into one folder; ``seen``:
    the names already written in this run)."""
    folder.mkdir(parents=True, exist_ok=True)
    written, seen = [], set() if seen is None else seen
    for entry in book["submissions"]:
        stem = entry.get("student") or Path(entry["submission"]).stem
        if several:
            stem = f"{stem}-{Path(book['notebook']).stem}"
        name, n = stem, 2
        while name in seen:  # two submissions of the same name from different folders
            name, n = f"{stem}-{n}", n + 1
        seen.add(name)
        path = folder / f"{name}.md"
        path.write_text(feedback(entry, book["notebook"]), encoding="utf-8")
        written.append(path)
    return written


def run(args: argparse.Namespace) -> int:
    """Grade with parsed arguments (what ``main`` and the ``mmbook grade`` subcommand call)."""
    if not args.timeout > 0:
        print("error: --timeout must be a positive number of seconds", file=sys.stderr)
        return 2
    if args.checks is not None and not args.checks.is_file():
        print(f"error: --checks {args.checks}: no such file (the instructor's Python file of graded checks)",
              file=sys.stderr)
        return 2
    if args.checks is not None:
        args.checks = args.checks.resolve()
    try:
        groups = load_inputs(args)
        ids = student_ids([path for _, group in groups for path, _ in group], args.id_pattern)
        roster = read_roster(args.roster) if args.roster is not None else None
        if roster is not None:
            unknown = sorted({ids[path] for path in ids} - set(roster))
            if unknown:
                raise GradeInputError(f"submissions from students not on the roster {args.roster}: "
                                      f"{', '.join(unknown[:10])}; check --id-pattern or the roster")
        for reference, group in groups:
            seen: dict[str, Path] = {}
            for path, _ in group:
                if ids[path] in seen:
                    raise GradeInputError(f"{seen[ids[path]]} and {path} are both student {ids[path]}'s answer to "
                                          f"{reference.source}; keep one, or set --id-pattern")
                seen[ids[path]] = path
    except GradeInputError as error:
        for line in str(error).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 2
    try:
        import cloudpickle  # noqa: F401  (carries each answer out of the kernel)
        import ipykernel  # noqa: F401  (the kernel the notebooks run in)
        import nbclient  # noqa: F401
    except ImportError as error:
        print(f"error: mmbook grade needs nbclient, ipykernel and cloudpickle ({error}); install them with "
              "pip install 'mmbook[course]'", file=sys.stderr)
        return 2
    all_labels = list(dict.fromkeys(label for reference, _ in groups for label in reference.autograded))
    try:
        points = read_points(getattr(args, "points", None), all_labels)
    except GradeInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print(f"error: --jobs must be at least 1, got {args.jobs}", file=sys.stderr)
        return 2
    try:
        limits = Limits(memory_gib=args.memory_gib, processes=args.max_processes)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    hidden = {path.resolve().parent for _, group in groups for path, _ in group}
    if args.checks is not None:
        hidden.add(args.checks.parent)
    # Each submission's PyTorch gets its share of the cores: more threads than cores make OpenMP's
    # spinning threads wait on each other, and a notebook can then take ten times as long.
    threads = str(max(1, (os.cpu_count() or 1) // args.jobs))
    shares = {name: os.environ.get(name, threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    sandbox = Sandbox(limits, hide=tuple(hidden), use_bubblewrap=not args.no_sandbox, environment=shares)
    if sandbox.warning:
        print(f"WARNING: {sandbox.warning}", file=sys.stderr)
    else:
        print(f"sandbox: bubblewrap ({sandbox.bubblewrap}): no network, writes only in a private folder, "
              f"{limits.memory_gib:g} GiB and {limits.processes} processes per submission, "
              f"{shares['OMP_NUM_THREADS']} thread(s) each", file=sys.stderr)
    mode = "full" if args.full else "quick"
    for reference, group in groups:
        print(f"grading {len(group)} submission(s) of {reference.source} ({len(reference.autograded)} autograded "
              f"exercises, {mode} mode, {args.timeout:g} s per notebook, {args.jobs} at a time)", file=sys.stderr)

    def grade_submission(item: tuple[Reference, Path, dict]) -> tuple[dict[str, Outcome], list[str]]:
        reference, path, notebook = item
        started = time.monotonic()
        outcomes, events, seconds = grade_one(notebook, reference, args.timeout, args.kernel, quick=not args.full,
                                     checks=args.checks, sandbox=sandbox)
        passed = sum(o.status == "pass" for o in outcomes.values())
        noted = "".join(f"; {event}" for event in events)
        print(f"  {path}: {passed}/{len(outcomes)} in {time.monotonic() - started:.0f} s (notebook "
              f"{seconds['notebook']:.0f} s, graded checks {seconds['checks']:.0f} s){noted}", file=sys.stderr)
        return outcomes, events

    work = [(reference, path, notebook) for reference, group in groups for path, notebook in group]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        graded = dict(zip([(reference.source, path) for reference, path, _ in work], pool.map(grade_submission, work)))
    books = []
    for reference, group in groups:
        rows = [(str(path), graded[reference.source, path][0]) for path, _ in group]
        events = {str(path): graded[reference.source, path][1] for path, _ in group}
        if len(groups) > 1:
            print(f"\n{reference.source}")
        print(table(rows, reference.autograded))
        students = {str(path): ids[path] for path, _ in group}
        book = gradebook(rows, reference, {label: points[label] for label in reference.autograded}, mode, events,
                         students)
        if roster is not None:
            book["missing"] = [student for student in roster if student not in students.values()]
        books.append(book)
    if args.csv is not None:
        write_csv(args.csv, books, all_labels)
        print(f"wrote {args.csv}", file=sys.stderr)
    result = books[0] if len(books) == 1 else course_gradebook(books, mode, roster)
    if getattr(args, "json", None) is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
        print(f"wrote {args.json}", file=sys.stderr)
    if getattr(args, "review", None) is not None:
        reviews = [path for reference, group in groups for path in write_review(args.review, reference, group, ids)]
        print(f"wrote {len(reviews)} review file(s) to {args.review}", file=sys.stderr)
    if getattr(args, "feedback", None) is not None:
        names: set[str] = set()
        written = [path for book in books for path in write_feedback(args.feedback, book, len(books) > 1, names)]
        print(f"wrote {len(written)} feedback file(s) to {args.feedback}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``mmbook grade``'s entry point: parse ``argv`` and grade; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
