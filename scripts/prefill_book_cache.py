"""Execute the book's notebooks several at a time into the build's execution cache.

``jupyter-book build`` executes the notebooks that its cache lacks one after another,
each while Sphinx reads that page. This script runs them beforehand, ``--jobs`` kernels
at a time, and stores each executed notebook in the same jupyter-cache database
(``<build>/_build/.jupyter_cache``), keyed as MyST-NB keys it (the code cells and the
kernelspec). The build that follows then finds every notebook in the cache and only
renders. ``make book-quick BOOK_JOBS=2`` runs it; CI does so.

A notebook that fails here is left out of the cache with a one-line warning: the build
runs it again and reports the error with its traceback, as without this script. The
exit status is 0 unless the arguments are wrong.

Use it for quick mode: kernels that share the cores run slower, and full-mode pages
print their own training times.

Usage::

    python scripts/prefill_book_cache.py --cache _build/quick/_build/.jupyter_cache --jobs 2 [NOTEBOOK ...]

Without notebooks it takes every ``.ipynb`` named in ``_toc.yml``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from notebook_execution import execute, is_cached, store  # noqa: E402


def toc_notebooks(toc: Path) -> list[Path]:
    """Every notebook that ``toc`` names in a ``file:`` entry, in reading order."""
    from mmbook.course.course_map import toc_entries

    paths = [toc.parent / (name if name.endswith(".ipynb") else f"{name}.ipynb") for name in toc_entries(toc.parent)]
    return [path for path in dict.fromkeys(paths) if path.is_file()]


def execute_one(path: str, timeout: int) -> tuple[str, dict | None, float, str | None]:
    """Run one notebook (``notebook_execution.execute``); returns ``(path, notebook or None, seconds, error or None)``."""
    notebook, seconds, error = execute(Path(path), timeout)
    if error is not None:
        return path, None, seconds, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return path, notebook, seconds, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to run (default: every one in _toc.yml)")
    parser.add_argument("--cache", type=Path, required=True, help="the build's jupyter-cache folder")
    parser.add_argument("--jobs", type=int, default=2, help="kernels at a time (default 2)")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per cell (default 1200, as _config.yml)")
    parser.add_argument("--toc", type=Path, default=ROOT / "_toc.yml")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    missing = [str(p) for p in args.notebooks if not p.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")

    todo = [str(path.resolve()) for path in args.notebooks or toc_notebooks(args.toc) if not is_cached(args.cache, path)]
    print(f"prefill: {len(todo)} notebook(s) to run, {args.jobs} at a time, into {args.cache}", flush=True)
    started = time.monotonic()
    failed = 0
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(execute_one, path, args.timeout) for path in todo]
        for future in as_completed(futures):
            path, notebook, seconds, error = future.result()
            name = os.path.relpath(path, ROOT)
            if error is not None:
                failed += 1
                print(f"prefill: WARNING {name} failed after {seconds:.0f} s ({error}); the build runs it again "
                      "and reports the error", flush=True)
                continue
            store(args.cache, Path(path), notebook, seconds)
            print(f"prefill: {name} in {seconds:.0f} s", flush=True)
    print(f"prefill: {len(todo) - failed} cached, {failed} failed, in {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
