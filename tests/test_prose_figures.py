"""The unglued-figure scanner (scripts/check_prose_figures.py): its rules, and the book against them."""

import importlib.util
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_prose_figures", ROOT / "scripts" / "check_prose_figures.py")
check = sys.modules["check_prose_figures"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check)


def write_notebook(path: Path, *markdown: str) -> Path:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("x = 0.4375  # code is not prose")]
    notebook.cells += [nbformat.v4.new_markdown_cell(text) for text in markdown]
    nbformat.write(notebook, path)
    return path


def test_scanner_fails_a_notebook_with_typed_run_figures(tmp_path, capsys):
    bad = write_notebook(
        tmp_path / "bad.ipynb",
        "The fused model reached 78.8% against 64.0% for the image alone.",
        "```{exercise} Noise\n:label: ex-noise\n\nThe text-only model drops to 0.29.\n```",
        "Birds gain the most (about +29 points); mAP stays at 0.53.",
    )
    offenders = check.scan_notebook(bad)
    assert [o.figure for o in offenders] == ["78.8%", "64.0%", "0.29", "+29 points", "0.53"]
    assert [(o.cell, o.line) for o in offenders] == [(1, 1), (1, 1), (2, 4), (3, 1), (3, 1)]
    assert check.main([str(bad)]) == 1
    assert "bad.ipynb: cell 1" in capsys.readouterr().out


def test_scanner_passes_glued_quoted_math_and_code(tmp_path):
    good = write_notebook(
        tmp_path / "good.ipynb",
        "The fused model reached {glue:text}`fused_acc:.1%` against {glue:text}`image_acc:.1%`.",
        "CLIP reached 76.2% zero-shot on ImageNet {cite}`radford2021learning`.",
        "On an H200 it reached 93.0% in 36 s. <!-- quoted: benchmarks/RESULTS.md -->",
        "The ceiling is $0.9 \\times 0.5 + 0.1 \\times 0.1 = 0.46$, and\n$$\np = 0.445\n$$",
        "Set `lr=0.001` and run:\n\n```bash\nmmbook train --lr 0.003\n```",
        "Noise 0.1 and 5% (one digit), mAP@0.75, torch 2.11.0 and {ref}`ex-1.25` are not run figures.",
        "As in [arXiv:1706.02677](https://arxiv.org/abs/1706.02677) and <https://example.org/v0.25>.",
    )
    assert check.scan_notebook(good) == []
    assert check.main([str(good)]) == 0


def test_scanner_rejects_what_is_not_a_notebook(tmp_path):
    (tmp_path / "notes.txt").write_text("46%")
    with pytest.raises(ValueError, match="neither a notebook"):
        check.notebooks_under([tmp_path / "notes.txt"])
    (tmp_path / "broken.ipynb").write_text("{not json")
    with pytest.raises(ValueError, match="not a readable notebook"):
        check.scan_notebook(tmp_path / "broken.ipynb")


BOOK_NOTEBOOKS = check.notebooks_under([ROOT / "book"])


@pytest.mark.parametrize("notebook", BOOK_NOTEBOOKS, ids=[str(p.relative_to(ROOT / "book")) for p in BOOK_NOTEBOOKS])
def test_book_prose_has_no_unglued_run_figures(notebook):
    offenders = check.scan_notebook(notebook)
    assert not offenders, (
        f"{len(offenders)} unglued figure(s) in {notebook.relative_to(ROOT)}; glue them, or name their source "
        "({cite} or <!-- quoted: SOURCE --> on the same line):\n" + "\n".join(f"  {o}" for o in offenders)
    )


def test_missing_glue_finds_pasted_names_that_no_cell_glues(tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell('glue("acc", 0.5, display=False)\nfor key in ("a", "b"):\n    glue(f"gain_{key}", 1.0)'),
        nbformat.v4.new_markdown_cell("{glue:text}`acc:.1%`, {glue:text}`gain_a:+.1f`, {glue}`typo_acc`"),
    ]
    nbformat.write(notebook, tmp_path / "page.ipynb")
    assert check.missing_glue(tmp_path / "page.ipynb") == ["typo_acc"]


@pytest.mark.parametrize("notebook", BOOK_NOTEBOOKS, ids=[str(p.relative_to(ROOT / "book")) for p in BOOK_NOTEBOOKS])
def test_every_pasted_glue_name_is_glued_on_its_page(notebook):
    assert check.missing_glue(notebook) == [], f"{notebook.relative_to(ROOT)} pastes names that no cell glues"
