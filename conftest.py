"""pytest configuration shared by the unit tests and the notebook tests.

With ``--run-notebooks``, every ``.ipynb`` collected (``pytest --run-notebooks book``) is
one test, which runs the notebook from top to bottom as the book build does
(``scripts/notebook_execution.py``) and fails

- when a cell raises (cells tagged ``raises-exception`` may), with that cell's traceback;
- when a checked cell (tag ``nbval-check-output``) prints other text than the text
  recorded in its metadata (``metadata.mmbook.expected_output``, written by
  ``scripts/record_expected_outputs.py``), with the difference.

With ``--notebook-cache DIR`` as well, each notebook that passes is stored in the
jupyter-cache at ``DIR``. ``make test`` names the quick book's cache, so the quick build
that follows (CI's) renders those pages without running them again. Tests run in quick
mode (``make test`` sets ``MMBOOK_QUICK=1``); the option refuses to store otherwise, so a
full-mode cache never receives quick-mode pages.

Each notebook is its own test module for pytest-xdist (``--dist loadscope``), so two
workers run two notebooks at a time.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import matplotlib
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "scripts"))
from notebook_execution import execute, output_mismatches, store  # noqa: E402

# Plots in unit tests need no screen. (Not MPLBACKEND: kernels would inherit it, and a
# kernel with the Agg backend shows no figures.)
matplotlib.use("Agg")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("notebooks")
    group.addoption("--run-notebooks", action="store_true",
                    help="collect each .ipynb as a test that runs it and compares its checked cells")
    group.addoption("--notebook-cache", type=Path, default=None,
                    help="store each notebook that passes in this jupyter-cache (quick mode only)")
    group.addoption("--notebook-timeout", type=int, default=1200, help="seconds per cell (default 1200, as _config.yml)")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--notebook-cache") and os.environ.get("MMBOOK_QUICK") != "1":
        raise pytest.UsageError("--notebook-cache stores quick-mode pages for the quick book; set MMBOOK_QUICK=1 "
                                "(make test does)")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if (file_path.suffix == ".ipynb" and parent.config.getoption("--run-notebooks")
            and ".ipynb_checkpoints" not in file_path.parts):
        return NotebookFile.from_parent(parent, path=file_path)
    return None


class NotebookFile(pytest.File):
    """A notebook, holding one test: :class:`NotebookRun`."""

    def collect(self):
        yield NotebookRun.from_parent(self, name="runs")


class NotebookFailed(Exception):
    """A notebook raised, or a checked cell printed other text than recorded."""


class NotebookRun(pytest.Item):
    """Run the notebook, then compare its checked cells; store it in the cache if asked."""

    def runtest(self) -> None:
        notebook, seconds, error = execute(self.path, timeout=self.config.getoption("--notebook-timeout"))
        if error is not None:
            traceback = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # the kernel's colours, unreadable in a log
            raise NotebookFailed(f"{self.path.name} stopped after {seconds:.0f} s:\n{traceback}")
        problems = output_mismatches(notebook)
        if problems:
            raise NotebookFailed(f"{self.path.name}: " + "\n\n".join(problems))
        cache = self.config.getoption("--notebook-cache")
        if cache is not None:
            store(cache, self.path, notebook, seconds)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None) -> str:
        if isinstance(excinfo.value, NotebookFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"{self.path.name} (runs)"
