"""Execute notebooks in quick mode, record checked outputs, and strip all outputs.

Usage::

    python scripts/record_expected_outputs.py book/ch10_worked_example/worked_example.ipynb [...]
    python scripts/record_expected_outputs.py --strip-only NOTEBOOK [...]

For every cell tagged ``nbval-check-output`` (or, in notebooks not yet converted by
``scripts/retag_notebooks.py``, starting with a ``# NBVAL_CHECK_OUTPUT`` line) the text it
printed is stored in ``metadata["mmbook"]["expected_output"]``; the notebook tests
(``pytest --run-notebooks``) compare it with what the cell prints.
Then every output and execution count is removed, so the notebook is committed
clean, as the book and the tests expect, and every cell inside a gated solution is folded
for JupyterLab (``mmbook.course.markup.fold_solutions``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from notebook_execution import execute, is_checked_cell, printed_text  # noqa: E402  (one definition of a checked cell)
from mmbook.course.markup import fold_solutions  # noqa: E402


def strip(notebook) -> None:
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
    # Progress bars leave ipywidgets state behind; it is output too.
    notebook.metadata.pop("widgets", None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--strip-only", action="store_true", help="only remove outputs; execute nothing")
    args = parser.parse_args()
    os.environ["MMBOOK_QUICK"] = "1"
    for path in args.notebooks:
        notebook = nbformat.read(path, as_version=4)
        if not args.strip_only:
            notebook, _, error = execute(path, timeout=3600)  # as the notebook tests and the book run it
            if error is not None:
                raise SystemExit(f"{path} stopped with an error; nothing was recorded:\n{error}")
            for cell in notebook.cells:
                if cell.cell_type == "code" and is_checked_cell(cell):
                    try:
                        printed = printed_text(cell)
                    except ValueError as error:
                        raise SystemExit(f"{path}: {error}") from None
                    cell.metadata.setdefault("mmbook", {})["expected_output"] = printed
        strip(notebook)
        fold_solutions(notebook, where=str(path))
        nbformat.write(notebook, path)
        print(f"{path}: {'stripped' if args.strip_only else 'recorded and stripped'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
