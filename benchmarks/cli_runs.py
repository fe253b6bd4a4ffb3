"""What the benchmark scripts share: their command-line flags, their JSON record, and ``mmbook train`` run in this
process with its JSON result read back."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mmbook.cli import main as mmbook_main


def train_json(flags: list[str], path: Path) -> dict:
    """``mmbook train FLAGS --json PATH --no-progress``; the JSON result, or ``SystemExit`` naming the command."""
    argv = ["train", *flags, "--json", str(path), "--no-progress"]
    code = mmbook_main(argv)
    if code != 0:
        raise SystemExit(f"mmbook {' '.join(argv)} failed with status {code}")
    return json.loads(path.read_text())


def benchmark_arguments(description: str, seeds: int = 3) -> argparse.ArgumentParser:
    """The flags every seeded benchmark takes: ``--quick``, ``--seeds`` (default ``seeds``) and ``--json``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="quick mode instead of full mode")
    parser.add_argument("--seeds", type=int, default=seeds, help=f"how many seeds (default {seeds})")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser


def write_results(path: Path | None, **results: Any) -> None:
    """Write ``results`` and the machine's :func:`~mmbook.runtime.environment_report` to ``path`` as JSON (no path: nothing)."""
    if path is None:
        return
    from mmbook.runtime import environment_report

    path.write_text(json.dumps({**results, "environment": environment_report()}, indent=1))
