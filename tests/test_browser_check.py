"""scripts/browser_check.py on a tiny hand-made site: a good page passes, each kind of breakage fails.

The pages are plain HTML written here (no book build); the browser is headless Chromium
from Debian's packages, which .ci/run installs. Without it the browser tests are skipped.
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import browser_check  # noqa: E402

REPOSITORY = browser_check.Repository(org="mmbook", name="mmbook", branch="main", path_to_book="")
COLAB = "https://colab.research.google.com/github/mmbook/mmbook/blob/main/{path}"
BINDER = "https://mybinder.org/v2/gh/mmbook/mmbook/main?urlpath=lab/tree/{path}"
# A Markdown table as Sphinx renders it, and the same table as MyST-NB renders a text/markdown output with
# CommonMark, which has no tables: one paragraph of its source text, whose "---" smart quotes made an em dash.
REAL_TABLE = ('<table><thead><tr><th><p>run</p></th><th><p>accuracy</p></th></tr></thead>'
              '<tbody><tr><td><p>| a pipe in a cell</p></td><td><p>90.5%</p></td></tr></tbody></table>')
RAW_TABLE = "<p>| run | accuracy |\n|&#8212;|&#8212;:|\n| seed 0 | 90.5% |</p>"


def png(width: int = 2, height: int = 2) -> bytes:
    """A valid grey PNG image."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def page(body: str, notebook: str | None = None) -> str:
    links = ""
    if notebook is not None:
        links = (f'<a href="{COLAB.format(path=notebook)}">Colab</a>'
                 f'<a href="{BINDER.format(path=notebook)}">Binder</a>')
    return f"<!doctype html><html><head><title>t</title></head><body>{links}{body}</body></html>"


