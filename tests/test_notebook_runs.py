"""The notebook tests (``pytest --run-notebooks``, root conftest.py) on hand-made notebooks.

Each case runs pytest in a subprocess on a folder that holds a copy of the root conftest
and ``scripts/notebook_execution.py`` beside the notebooks, as the repository does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from notebook_execution import CHECK_TAG, is_cached  # noqa: E402


def notebook(path: Path, *cells: nbformat.NotebookNode) -> Path:
    book = nbformat.v4.new_notebook(cells=list(cells))
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(book, path)
    return path


def checked(source: str, expected: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = [CHECK_TAG]
    cell.metadata["mmbook"] = {"expected_output": expected}
    return cell


def project(folder: Path) -> Path:
    (folder / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "conftest.py", folder / "conftest.py")
    shutil.copy(ROOT / "scripts" / "notebook_execution.py", folder / "scripts" / "notebook_execution.py")
    return folder


def run_pytest(folder: Path, *args: str, quick: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "MMBOOK_QUICK": "1" if quick else "0"}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", *args],
                          cwd=folder, capture_output=True, text=True, env=env)


def test_a_notebook_passes_fails_on_an_error_or_changed_output_and_is_cached_when_it_passes(tmp_path):
    folder = project(tmp_path)
    good = notebook(folder / "good.ipynb", nbformat.v4.new_markdown_cell("# Good"),
                    checked("print('ratio', 3 / 4)", "ratio 0.75\n"),
                    nbformat.v4.new_code_cell("raise ValueError('shown on purpose')",
                                              metadata={"tags": ["raises-exception"]}),
                    nbformat.v4.new_code_cell("x = 1"))
    raising = notebook(folder / "raising.ipynb", nbformat.v4.new_code_cell("x = 1"),
                       nbformat.v4.new_code_cell("raise RuntimeError('broken on purpose')"))
    changed = notebook(folder / "changed.ipynb", checked("print('accuracy', 0.5)", "accuracy 0.9\n"))
    noisy = notebook(folder / "noisy.ipynb",
                     checked("import sys\nprint('a')\nprint('warned', file=sys.stderr)", "a\n"))
    cache = tmp_path / "cache"

    result = run_pytest(folder, "--run-notebooks", "--notebook-cache", str(cache), ".")
    report = result.stdout + result.stderr
    assert result.returncode == 1, report
    assert "3 failed, 1 passed" in report, report
    assert "RuntimeError" in report and "broken on purpose" in report
    assert "printed other text than recorded" in report and "-accuracy 0.9" in report and "+accuracy 0.5" in report
    assert "may only print to stdout; it produced stderr" in report
    assert is_cached(cache, good)
    assert not any(is_cached(cache, path) for path in (raising, changed, noisy))


def test_a_checked_cell_without_its_recorded_output_is_named(tmp_path):
    from notebook_execution import output_mismatches

    cell = nbformat.v4.new_code_cell("print(1)", metadata={"tags": [CHECK_TAG]})
    problems = output_mismatches(nbformat.v4.new_notebook(cells=[cell]))
    assert len(problems) == 1 and "record_expected_outputs.py" in problems[0]


def test_the_cache_takes_quick_mode_pages_only(tmp_path):
    folder = project(tmp_path)
    notebook(folder / "page.ipynb", nbformat.v4.new_code_cell("x = 1"))
    result = run_pytest(folder, "--run-notebooks", "--notebook-cache", str(tmp_path / "cache"), ".", quick=False)
    assert result.returncode != 0
    assert "MMBOOK_QUICK=1" in result.stdout + result.stderr


def test_without_the_option_notebooks_are_not_collected(tmp_path):
    folder = project(tmp_path)
    notebook(folder / "page.ipynb", nbformat.v4.new_code_cell("raise RuntimeError('never run')"))
    result = run_pytest(folder, ".")
    assert "no tests ran" in result.stdout, result.stdout
