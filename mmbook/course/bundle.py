"""The instructor's bundle: ``python -m mmbook.course.bundle [instructor] [_build/instructor]`` (``make instructor``).

It writes, into a folder the instructor keeps private (not the published book, not the
student edition, not the package students install):

- ``graded_checks.py``: the graded checks of ``instructor/graded_checks.py`` with a random
  ``COURSE_SEED``, so the extra cases they draw are this course's own; grade with
  ``mmbook grade SUBMISSIONS... --checks <folder>/graded_checks.py``;
- ``answer-key.md`` and ``answer-key.html``: every exercise and concept question of the book
  with its solution, by notebook (the published book keeps its solutions for self-learners;
  this key is for an instructor whose students use the student edition);
- ``rubrics.md``: for each exercise graded by hand (no checker), the question, the reference
  answer and a scale, to grade the files ``mmbook grade --review`` writes;
- ``otter/<chapter>/<notebook>/``: an otter-grader master notebook per book notebook, with the
  graded checks as hidden tests (:mod:`mmbook.course.otter`), for a course that runs on
  otter-grader or Gradescope;
- ``README.md``: how to grade with it.

Run it again for a new seed (e.g. each term); ``--seed N`` fixes one.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sys
from pathlib import Path

SEED_LINE = re.compile(r"^COURSE_SEED = \d+$", re.M)

README = """# Instructor bundle (keep private)

Written by `make instructor`. Do not publish this folder or
give it to students: `graded_checks.py` holds the graded checks and this course's seed.

Also here: `answer-key.md` / `answer-key.html` (every exercise with its solution) and
`rubrics.md` (the exercises graded by hand, with reference answers and a scale).

