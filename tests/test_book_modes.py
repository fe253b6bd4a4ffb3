"""The book's two build modes never share pages or executed notebooks.

`make book` builds full mode into _build/full and `make book-quick` quick mode into
_build/quick, each with its own Sphinx environment and execution cache. These tests read
what the Makefile would run (`make -n`), and build a one-notebook book with the real
Makefile and _config.yml in a temporary folder: quick, then full, then full again.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def dry_run(target: str, **env: str) -> str:
    """The commands `make TARGET` would run, without running them or installing anything."""
    result = subprocess.run(["make", "-n", "-s", target, "READY="], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, **env}, check=True)
    return result.stdout


def build_command(target: str, **env: str) -> str:
    lines = [line for line in dry_run(target, **env).splitlines() if "jupyter-book build" in line]
    assert len(lines) == 1, f"`make -n {target}` should run jupyter-book once; it printed:\n{dry_run(target, **env)}"
    return lines[0]


def test_each_mode_builds_into_its_own_folder_with_its_own_kernel_setting():
    full, quick = build_command("book"), build_command("book-quick")
    assert "--path-output _build/full" in full and "MMBOOK_QUICK=0" in full
    assert "--path-output _build/quick" in quick and "MMBOOK_QUICK=1" in quick


def test_the_mode_comes_from_the_target_not_from_the_environment():
    assert "MMBOOK_QUICK=0" in build_command("book", MMBOOK_QUICK="1")
    assert "MMBOOK_QUICK=1" in build_command("book-quick", MMBOOK_QUICK="0")


def test_kernels_get_one_thread_per_core():
    match = re.search(r"OMP_NUM_THREADS=(\d+)", build_command("book"))
    assert match, "the book build should set OMP_NUM_THREADS for its kernels"
    assert int(match.group(1)) == (os.cpu_count() or 1)


def test_the_execution_cache_is_not_shared_between_modes():
    execute = yaml.safe_load((ROOT / "_config.yml").read_text())["execute"]
    # MyST-NB puts the cache beside the HTML, in the mode's folder, when no path is set.
    assert not execute.get("cache"), (
        f"_config.yml sets execute.cache to {execute['cache']!r}, one folder for both modes; "
        "leave it unset so that each build folder keeps its own cache")
    assert execute["execute_notebooks"] == "cache"


def tiny_book(folder: Path) -> Path:
    """A copy of the book's build set-up with one page: a notebook that prints the mode its kernel sees."""
    for name in ("Makefile", "_config.yml", "references.bib", "scripts/book_html_fixes.py",
                 "scripts/prefill_book_cache.py", "scripts/notebook_execution.py"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, folder / name)
    (folder / "_toc.yml").write_text("format: jb-book\nroot: index\nchapters:\n  - file: page\n")
    (folder / "index.md").write_text("# A tiny book\n\n```{tableofcontents}\n```\n")
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# Page"),
        nbformat.v4.new_code_cell("import os\nprint('mode', 'quick' if os.environ['MMBOOK_QUICK'] == '1' else 'full')"),
    ]
    nbformat.write(notebook, folder / "page.ipynb")
    return folder


def make(folder: Path, target: str, *variables: str) -> str:
    result = subprocess.run(["make", target, f"VENV={VENV}", "READY=", "BOOKFLAGS=-W -n --keep-going", *variables],
                            cwd=folder, capture_output=True, text=True, env={**os.environ, "MMBOOK_QUICK": "1"})
    assert result.returncode == 0, f"make {target} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def printed_mode(folder: Path, mode: str) -> str:
    page = folder / "_build" / mode / "_build" / "html" / "page.html"
    match = re.search(r"mode (quick|full)", page.read_text())
    assert match, f"{page} shows no mode"
    return match.group(1)


@pytest.mark.skipif(not (VENV / "bin" / "jupyter-book").exists(), reason="needs jupyter-book (the book extra)")
def test_a_full_build_after_a_quick_one_executes_again_and_a_rebuild_does_not(tmp_path):
    book = tiny_book(tmp_path)
    assert "Executing notebook" in make(book, "book-quick")
    assert printed_mode(book, "quick") == "quick"

    # MMBOOK_QUICK=1 is still set (see make()), as in the run that once mixed the modes.
    assert "Executing notebook" in make(book, "book")
    assert printed_mode(book, "full") == "full"
    assert printed_mode(book, "quick") == "quick"

    assert "Executing notebook" not in make(book, "book")
    cache = book / "_build" / "full" / "_build" / ".jupyter_cache"
    assert cache.is_dir() and (book / "_build" / "quick" / "_build" / ".jupyter_cache").is_dir()
    assert not (book / "_build" / ".jupyter_cache").exists()


@pytest.mark.skipif(not (VENV / "bin" / "jupyter-book").exists(), reason="needs jupyter-book (the book extra)")
def test_book_jobs_runs_the_notebooks_beforehand_into_the_cache_the_build_reads(tmp_path):
    book = tiny_book(tmp_path)
    output = make(book, "book-quick", "BOOK_JOBS=2")
    assert "prefill: 1 cached, 0 failed" in output
    assert "Using cached notebook" in output and "Executing notebook" not in output
    assert printed_mode(book, "quick") == "quick"


@pytest.mark.skipif(not (VENV / "bin" / "jupyter-book").exists(), reason="needs jupyter-book (the book extra)")
def test_a_notebook_that_fails_beforehand_is_left_to_the_build_to_report(tmp_path):
    book = tiny_book(tmp_path)
    notebook = nbformat.read(book / "page.ipynb", as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell("raise RuntimeError('broken on purpose')"))
    nbformat.write(notebook, book / "page.ipynb")
    result = subprocess.run([sys.executable, str(book / "scripts" / "prefill_book_cache.py"), "--toc",
                             str(book / "_toc.yml"), "--cache", str(tmp_path / "cache"), "--jobs", "2"],
                            capture_output=True, text=True, env={**os.environ, "MMBOOK_QUICK": "1"})
    assert result.returncode == 0, result.stderr
    assert "WARNING" in result.stdout and "page.ipynb failed" in result.stdout and "1 failed" in result.stdout
