"""scripts/retag_notebooks.py on a hand-made notebook: markers become tags, the title comes first, twice is once."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import retag_notebooks  # noqa: E402

INSTALL = ('import sys\n\nif "google.colab" in sys.modules:\n    import subprocess\n\n'
           '    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "mmbook @ git+https://example.org/mmbook@main"])')
REPORT = "from mmbook.runtime import environment_report\n\nprint(environment_report())"


def notebook(path: Path, with_install: bool = True) -> Path:
    cells = [nbformat.v4.new_code_cell(INSTALL)] if with_install else []
    cells += [
        nbformat.v4.new_code_cell(REPORT),
        nbformat.v4.new_markdown_cell("(ch-x)=\n# A chapter\n\n**Learning objectives**"),
        nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(1 + 1)"),
        nbformat.v4.new_code_cell("x = 1  # NBVAL_CHECK_OUTPUT is only a marker on the first line"),
    ]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    return path


def test_retag_moves_markers_into_tags_and_the_title_first(tmp_path):
    path = notebook(tmp_path / "nb.ipynb")
    ids_before = {cell.id for cell in nbformat.read(path, as_version=4).cells}
    assert retag_notebooks.main([str(path)]) == 0
    cells = nbformat.read(path, as_version=4).cells
    assert {cell.id for cell in cells} == ids_before
    assert cells[0].cell_type == "markdown" and "# A chapter" in cells[0].source
    assert cells[1].metadata["tags"] == ["remove-input"] and "google.colab" in cells[1].source
    assert cells[2].metadata["tags"] == ["hide-input"] and "environment_report" in cells[2].source
    assert cells[3].source == "print(1 + 1)" and cells[3].metadata["tags"] == ["nbval-check-output"]
    assert "tags" not in cells[4].metadata, "a marker that is not the first line is not a marker"


def test_retag_twice_changes_nothing_the_second_time(tmp_path, capsys):
    path = notebook(tmp_path / "nb.ipynb")
    retag_notebooks.main([str(path)])
    once = path.read_text()
    assert retag_notebooks.main(["--check", str(path)]) == 0
    assert retag_notebooks.main([str(path)]) == 0
    assert path.read_text() == once
    assert "up to date" in capsys.readouterr().out


def test_check_reports_a_notebook_that_would_change_and_leaves_it_alone(tmp_path):
    path = notebook(tmp_path / "nb.ipynb")
    before = path.read_text()
    assert retag_notebooks.main(["--check", str(path)]) == 1
    assert path.read_text() == before


def test_a_notebook_without_the_install_cell_is_refused(tmp_path, capsys):
    path = notebook(tmp_path / "nb.ipynb", with_install=False)
    assert retag_notebooks.main([str(path)]) == 2
    assert "Colab install cell" in capsys.readouterr().err


def test_the_notebook_tests_treat_tag_and_old_marker_alike():
    from notebook_execution import is_checked_cell

    assert is_checked_cell({"source": "print(1)", "metadata": {"tags": ["nbval-check-output"]}})
    assert is_checked_cell({"source": ["# NBVAL_CHECK_OUTPUT\n", "print(1)"], "metadata": {}})
    assert not is_checked_cell({"source": "print(1)  # NBVAL_CHECK_OUTPUT", "metadata": {}})
    with pytest.raises(ValueError, match="first two code cells"):
        retag_notebooks.retag(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")]))