def write_notebook_source(site: Path, page_name: str) -> None:
    source = site / "_sources" / Path(page_name).with_suffix(".ipynb")
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(json.dumps({"cells": [{"cell_type": "markdown", "source": "No math here."}]}))


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site with one good page and one page for each kind of breakage."""
    root = tmp_path / "html"
    (root / "_images").mkdir(parents=True)
    (root / "_images" / "ok.png").write_bytes(png())
    (root / "index.html").write_text(page('<p>Home.</p><img src="_images/ok.png">'))
    pages = {
        "good.html": page('<img src="_images/ok.png">' + REAL_TABLE, notebook="good.ipynb"),
        "raw_table.html": page(RAW_TABLE, notebook="raw_table.ipynb"),
        "missing_image.html": page('<img src="_images/missing.png">', notebook="missing_image.ipynb"),
        "js_error.html": page("<script>undefined_function_of_the_page()</script>", notebook="js_error.ipynb"),
        "wrong_colab.html": page("", notebook="some_other_page.ipynb"),
        "unfolded_solution.html": page(
            '<div class="exercise admonition"><p class="admonition-title">Exercise</p><p>Do it.</p></div>'
            '<div class="solution dropdown admonition"><p class="admonition-title">Solution</p><p>Done.</p></div>',
            notebook="unfolded_solution.ipynb"),
    }
    for name, html in pages.items():
        (root / name).write_text(html)
        write_notebook_source(root, name)
    for name in ["good.ipynb", "missing_image.ipynb", "js_error.ipynb", "unfolded_solution.ipynb", "wrong_colab.ipynb",
                 "raw_table.ipynb"]:
        (tmp_path / name).write_text("{}")
    return root


def test_launch_links_must_open_the_pages_own_notebook_in_the_configured_repository(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "a.ipynb").write_text("{}")
    right = [COLAB.format(path="book/a.ipynb"), BINDER.format(path="book/a.ipynb")]
    assert browser_check.check_launch_links(right, "book/a.html", True, REPOSITORY, tmp_path) == []
    other_repo = [link.replace("mmbook/mmbook", "someone/fork") for link in right]
    assert len(browser_check.check_launch_links(other_repo, "book/a.html", True, REPOSITORY, tmp_path)) == 2
    assert browser_check.check_launch_links([], "book/a.html", True, REPOSITORY, tmp_path) == [
        "no Colab launch link", "no Binder launch link"]
    assert browser_check.check_launch_links(right, "book/a.html", False, REPOSITORY, tmp_path)[0].startswith(
        "offers a launch link but is no notebook")
    assert "not in the repository" in browser_check.check_launch_links(
        right, "book/b.html", True, REPOSITORY, tmp_path)[0]


def test_raw_pipe_table_text_is_found_and_prose_with_pipes_is_not():
    raw = ["| run | accuracy |\n|---|---:|\n| seed 0 | 90.5% |", "| a | b |\n| --- | :---: |\n| 1 | 2 |",
           "  |x|\n|:---|\n|1|", "| a | b |\n|\u2014|\u2014:|\n| 1 | 2 |", "| a |\n|\u2013-|\n| 1 |"]
    prose = ["A pipe | in a sentence, and a rule --- like this.", "| a cell that starts with a pipe",
             "x | y |---| z (not at the start)", "Accuracy: 90.5%.", "| a pipe, then a dash \u2014 in prose |"]
    assert browser_check.raw_pipe_tables(raw + prose) == raw


def test_the_books_markdown_outputs_are_rendered_with_tables():
    """MyST-NB's default for text/markdown outputs, CommonMark, has no tables; the book's config picks one that has."""
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["sphinx"]["config"].get("nb_render_markdown_format") in ("gfm", "myst")


def test_repository_comes_from_the_books_config():
    repository = browser_check.Repository.from_config(ROOT / "_config.yml")
    assert repository.notebook_path("book/ch03_cnn/01_convolution.html") == "book/ch03_cnn/01_convolution.ipynb"
    assert (ROOT / repository.notebook_path("book/ch03_cnn/01_convolution.html")).is_file()


def test_math_in_the_source_is_found_outside_code_only(tmp_path):
    source = tmp_path / "page.md"
    source.write_text("The loss $L = -\\log p$ falls.")
    assert browser_check.source_has_math(source)
    source.write_text("Set `$MMBOOK_DATA` and run:\n```bash\necho $HOME $PATH\n```\nIt costs $5 or $6 at most.")
    assert not browser_check.source_has_math(source)


@pytest.mark.skipif(browser_check.missing_requirements() is not None,
                    reason=str(browser_check.missing_requirements()))
def test_the_check_passes_a_good_page_and_fails_each_broken_one(site):
    reports = {report.page: report for report in browser_check.check_site(site, REPOSITORY, repo_root=site.parent)}
    assert set(reports) == {"index.html", "good.html", "missing_image.html", "js_error.html", "wrong_colab.html",
                            "unfolded_solution.html", "raw_table.html"}
    assert reports["index.html"].problems == []
    assert reports["good.html"].problems == []
    assert "image did not load: _images/missing.png" in reports["missing_image.html"].problems
    assert any("undefined_function_of_the_page" in p for p in reports["js_error.html"].problems)
    assert any("does not open /github/mmbook/mmbook/blob/main/wrong_colab.ipynb" in p
               for p in reports["wrong_colab.html"].problems)
    assert reports["unfolded_solution.html"].problems == [
        "its first solution is shown before it is opened (not folded)"]
    assert reports["raw_table.html"].problems == [
        "a pipe table shown as raw text, not as a table: '| run | accuracy | |\u2014|\u2014:| | seed 0 | 90.5% |'"]
    assert "1 tables" in reports["good.html"].checked


@pytest.mark.skipif(browser_check.missing_requirements() is not None,
                    reason=str(browser_check.missing_requirements()))
def test_the_command_fails_on_a_broken_site_and_names_the_page(site, capsys):
    assert browser_check.main([str(site), "--config", str(ROOT / "_config.yml"), "--repo-root", str(site.parent)]) == 1
    out = capsys.readouterr().out
    assert "FAIL missing_image.html" in out and "ok   good.html (1 images, 1 tables, launch links)" in out
    assert "FAIL raw_table.html" in out
