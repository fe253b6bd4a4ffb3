"""Run one book notebook as the book build does, check its checked cells, and cache it.

One definition, used by three callers:

- the notebook tests (``pytest --run-notebooks``, the root ``conftest.py``), which run
  every notebook in quick mode, fail on an error or on a checked cell whose output
  changed, and, with ``--notebook-cache``, store the executed notebook in the quick
  book's execution cache, so that ``make book-quick`` after ``make test`` only renders;
- ``scripts/prefill_book_cache.py``, which fills that cache several notebooks at a time;
- ``scripts/record_expected_outputs.py``, which records what the checked cells print.

A *checked cell* carries the cell tag ``nbval-check-output`` (the tag nbval reads; older
notebooks start the cell with a ``# NBVAL_CHECK_OUTPUT`` line instead). Its expected
output is the text it prints to stdout, kept in ``metadata["mmbook"]["expected_output"]``;
it may print nothing else (no stderr, no displayed value).

Execution is jupyter-cache's own (``single_nb_execution``, nbclient underneath), with the
notebook's folder as the working directory and ``meta_override`` as MyST-NB sets it, so
the notebook stored in the cache is the one the build would have made.
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import nbformat

CHECK_TAG = "nbval-check-output"
CHECK_MARKER = "# NBVAL_CHECK_OUTPUT"


def is_checked_cell(cell: dict) -> bool:
    """True for a code cell whose output is compared: the cell tag, or the older first-line comment."""
    source = cell.get("source", "")
    source = "".join(source) if isinstance(source, list) else source
    return (CHECK_TAG in cell.get("metadata", {}).get("tags", [])
            or source.partition("\n")[0].strip() == CHECK_MARKER)


def printed_text(cell: dict) -> str:
    """What an executed checked cell printed to stdout.

    Raises ``ValueError`` if it produced anything else: stderr, a displayed value or an error.
    """
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream" and output.get("name") == "stdout":
            parts.append(output["text"])
        else:
            kind = output.get("name") if output.get("output_type") == "stream" else output.get("output_type")
            raise ValueError(f"a cell tagged {CHECK_TAG} may only print to stdout; it produced {kind}:\n"
                             f"{cell.get('source', '')}")
    return "".join(parts)


def execute(path: Path, timeout: int = 1200) -> tuple[nbformat.NotebookNode, float, BaseException | None]:
    """Run the notebook at ``path`` in its own folder, as the book build does.

    Returns ``(executed notebook, seconds, error or None)``. Cells tagged
    ``raises-exception`` may raise; any other error stops the run and is returned.
    """
    from jupyter_cache.executors.utils import single_nb_execution

    notebook = nbformat.read(path, as_version=4)
    result = single_nb_execution(notebook, cwd=str(Path(path).parent), timeout=timeout, allow_errors=False,
                                 meta_override=True)
    return notebook, result.time, result.err


def output_mismatches(notebook: nbformat.NotebookNode) -> list[str]:
    """For each checked cell of an executed notebook whose output is not the recorded one, what differs."""
    import difflib

    problems = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code" or not is_checked_cell(cell):
            continue
        expected = cell.get("metadata", {}).get("mmbook", {}).get("expected_output")
        if expected is None:
            problems.append(f"code cell {index} is tagged {CHECK_TAG} but has no metadata.mmbook.expected_output; "
                            "record it with `python scripts/record_expected_outputs.py NOTEBOOK`")
            continue
        try:
            printed = printed_text(cell)
        except ValueError as error:
            problems.append(f"cell {index}: {error}")
            continue
        if printed != expected:
            diff = "\n".join(difflib.unified_diff(expected.splitlines(), printed.splitlines(), "recorded", "printed",
                                                  lineterm=""))
            problems.append(f"cell {index} printed other text than recorded "
                            f"(if the change is intended, record it with scripts/record_expected_outputs.py):\n"
                            f"{cell.source}\n{diff}")
    return problems


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (test workers write one cache at once)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".mmbook-write.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def store(cache: Path, path: Path, notebook: nbformat.NotebookNode, seconds: float) -> None:
    """Put an executed notebook into the jupyter-cache at ``cache``, keyed as MyST-NB keys it."""
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache = Path(cache).resolve()
    with _locked(cache):
        get_cache(str(cache)).cache_notebook_bundle(
            CacheBundleIn(notebook, str(Path(path).resolve()), data={"execution_seconds": seconds}),
            check_validity=False, overwrite=True)


def is_cached(cache: Path, path: Path) -> bool:
    """Whether the jupyter-cache at ``cache`` holds the notebook at ``path`` as it is now."""
    from jupyter_cache import get_cache

    try:
        get_cache(str(Path(cache).resolve())).match_cache_notebook(nbformat.read(path, as_version=4))
    except KeyError:
        return False
    return True
