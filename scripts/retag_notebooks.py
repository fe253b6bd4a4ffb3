"""Move notebook markers into cell tags and put each chapter's title first. Idempotent.

Usage::

    python scripts/retag_notebooks.py book/**/*.ipynb       # rewrite in place
    python scripts/retag_notebooks.py --check book/**/*.ipynb  # change nothing; exit 1 if a notebook would change

For every notebook:

1. A code cell whose first line is ``# NBVAL_CHECK_OUTPUT`` loses that line and gets the
   cell tag ``nbval-check-output`` instead, which nbval reads the same way; the rendered
   book then no longer shows the marker.
2. The Colab install cell gets the tag ``remove-input`` (it prints nothing, so the page
   shows nothing of it) and the environment-report cell ``hide-input`` (its one line of
   output, with device and mode, stays visible). Both stay runnable in Jupyter and Colab.
3. The first markdown cell, which holds the chapter's label and title, moves above those
   two cells, so that a page opens with its title.

Cell ids, sources and metadata are otherwise kept; outputs are not touched.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from notebook_execution import CHECK_MARKER, CHECK_TAG  # noqa: E402
INSTALL_TAG = "remove-input"
REPORT_TAG = "hide-input"


def is_install_cell(cell) -> bool:
    return cell.cell_type == "code" and '"google.colab" in sys.modules' in cell.source


def is_report_cell(cell) -> bool:
    return cell.cell_type == "code" and "print(environment_report())" in cell.source


def is_title_cell(cell) -> bool:
    return cell.cell_type == "markdown" and any(line.startswith("# ") for line in cell.source.splitlines())


def add_tag(cell, tag: str) -> bool:
    """Add ``tag`` to the cell's tags; return whether it was missing."""
    tags = cell.metadata.setdefault("tags", [])
    if tag in tags:
        return False
    tags.append(tag)
    return True


def retag(notebook) -> list[str]:
    """Apply the three changes to ``notebook`` in place; return what was changed, in words."""
    changes = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        first, _, rest = cell.source.partition("\n")
        if first.strip() == CHECK_MARKER:
            cell.source = rest
            add_tag(cell, CHECK_TAG)
            changes.append(f"cell {index}: {CHECK_MARKER} -> tag {CHECK_TAG}")

    code = [i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
    if len(code) < 2 or not is_install_cell(notebook.cells[code[0]]) or not is_report_cell(notebook.cells[code[1]]):
        raise ValueError("the first two code cells are not the Colab install cell and the environment report; "
                         "copy them from an existing notebook")
    install, report = code[0], code[1]
    if add_tag(notebook.cells[install], INSTALL_TAG):
        changes.append(f"install cell: tag {INSTALL_TAG}")
    if add_tag(notebook.cells[report], REPORT_TAG):
        changes.append(f"environment report: tag {REPORT_TAG}")

    titles = [i for i, cell in enumerate(notebook.cells) if is_title_cell(cell)]
    if not titles:
        raise ValueError("no markdown cell with a '# ' title")
    title = titles[0]
    if title > install:
        notebook.cells.insert(install, notebook.cells.pop(title))
        changes.append(f"title cell moved from position {title} to {install}")
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if any notebook would change")
    args = parser.parse_args(argv)
    pending = 0
    for path in args.notebooks:
        notebook = nbformat.read(path, as_version=4)
        try:
            changes = retag(notebook)
        except ValueError as error:
            print(f"{path}: {error}", file=sys.stderr)
            return 2
        if changes and not args.check:
            nbformat.write(notebook, path)
        pending += bool(changes)
        verb = "would change" if args.check else "changed"
        print(f"{path}: {verb}: {'; '.join(changes)}" if changes else f"{path}: up to date")
    return 1 if args.check and pending else 0


if __name__ == "__main__":
    sys.exit(main())
