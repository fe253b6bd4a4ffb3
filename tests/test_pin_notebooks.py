"""scripts/pin_notebooks.py: the published notebooks install the mmbook they were built with."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import pin_notebooks  # noqa: E402


@pytest.fixture()
def repo(tmp_path):
    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    for source in [ROOT / "book/ch01_what_is_multimodal/what_is_multimodal.ipynb", ROOT / "book/ch03_cnn/02_pooling.ipynb"]:
        target = tmp_path / source.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    return tmp_path


def _cells(path: Path) -> list[str]:
    return ["".join(cell["source"]) for cell in json.loads(path.read_text())["cells"]]


def test_ref_pins_only_the_install_line(repo):
    url, branch = pin_notebooks.repository((ROOT / "_config.yml").read_text())
    before = {path: _cells(path) for path in repo.rglob("*.ipynb")}
    assert pin_notebooks.main(["--ref", "0123abc", "--root", str(repo)]) == 0
    for path, cells in before.items():
        after = _cells(path)
        changed = [i for i, (old, new) in enumerate(zip(cells, after)) if old != new]
        assert len(after) == len(cells) and len(changed) == 1, path
        assert f"git+{url}@0123abc" in after[changed[0]] and f"@{branch}\"" not in after[changed[0]]
    assert (repo / "_config.yml").read_text() == (ROOT / "_config.yml").read_text()


def test_launch_branch_changes_only_the_repository_branch(repo):
    assert pin_notebooks.main(["--launch-branch", "published", "--root", str(repo)]) == 0
    old, new = (ROOT / "_config.yml").read_text().splitlines(), (repo / "_config.yml").read_text().splitlines()
    assert [(a, b) for a, b in zip(old, new) if a != b] == [("  branch: main", "  branch: published")]
    assert pin_notebooks.repository("\n".join(new))[1] == "published"


def test_a_ref_that_is_not_a_git_name_is_refused(repo, capsys):
    assert pin_notebooks.main(["--ref", "a b", "--root", str(repo)]) == 2
    assert "not a git branch, tag or commit: 'a b'" in capsys.readouterr().err


def test_a_notebook_without_an_install_cell_is_an_error(repo, capsys):
    (repo / "book" / "odd.ipynb").write_text(json.dumps({"cells": [{"cell_type": "code", "source": "1"}]}))
    assert pin_notebooks.main(["--ref", "abc", "--root", str(repo)]) == 2
    assert "no install cell" in capsys.readouterr().err

