"""JupyterLab, as `make lab` opens it, renders the book's MyST markup through jupyterlab-myst."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest


def test_jupyterlab_myst_loads_in_this_jupyterlab():
    jupyter = Path(sys.executable).parent / "jupyter"
    if not jupyter.exists():
        pytest.skip("JupyterLab is not installed (pip install -e '.[book]')")
    result = subprocess.run([str(jupyter), "labextension", "list"], capture_output=True, text=True, timeout=300)
    text = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)  # without colours
    lines = [line for line in text.splitlines() if "jupyterlab-myst" in line and " v" in line]
    assert lines, "jupyterlab-myst is not installed: pip install -e '.[book]'"
    assert re.search(r"\benabled\s+OK\b", lines[0]), lines[0]
    assert "is not compatible with the current JupyterLab" not in text, text
