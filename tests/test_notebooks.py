"""Checks on the committed notebooks and the table of contents (no execution here; `pytest --run-notebooks` runs them, see conftest.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").rglob("*.ipynb"))
NOTEBOOKS = [path for path in NOTEBOOKS if ".ipynb_checkpoints" not in path.parts]


def read_config_value(key: str) -> str:
    """A value from the `repository:` block of _config.yml (a plain reader; no YAML library needed)."""
    text = (ROOT / "_config.yml").read_text()
    block = text.split("\nrepository:", 1)[1]
    match = re.search(rf"^\s+{key}:\s*(\S+)", block, flags=re.MULTILINE)
    assert match, f"_config.yml has no repository.{key}"
    return match.group(1)


def code_cells(path: Path) -> list[dict]:
    return [cell for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "code"]


def source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found under book/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_is_committed_without_outputs(path):
    for index, cell in enumerate(code_cells(path)):
        assert not cell.get("outputs"), f"{path.name}: code cell {index} holds outputs; clear them before committing"
        assert cell.get("execution_count") is None, f"{path.name}: code cell {index} has an execution count"
    metadata = json.loads(path.read_text())["metadata"]
    assert "widgets" not in metadata, (f"{path.name} holds saved widget state (stale progress bars); strip it with "
                                       "scripts/record_expected_outputs.py or remove metadata['widgets']")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_starts_with_install_and_environment_cells(path):
    # The title cell may come first (scripts/retag_notebooks.py puts it there); then the two code cells.
    cells = json.loads(path.read_text())["cells"]
    first_code = next(i for i, cell in enumerate(cells) if cell["cell_type"] == "code")
    assert first_code <= 1, f"{path.name}: the install cell must come first, after at most the title cell"
    assert all("# " in source(cell) for cell in cells[:first_code]), f"{path.name}: only the title may precede the install cell"
    install, report = source(cells[first_code]), source(cells[first_code + 1])
    url, branch = read_config_value("url"), read_config_value("branch")
    assert '"google.colab" in sys.modules' in install
    assert f"git+{url}@{branch}" in install, f"{path.name}: install cell must install from {url}@{branch} (_config.yml)"
    assert cells[first_code + 1]["cell_type"] == "code" and "print(environment_report())" in report


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_checked_cells_carry_their_expected_output(path):
    for cell in code_cells(path):
        if "nbval-check-output" in cell.get("metadata", {}).get("tags", []) or "NBVAL_CHECK_OUTPUT" in source(cell):
            expected = cell.get("metadata", {}).get("mmbook", {}).get("expected_output")
            assert expected, f"{path.name}: a checked cell (nbval-check-output) lacks metadata.mmbook.expected_output"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_chapter_notebooks_state_learning_objectives(path):
    markdown = "".join(source(c) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "markdown")
    assert "Learning objectives" in markdown, f"{path.name}: no learning objectives"


def toc_files() -> list[str]:
    return re.findall(r"file:\s*(\S+)", (ROOT / "_toc.yml").read_text()) + [
        re.search(r"root:\s*(\S+)", (ROOT / "_toc.yml").read_text()).group(1)
    ]


def test_toc_lists_only_pages_that_exist():
    for entry in toc_files():
        candidates = [ROOT / f"{entry}{suffix}" for suffix in (".ipynb", ".md")]
        assert any(c.exists() for c in candidates), f"_toc.yml lists {entry}, which does not exist"


def test_every_notebook_is_in_the_toc():
    listed = set(toc_files())
    for path in NOTEBOOKS:
        assert str(path.relative_to(ROOT).with_suffix("")) in listed, f"{path} is not listed in _toc.yml"
