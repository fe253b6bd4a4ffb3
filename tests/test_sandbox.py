"""The grader's sandbox: writing outside, the network, a fork bomb and a left-behind child are each
stopped and reported (where bubblewrap is installed), and the fallback warns."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

from mmbook.course.sandbox import NO_SANDBOX_WARNING, Limits, Sandbox, find_bubblewrap

BUBBLEWRAP = find_bubblewrap()
needs_bubblewrap = pytest.mark.skipif(BUBBLEWRAP is None, reason="bubblewrap is not installed (apt-get install "
                                                                 "bubblewrap; .ci/run installs it)")


def live_processes_with(argument: str) -> list[int]:
    """Processes (not zombies) whose command line contains ``argument``."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if argument in command and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@needs_bubblewrap
def test_writes_only_in_its_own_folder(tmp_path):
    # Outside /tmp: the sandbox's /tmp is a private, empty one, so a path there would not be outside.
    outside = Path(__file__).resolve().parent / f"outside-{uuid.uuid4().hex}.txt"
    folder = tmp_path / "work"
    result = Sandbox().run(python(
        "from pathlib import Path\n"
        "Path('inside.txt').write_text('ok')\n"
        f"try:\n    Path({str(outside)!r}).write_text('escaped')\nexcept OSError as e:\n    print('refused', e)"),
        folder, timeout=60)
    escaped = outside.exists()
    outside.unlink(missing_ok=True)
    assert result.returncode == 0, result.stderr
    assert (folder / "inside.txt").read_text() == "ok"
    assert not escaped
    assert "refused" in result.stdout and "Read-only file system" in result.stdout


@needs_bubblewrap
def test_hidden_folders_are_empty(tmp_path):
    secret = tmp_path / "instructor"
    secret.mkdir()
    (secret / "checks.py").write_text("ANSWER = 42")
    result = Sandbox(hide=(secret,)).run(python(f"import os; print(sorted(os.listdir({str(secret)!r})))"),
                                         tmp_path / "work", timeout=60)
    assert result.stdout.strip() == "[]", result.stderr


@needs_bubblewrap
def test_no_network(tmp_path):
    result = Sandbox().run(python(
        "import socket\n"
        "try:\n    socket.create_connection(('192.0.2.1', 80), timeout=5)\n    print('connected')\n"
        "except OSError as e:\n    print('refused', e)"), tmp_path / "work", timeout=60)
    assert result.stdout.startswith("refused"), (result.stdout, result.stderr)
    assert "Network is unreachable" in result.stdout


def _fork_bomb(tmp_path, sandbox: Sandbox) -> None:
    tag = f"{uuid.uuid4().int % 10**6 + 10**6}.5"  # a sleep duration no other process uses
    result = sandbox.run(python(
        "import subprocess\nstarted = refused = 0\n"
        "for _ in range(400):\n"
        f"    try:\n        subprocess.Popen(['sleep', '{tag}']); started += 1\n"
        "    except OSError:\n        refused += 1\n"
        "print(started, refused)"), tmp_path / "work", timeout=120)
    started, refused = map(int, result.stdout.split())
    assert refused > 0 and started < 64, (started, refused)
    assert any(event.startswith(f"left {started} process(es) running") for event in result.events), result.events
    assert live_processes_with(tag) == []


@needs_bubblewrap
def test_fork_bomb_is_stopped_and_its_children_ended(tmp_path):
    _fork_bomb(tmp_path, Sandbox(Limits(processes=64)))


@needs_bubblewrap
def test_a_child_left_running_is_ended_and_reported(tmp_path):
    tag = f"{uuid.uuid4().int % 10**6 + 10**6}.25"
    result = Sandbox().run(["bash", "-c", f"setsid sleep {tag} & disown; echo started"], tmp_path / "work", timeout=60)
    assert result.stdout.strip() == "started"
    assert any("left 1 process(es) running" in event and "sleep" in event for event in result.events), result.events
    assert live_processes_with(tag) == []


def test_fallback_warns_and_still_ends_children(tmp_path):
    sandbox = Sandbox(use_bubblewrap=False)
    assert sandbox.bubblewrap is None and sandbox.warning == NO_SANDBOX_WARNING
    assert "apt-get install bubblewrap" in NO_SANDBOX_WARNING
    tag = f"{uuid.uuid4().int % 10**6 + 10**6}.75"
    result = sandbox.run(["bash", "-c", f"sleep {tag} & echo started"], tmp_path / "work", timeout=60)
    assert result.stdout.strip() == "started"
    assert any("left 1 process(es) running" in event for event in result.events), result.events
    assert live_processes_with(tag) == []


def test_time_limit_ends_everything(tmp_path):
    tag = f"{uuid.uuid4().int % 10**6 + 10**6}.125"
    result = Sandbox(use_bubblewrap=BUBBLEWRAP is not None).run(
        ["bash", "-c", f"sleep {tag} & sleep {tag}"], tmp_path / "work", timeout=3)
    assert result.returncode is None
    assert live_processes_with(tag) == []


def test_limits_are_checked():
    with pytest.raises(ValueError, match="positive number of GiB"):
        Limits(memory_gib=0)
    with pytest.raises(ValueError, match="at least 8"):
        Limits(processes=2)
