"""Run ``mmbook train`` in this process and read its JSON result (shared by the benchmark scripts)."""

from __future__ import annotations

import json
from pathlib import Path

from mmbook.cli import main as mmbook_main


def train_json(flags: list[str], path: Path) -> dict:
    """``mmbook train FLAGS --json PATH --no-progress``; the JSON result, or ``SystemExit`` naming the command."""
    argv = ["train", *flags, "--json", str(path), "--no-progress"]
    code = mmbook_main(argv)
    if code != 0:
        raise SystemExit(f"mmbook {' '.join(argv)} failed with status {code}")
    return json.loads(path.read_text())
