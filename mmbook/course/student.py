"""Write the student edition of the book's notebooks: solutions cut out, starter cells kept.

Usage::

    python -m mmbook.course.student book _build/student              # or: make student
    python -m mmbook.course.student --tree . _build/student-book     # the HTML book's sources (make book-student)

For every ``book/<chapter>/<notebook>.ipynb`` it writes ``_build/student/<chapter>/<notebook>.ipynb``:

- every gated solution (``{solution-start}`` … ``{solution-end}``, markdown and code cells)
  and every ``{solution}`` directive is removed, "Check your understanding" answers included;
- ``starter`` cells stay, without the tags that hide them in the instructor's book;
- each exercise without a checker (graded by hand) gets an answer cell after its question
  (and starter cells): a markdown cell tagged ``answer`` with ``metadata.mmbook.answer`` set
  to its label, which ``mmbook grade --review`` collects;
- ``checker`` cells stay, so an unfinished exercise stops with one line,
  ``NotImplementedError: exercise ex-... : replace the ... with your code``; they are
  tagged ``raises-exception``, so the notebook tests and the book's execution run past them;
- everything else (the Colab install cell, the environment cell, the chapter) stays as it is;
- outputs are cleared, and the notebook's metadata records ``mmbook.edition = "student"``, its
  source path, its exercise labels and its autograded labels (``mmbook grade`` checks them).

The same source gives the same bytes. Other files in the chapter folders are copied.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mmbook.course.markup import (ANSWER_TAG, CHECKER_TAG, STARTER_SOURCE_TAGS, STARTER_TAG, MarkupError, cell_source, cell_tags,
                                  checker_cells, exercises, strip_solutions)

EDITION = "student"
#: The tag that lets a cell raise without stopping the notebook tests or the book's execution (nbclient, MyST-NB).
RAISES_TAG = "raises-exception"


@dataclass
class BuildReport:
    """What :func:`build` wrote."""

    notebooks: list[Path] = field(default_factory=list)
    solutions_removed: int = 0
    starter_cells: int = 0
    autograded: int = 0
    exercises: int = 0


def read_notebook_json(path: Path) -> dict:
    """Read ``path`` as a notebook (plain JSON, nbformat 4).

    Raises:
        ValueError: the file is not JSON or not an nbformat-4 notebook, saying which.
    """
    try:
        notebook = json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not a Jupyter notebook (not UTF-8 text: {error.reason})") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not a Jupyter notebook (not JSON: {error.msg} at line {error.lineno})") from None
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list) or notebook.get("nbformat") != 4:
        raise ValueError(f"{path} is not a Jupyter notebook (expected JSON with nbformat 4 and a list of cells)")
    for index, cell in enumerate(notebook["cells"]):
        if not isinstance(cell, dict) or "cell_type" not in cell or "source" not in cell:
            raise ValueError(f"{path} is not a Jupyter notebook (cell {index} has no cell_type or source)")
        if isinstance(cell["source"], list):  # stored as lines; work with one string, as nbformat does
            cell["source"] = "".join(cell["source"])
    return notebook


def dumps_notebook(notebook: dict) -> str:
    """The notebook as text, formatted as nbformat writes it (sources as lines, sorted keys, indent 1, final newline)."""
    notebook = dict(notebook)
    notebook["cells"] = [dict(cell, source=cell["source"].splitlines(keepends=True))
                         if isinstance(cell.get("source"), str) else cell for cell in notebook["cells"]]
    return json.dumps(notebook, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


#: What the book says of its concept questions, and what the student edition, which removes their answers, says instead.
FOLDED_ANSWERS = ("each answer is folded below its question", "your instructor has the answers")


def student_notebook(notebook: dict, source: str) -> tuple[dict, int]:
    """The student edition of one notebook, and the number of solution pieces removed.

    Args:
        notebook: the source notebook (nbformat 4 as a dict); not modified.
        source: its path relative to the book folder (recorded in the metadata).

    Raises:
        MarkupError: broken solution markup, a checker for an exercise the notebook does not have.
    """
    stripped = strip_solutions(notebook["cells"], where=source)
    cells = []
    for cell in stripped.cells:
        cell = copy.deepcopy(cell)
        metadata = cell.setdefault("metadata", {})
        metadata.pop("execution", None)
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        elif cell["cell_type"] == "markdown" and FOLDED_ANSWERS[0] in cell_source(cell):
            cell["source"] = cell_source(cell).replace(*FOLDED_ANSWERS)
        tags = cell_tags(cell)
        if STARTER_TAG in tags:
            tags = [tag for tag in tags if tag not in STARTER_SOURCE_TAGS]
        if CHECKER_TAG in tags and RAISES_TAG not in tags:
            tags.append(RAISES_TAG)  # an unfinished exercise stops here; the notebook tests and the book build go on
        if tags:
            metadata["tags"] = tags
        else:
            metadata.pop("tags", None)
        cells.append(cell)
    result = {key: copy.deepcopy(value) for key, value in notebook.items() if key != "cells"}
    result["cells"] = cells
    labels = [exercise.label for exercise in exercises(result) if exercise.label]
    autograded = []
    for index, label in checker_cells(result, where=source):
        if label not in labels:
            raise MarkupError(f"{source}: the checker cell {index} checks {label!r}, which is not an exercise of this "
                              f"notebook (its exercises: {', '.join(labels) or 'none'})")
        if label not in autograded:
            autograded.append(label)
    result["cells"] = with_answer_cells(result["cells"], result, [label for label in labels if label not in autograded])
    metadata = result.setdefault("metadata", {})
    metadata.pop("widgets", None)
    metadata["mmbook"] = {"edition": EDITION, "source": source, "exercises": labels, "autograded": autograded}
    return result, len(stripped.removed)


def answer_cell(label: str) -> dict:
    """The markdown cell where a student writes the answer to ``label``, an exercise graded by hand."""
    return {"cell_type": "markdown", "metadata": {"tags": [ANSWER_TAG], "mmbook": {"answer": label}},
            "source": f"**Your answer to {label}.** Write it in this cell (double-click to edit); put any code in "
                      "cells right below it."}


def with_answer_cells(cells: list[dict], notebook: dict, labels: list[str]) -> list[dict]:
    """``cells`` with an :func:`answer_cell` after the question (and its starter cells) of each of ``labels``."""
    at: dict[int, list[str]] = {}
    for exercise in exercises(notebook):
        if exercise.label in labels:
            at.setdefault(exercise.cell, []).append(exercise.label)
    result: list[dict] = []
    pending: list[str] = []
    for index, cell in enumerate(cells):
        if pending and not (cell["cell_type"] == "code" and STARTER_TAG in cell_tags(cell)):
            result += [answer_cell(label) for label in pending]
            pending = []
        result.append(cell)
        pending += at.get(index, [])
    return result + [answer_cell(label) for label in pending]


def book_notebooks(book: Path) -> list[Path]:
    """The notebooks under ``book``, sorted, without checkpoints and build folders."""
    return sorted(path for path in Path(book).rglob("*.ipynb")
                  if not {".ipynb_checkpoints", "_build"} & set(path.relative_to(book).parts))


def build(book: Path, out: Path) -> BuildReport:
    """Write the student edition of every notebook under ``book`` into ``out`` (same relative paths).

    Notebooks in ``out`` that no longer have a source are deleted, so ``out`` mirrors ``book``.

    Raises:
        FileNotFoundError: ``book`` is not a folder of notebooks.
        MarkupError: a notebook's exercise markup is broken (nothing is written then).
    """
    book, out = Path(book), Path(out)
    sources = book_notebooks(book) if book.is_dir() else []
    if not sources:
        raise FileNotFoundError(f"no notebooks under {book}; give the book's folder, e.g. `book`")
    report = BuildReport()
    editions = {}
    for path in sources:
        relative = path.relative_to(book).as_posix()
        notebook = read_notebook_json(path)
        edition, removed = student_notebook(notebook, relative)
        editions[relative] = edition
        report.solutions_removed += removed
        report.starter_cells += sum(STARTER_TAG in cell_tags(c) for c in notebook["cells"])
        report.autograded += len(edition["metadata"]["mmbook"]["autograded"])
        report.exercises += len(exercises(notebook))
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.rglob("*.ipynb"):
        if stale.relative_to(out).as_posix() not in editions:
            stale.unlink()
    for relative, edition in editions.items():
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        text = dumps_notebook(edition)
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
        report.notebooks.append(target)
    for path in sorted(book.rglob("*")):  # figures and data files beside the chapters
        relative = path.relative_to(book)
        if (path.is_file() and path.suffix != ".ipynb" and len(relative.parts) > 1
                and not {".ipynb_checkpoints", "_build"} & set(relative.parts)):
            (out / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, out / relative)
    return report


#: What a book's source tree holds besides ``book/``: copied as they are into the student tree.
TREE_FILES = ("_config.yml", "_toc.yml")
TREE_SUFFIXES = (".bib",)
TREE_FOLDERS = ("_static", "_templates")
REMOVE_OUTPUT_TAG = "remove-output"
#: Pages for instructors only, relative to the book folder: left out of the student tree and its table of contents.
INSTRUCTOR_PAGES = ("course_map.md",)
_LABEL_LINE = re.compile(r"^\((?P<label>[\w-]+)\)=\s*$", re.MULTILINE)


def _without_instructor_pages(toc: object, removed: set[str]) -> object:
    """``toc`` (parsed ``_toc.yml``) without the entries whose ``file`` is in ``removed`` (paths without suffix)."""
    if isinstance(toc, list):
        return [_without_instructor_pages(entry, removed) for entry in toc
                if not (isinstance(entry, dict) and entry.get("file") in removed)]
    if isinstance(toc, dict):
        return {key: _without_instructor_pages(value, removed) for key, value in toc.items()}
    return toc


def _unlink_labels(text: str, labels: set[str]) -> str:
    """``text`` with every ``{ref}`` to one of ``labels`` replaced by its words (the page it named is not there)."""
    def words(match: re.Match) -> str:
        inner = match["inner"]
        explicit = re.fullmatch(r"(?P<title>.*?)\s*<(?P<label>[\w-]+)>", inner, re.DOTALL)
        label = explicit["label"] if explicit else inner.strip()
        if label not in labels:
            return match[0]
        return explicit["title"] if explicit else "the course map for instructors"

    return re.sub(r"\{ref\}`(?P<inner>[^`]+)`", words, text)


def config_paths(config: Path) -> list[str]:
    """Files and folders a Jupyter Book's ``_config.yml`` names that the build needs besides the pages:
    ``sphinx.local_extensions`` folders, ``bibtex_bibfiles``, the logo and the favicon (relative paths only)."""
    import yaml

    settings = yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}
    sphinx = settings.get("sphinx") or {}
    paths = list((sphinx.get("local_extensions") or {}).values())
    paths += list(settings.get("bibtex_bibfiles") or [])
    paths += [settings.get("logo"), (settings.get("html") or {}).get("favicon")]
    return sorted({str(p) for p in paths if isinstance(p, str) and p and not Path(p).is_absolute()
                   and ".." not in Path(p).parts})


def build_tree(root: Path, out: Path, book_folder: str = "book") -> BuildReport:
    """Write a copy of the Jupyter Book at ``root`` whose notebooks are the student edition.

    ``out`` gets ``_config.yml``, ``_toc.yml``, the ``.bib`` files, ``_static``/``_templates``, what
    the configuration names (:func:`config_paths`: local Sphinx extensions, the logo, ...) and
    ``<book_folder>/`` with every notebook replaced by its student edition; checker
    cells also get the ``remove-output`` tag, so the HTML page shows the call but not the
    ``NotImplementedError`` it raises. Build it with ``jupyter-book build OUT``.

    Raises:
        FileNotFoundError: ``root`` has no ``_config.yml``/``_toc.yml`` or no notebooks.
    """
    root, out = Path(root), Path(out)
    for name in TREE_FILES:
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root} is not a Jupyter Book: it has no {name}")
    out.mkdir(parents=True, exist_ok=True)
    instructor = {f"{book_folder}/{page}" for page in INSTRUCTOR_PAGES if (root / book_folder / page).is_file()}
    instructor_labels = {m["label"] for page in instructor for m in _LABEL_LINE.finditer((root / page).read_text(encoding="utf-8"))}
    for path in sorted(root.iterdir()):
        if path.is_file() and path.name == "_toc.yml" and instructor:
            import yaml

            toc = yaml.safe_load(path.read_text(encoding="utf-8"))
            toc = _without_instructor_pages(toc, {str(Path(page).with_suffix("")) for page in instructor})
            (out / path.name).write_text(yaml.safe_dump(toc, sort_keys=False), encoding="utf-8")
        elif path.is_file() and (path.name in TREE_FILES or path.suffix in TREE_SUFFIXES):
            shutil.copyfile(path, out / path.name)
        elif path.is_dir() and path.name in TREE_FOLDERS:
            shutil.copytree(path, out / path.name, dirs_exist_ok=True)
    for relative in config_paths(root / "_config.yml"):
        source, target = root / relative, out / relative
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "_build", ".ipynb_checkpoints"))
        elif source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    report = build(root / book_folder, out / book_folder)
    for path in sorted((root / book_folder).glob("*")):  # the pages at the top of the book folder (preface, ...)
        if path.is_file() and path.suffix != ".ipynb" and f"{book_folder}/{path.name}" not in instructor:
            text = path.read_text(encoding="utf-8") if path.suffix == ".md" else None
            if text is not None and instructor_labels:
                (out / book_folder / path.name).write_text(_unlink_labels(text, instructor_labels), encoding="utf-8")
            else:
                shutil.copyfile(path, out / book_folder / path.name)
        elif path.is_file() and f"{book_folder}/{path.name}" in instructor:
            (out / book_folder / path.name).unlink(missing_ok=True)
    for target in report.notebooks:
        notebook = read_notebook_json(target)
        changed = False
        for cell in notebook["cells"]:
            tags = cell.get("metadata", {}).get("tags", [])
            if CHECKER_TAG in tags and REMOVE_OUTPUT_TAG not in tags:
                tags.append(REMOVE_OUTPUT_TAG)
                changed = True
        if changed:
            target.write_text(dumps_notebook(notebook), encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmbook.course.student",
                                     description="Write the student edition of the book's notebooks (solutions removed).")
    parser.add_argument("book", type=Path, help="the book's folder, e.g. book (with --tree: the repository, e.g. .)")
    parser.add_argument("out", type=Path, help="where to write the student notebooks, e.g. _build/student")
    parser.add_argument("--tree", action="store_true",
                        help="write a whole Jupyter Book source tree (config, toc, bibliography, book/) with the "
                             "student notebooks, for `jupyter-book build OUT` (make book-student)")
    args = parser.parse_args(argv)
    try:
        report = build_tree(args.book, args.out) if args.tree else build(args.book, args.out)
    except (FileNotFoundError, MarkupError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {len(report.notebooks)} student notebooks to {args.out}: {report.solutions_removed} solution "
          f"pieces removed, {report.starter_cells} starter cells, {report.autograded} of {report.exercises} "
          f"exercises autograded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