Grade the returned notebooks with mmbook (files or folders, one or several chapters):

    mmbook grade submissions/*.ipynb --checks {folder}/graded_checks.py \\
        --json gradebook.json --csv grades.csv --feedback feedback/ --review review/ --jobs 2

The graded checks fail answers that use what their exercise forbids (PyTorch's convolution,
LSTM cell and attention, torchvision's IoU and NMS, the book's InfoNCE and recall@K, a GMU without
its gate), and
test further cases drawn from COURSE_SEED = {seed}. Exercises they do not list keep the
package's checks. See the course map ("Student edition and grading") for the whole workflow.

Or run the course on otter-grader 7 (and Gradescope): `otter/` holds a master notebook per
book notebook, beside a copy of `graded_checks.py` and a `requirements.txt`. In one of its
folders, `otter assign <notebook>.ipynb dist` writes the student notebook (`dist/student`)
and the autograder zip (`dist/autograder`); each autograded exercise has a public test
worth 0 points (the formative check) and a hidden one worth the exercise's points (the
graded check, run in a fresh Python process). Exercises graded by hand are otter's manual
questions.
"""


def answer_key(book: Path) -> tuple[str, str]:
    """The book's answer key and the rubrics of its exercises graded by hand, as Markdown."""
    from mmbook.course.markup import (cell_source, checker_cells, concept_questions, directive_body, exercises,
                                      inline_solution, solutions_by_label, unfolded_source)
    from mmbook.course.student import book_notebooks

    key = ["# Answer key (instructors only)", "",
           "Every exercise and concept question of the book with its solution. Autograded exercises say "
           "which checker grades them.", ""]
    rubrics = ["# Rubrics for the exercises graded by hand (instructors only)", "",
               "Points: 1 per exercise unless your points file says otherwise. Scale: full marks for an answer "
               "that reaches the reference answer's conclusion and supports it with a number the notebook "
               "produced or a correct argument; half for the right conclusion without support, or a sound "
               "method with a wrong conclusion; none otherwise.", ""]
    for path in book_notebooks(book):
        notebook = json.loads(path.read_text(encoding="utf-8"))
        where = str(path.relative_to(book))
        solutions = solutions_by_label(notebook, where)
        graded = {label for _, label in checker_cells(notebook, where=where)}
        found = exercises(notebook) + concept_questions(notebook)
        if not found:
            continue
        key += [f"## {where}", ""]
        manual = []
        for exercise in sorted(found, key=lambda e: e.cell):
            question = cell_source(notebook["cells"][exercise.cell])
            inline = inline_solution(question, exercise.label)
            answer = [inline] if inline else []
            for cell in solutions.get(exercise.label, []):
                text = unfolded_source(cell).strip()
                if text:
                    answer.append(f"```python\n{text}\n```" if cell["cell_type"] == "code" else text)
            block = [f"### {exercise.title or exercise.label} ({exercise.label})", "",
                     directive_body(question, exercise.label), "",
                     "**Solution.**", "", "\n\n".join(answer) or "*(the solution is in the question's cell)*", ""]
            if exercise.label in graded:
                block.insert(-1, f"\nAutograded: `check(\"{exercise.label}\", ...)`.")
            key += block
            if exercise.label not in graded and not exercise.label.startswith("cu-"):
                manual += block
        if manual:
            rubrics += [f"## {where}", ""] + manual
    return "\n".join(key) + "\n", "\n".join(rubrics) + "\n"


def build(source: Path, output: Path, seed: int | None = None, book: Path | None = None) -> list[Path]:
    """Write the bundle from the folder ``source`` (the repository's ``instructor/``) into ``output``;
    ``book``: the book's folder for the answer key and rubrics (default: ``book`` beside ``source``).

    Raises:
        FileNotFoundError: ``source`` has no ``graded_checks.py``.
        ValueError: its ``COURSE_SEED = <int>`` line is missing.
    """
    checks = Path(source) / "graded_checks.py"
    if not checks.is_file():
        raise FileNotFoundError(f"{checks} not found: give the repository's instructor/ folder")
    text = checks.read_text(encoding="utf-8")
    if not SEED_LINE.search(text):
        raise ValueError(f"{checks} has no line 'COURSE_SEED = <integer>' to set the course's seed in")
    seed = secrets.randbelow(2**31) if seed is None else int(seed)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    written = [output / "graded_checks.py", output / "README.md"]
    written[0].write_text(SEED_LINE.sub(f"COURSE_SEED = {seed}", text, count=1), encoding="utf-8")
    written[1].write_text(README.format(folder=output, seed=seed), encoding="utf-8")
    book = Path(book) if book is not None else Path(source).resolve().parent / "book"
    if book.is_dir():
        key, rubrics = answer_key(book)
        written += [output / "answer-key.md", output / "rubrics.md"]
        written[2].write_text(key, encoding="utf-8")
        written[3].write_text(rubrics, encoding="utf-8")
        from mmbook.course.otter import export

        written += export(book, output / "otter", written[0])
        try:
            from markdown_it import MarkdownIt
        except ImportError:  # the book's extras bring it; without them the Markdown key is enough
            pass
        else:
            page = MarkdownIt("commonmark").enable("table").render(key)
            written.append(output / "answer-key.html")
            written[-1].write_text("<!doctype html><meta charset='utf-8'><title>Answer key (instructors only)</title>"
                                   "<style>body{max-width:50em;margin:auto;font-family:sans-serif}"
                                   "pre{background:#f4f4f4;padding:.5em;overflow:auto}</style>\n" + page,
                                   encoding="utf-8")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmbook.course.bundle", description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, default=Path("instructor"),
                        help="the repository's instructor/ folder (default: instructor)")
    parser.add_argument("output", nargs="?", type=Path, default=Path("_build/instructor"),
                        help="where to write the bundle (default: _build/instructor)")
    parser.add_argument("--seed", type=int, help="the course's seed (default: a random one)")
    parser.add_argument("--book", type=Path, help="the book's folder (default: book beside SOURCE)")
    args = parser.parse_args(argv)
    try:
        written = build(args.source, args.output, args.seed, args.book)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    print("Keep this folder private: it holds the graded checks.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
