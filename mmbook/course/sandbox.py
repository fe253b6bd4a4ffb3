"""Run a student's code where it cannot reach the network, write outside its folder or outlive grading.

``mmbook grade`` runs every submission, and every graded check of it, through :class:`Sandbox`:

- **bubblewrap** (``bwrap``, Debian's package ``bubblewrap``) gives the command new namespaces
  (``--unshare-all``: no network but loopback, its own process IDs), the file system read-only
  (``--ro-bind / /``) except a private folder and an empty ``/tmp``, and hides the folders that
  hold the submissions and the instructor's checks. When the command ends, its process-ID
  namespace ends with it, so nothing it started keeps running.
- **limits**: address space (``RLIMIT_AS``, default :data:`DEFAULT_MEMORY_GIB` GiB) and the number of
  processes and threads. The process limit is a ``pids`` cgroup where one can be made (as
  root the kernel ignores ``RLIMIT_NPROC``), else ``RLIMIT_NPROC`` above what the user
  already runs.
- **a supervisor** (``python -m mmbook.course.sandbox -- COMMAND...``) runs the command, and when it
  ends lists the processes it left behind, reports them on stderr (:data:`REPORT_PREFIX`)
  and ends them.

Without bubblewrap (:func:`find_bubblewrap` finds none) the limits and the supervisor still
apply, but the code can write wherever the grader can and can use the network;
:data:`NO_SANDBOX_WARNING` says so. Install it with ``apt-get install bubblewrap``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

#: Default address-space limit of a sandboxed command, in GiB (PyTorch on the CPU needs about 3).
DEFAULT_MEMORY_GIB = 8.0
#: Default limit on the processes and threads a sandboxed command may add (a Jupyter kernel with
#: PyTorch runs about 40 threads).
DEFAULT_PROCESSES = 256
#: Environment variable that marks every process a sandboxed command starts.
MARKER = "MMBOOK_SANDBOX_ID"
#: Lines of the supervisor's stderr that carry its report (JSON after the prefix).
REPORT_PREFIX = "mmbook-sandbox: "
NO_SANDBOX_WARNING = ("bubblewrap (bwrap) was not found, so submissions run without a sandbox: they can write "
                      "wherever you can and use the network (limits on memory and processes still apply, and "
                      "processes they leave running are ended). Install it: apt-get install bubblewrap.")


def find_bubblewrap() -> str | None:
    """The path of ``bwrap`` if it is installed and can make namespaces here, else ``None``."""
    tool = shutil.which("bwrap")
    if tool is None:
        return None
    try:
        probe = subprocess.run([tool, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"],
                               capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return tool if probe.returncode == 0 else None


@dataclass(frozen=True)
class Limits:
    """What one sandboxed command may use."""

    memory_gib: float = DEFAULT_MEMORY_GIB
    processes: int = DEFAULT_PROCESSES

    def __post_init__(self) -> None:
        if not self.memory_gib > 0:
            raise ValueError(f"the memory limit must be a positive number of GiB, got {self.memory_gib}")
        if self.processes < 8:
            raise ValueError(f"the process limit must be at least 8 (a kernel needs several), got {self.processes}")


@dataclass
class SandboxResult:
    """What a sandboxed command did: its exit status and output, and what the sandbox saw."""

    returncode: int | None  # None: stopped at the time limit
    stdout: str
    stderr: str
    events: list[str] = field(default_factory=list)


def _tasks_of(uid: int) -> int:
    """How many processes and threads the user ``uid`` runs now (what ``RLIMIT_NPROC`` counts)."""
    count = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        uids = re.search(r"^Uid:\s+(\d+)", text, re.M)
        threads = re.search(r"^Threads:\s+(\d+)", text, re.M)
        if uids and int(uids.group(1)) == uid:
            count += int(threads.group(1)) if threads else 1
    return count


class _PidsCgroup:
    """A ``pids`` cgroup (v1 or v2) that caps a command's processes, or nothing where none can be made."""

    ROOTS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))

    def __init__(self, limit: int) -> None:
        self.path: Path | None = None
        for root in self.ROOTS:
            candidate = root / f"mmbook-grade-{uuid.uuid4().hex[:12]}"
            try:
                candidate.mkdir()
            except OSError:
                continue
            try:
                (candidate / "pids.max").write_text(str(limit))
                self.path = candidate
                return
            except OSError:
                candidate.rmdir()

    def join(self) -> None:
        """Move the calling process into the cgroup (called in the child before it runs the command)."""
        if self.path is not None:
            (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def remove(self) -> None:
        """End whatever is still in the cgroup, then remove it."""
        if self.path is None:
            return
        for _ in range(50):
            try:
                pids = [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
            except OSError:
                break
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.05)
        try:
            self.path.rmdir()
        except OSError:
            pass


class Sandbox:
    """Runs commands under bubblewrap (when installed) with :class:`Limits` and a supervisor.

    Args:
        limits: memory and processes per command.
        hide: folders the command must not see (the submissions', the instructor's checks);
            a folder that holds the Python installation or the package is left visible.
        environment: variables every command gets (e.g. ``OMP_NUM_THREADS``).
        use_bubblewrap: ``False`` runs without it even where it is installed (the fallback).
    """

    def __init__(self, limits: Limits = Limits(), hide: tuple[Path, ...] = (), use_bubblewrap: bool = True,
                 environment: dict[str, str] | None = None) -> None:
        self.limits = limits
        self.extra_environment = dict(environment or {})
        self.bubblewrap = find_bubblewrap() if use_bubblewrap else None
        needed = [Path(sys.prefix).resolve(), Path(sys.executable).resolve().parent, Path(__file__).resolve().parents[2]]
        self.hide = tuple(sorted({Path(p).resolve() for p in hide
                                  if not any(n == Path(p).resolve() or Path(p).resolve() in n.parents for n in needed)}))

    @property
    def warning(self) -> str | None:
        """What the grader should say when it runs without a sandbox."""
        return None if self.bubblewrap else NO_SANDBOX_WARNING

    def command(self, argv: list[str], folder: Path) -> list[str]:
        """``argv`` wrapped in bubblewrap (if any) and the supervisor, writing only in ``folder``."""
        supervised = [sys.executable, "-m", "mmbook.course.sandbox", "--", *argv]
        if self.bubblewrap is None:
            return supervised
        folder = str(Path(folder).resolve())
        wrapped = [self.bubblewrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
        for needed in _needed_under_tmp(Path(folder)):  # e.g. a virtual environment in a checkout under /tmp
            wrapped += ["--ro-bind", str(needed), str(needed)]
        for hidden in self.hide:
            if hidden.is_dir() and hidden != Path("/") and not Path(folder).is_relative_to(hidden):
                wrapped += ["--tmpfs", str(hidden)]
        wrapped += ["--bind", folder, folder, "--chdir", folder, "--unshare-all", "--die-with-parent",
                    "--new-session", "--"]
        return wrapped + supervised

    def environment(self, folder: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The command's environment: ours, with home, Jupyter's and matplotlib's folders inside ``folder``."""
        home = str(Path(folder).resolve())
        environment = {**os.environ, "HOME": home, "JUPYTER_RUNTIME_DIR": f"{home}/.jupyter-runtime",
                       "IPYTHONDIR": f"{home}/.ipython", "MPLCONFIGDIR": f"{home}/.matplotlib",
                       MARKER: uuid.uuid4().hex, **self.extra_environment, **(extra or {})}
        environment.pop("JUPYTER_CONFIG_DIR", None)
        return environment

    def run(self, argv: list[str], folder: Path, timeout: float, extra_environment: dict[str, str] | None = None
            ) -> SandboxResult:
        """Run ``argv`` in the sandbox with ``folder`` as its private, writable working folder.

        Returns its exit status (``None`` when it ran past ``timeout`` seconds and was ended),
        its output, and the sandbox's events (processes left running, limits reached).
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        environment = self.environment(folder, extra_environment)
        cgroup = _PidsCgroup(self.limits.processes)
        nproc = None if cgroup.path is not None or os.geteuid() == 0 else _tasks_of(os.getuid()) + self.limits.processes
        # The limits are set by a first stage in a fresh process (see :func:`enter`), not by a
        # preexec_fn, which can deadlock when several threads start processes (``--jobs``).
        enter = [sys.executable, "-m", "mmbook.course.sandbox", "--enter",
                 "--memory-bytes", str(int(self.limits.memory_gib * 2**30))]
        if nproc is not None:
            enter += ["--nproc", str(nproc)]
        if cgroup.path is not None:
            enter += ["--cgroup", str(cgroup.path)]
        process = subprocess.Popen(enter + ["--"] + self.command(argv, folder), cwd=folder, env=environment,
                                   text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
            returncode: int | None = process.returncode
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            returncode = None
        finally:
            left = _end_marked(environment[MARKER])
            cgroup.remove()
        events, kept = [], []
        for line in stderr.splitlines():
            if line.startswith(REPORT_PREFIX):
                events += json.loads(line[len(REPORT_PREFIX):]).get("events", [])
            else:
                kept.append(line)
        if left:
            events.append(f"left {len(left)} process(es) running after the time limit ({', '.join(left[:3])}); "
                          "ended them")
        if cgroup.path is None and nproc is None:
            events.append("the process limit is not enforced: running as root without a writable pids cgroup")
        return SandboxResult(returncode, stdout, "\n".join(kept), events)


def _needed_under_tmp(folder: Path) -> list[Path]:
    """What the sandboxed Python needs that lies under ``/tmp``, which the sandbox replaces with an empty one:
    the interpreter's environment, the package, the import path, the data and its cache (read-only)."""
    candidates = [Path(sys.prefix), Path(sys.exec_prefix), Path(sys.executable).parent,
                  Path(__file__).resolve().parents[2], *(Path(entry) for entry in sys.path if entry)]
    candidates += [Path(os.environ[name]) for name in ("MMBOOK_DATA", "MMBOOK_CACHE") if os.environ.get(name)]
    found: list[Path] = []
    for candidate in candidates:
        for path in {candidate.absolute(), candidate.resolve()}:
            if path.exists() and path.is_relative_to("/tmp") and path != Path("/tmp") \
                    and not folder.is_relative_to(path) and not path.is_relative_to(folder):
                found.append(path)
    found = sorted(set(found))
    return [path for path in found if not any(path != other and path.is_relative_to(other) for other in found)]


def _marked_processes(marker: str, exclude: set[int]) -> dict[int, str]:
    """Processes (pid to command name) whose environment carries ``MARKER=marker``."""
    found = {}
    needle = f"{MARKER}={marker}".encode()
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid in exclude:
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found[pid] = (entry / "comm").read_text().strip()
        except OSError:
            continue
    return found


def _end_marked(marker: str) -> list[str]:
    """End every process that still carries ``marker``; returns their command names."""
    names = []
    for _ in range(20):
        found = _marked_processes(marker, {os.getpid()})
        if not found:
            break
        for pid, name in found.items():
            try:
                os.kill(pid, signal.SIGKILL)
                names.append(name)
            except OSError:
                pass
        time.sleep(0.05)
    return names


def supervise(argv: list[str]) -> int:
    """Run ``argv``; then report and end the processes it left behind. Returns its exit status."""
    marker = os.environ.get(MARKER, "")
    if not marker:
        marker = os.environ[MARKER] = uuid.uuid4().hex
    try:
        process = subprocess.Popen(argv)
    except OSError as error:
        print(f"error: cannot run {argv[0]}: {error}", file=sys.stderr)
        return 127
    signal.signal(signal.SIGTERM, lambda *_: process.kill())
    returncode = process.wait()
    time.sleep(0.2)  # a child that is starting as the command ends
    left = _marked_processes(marker, {1, os.getpid(), process.pid})  # 1: bubblewrap's reaper
    events = []
    if left:
        names = sorted(set(left.values()))
        events.append(f"left {len(left)} process(es) running when it ended ({', '.join(names[:5])}); ended them")
    _end_marked(marker)
    print(REPORT_PREFIX + json.dumps({"events": events}), file=sys.stderr, flush=True)
    return returncode


def enter(command: list[str], memory_bytes: int, nproc: int | None, cgroup: str | None) -> None:
    """Join the pids cgroup, set the limits, and become ``command`` (the first stage of :meth:`Sandbox.run`)."""
    if cgroup:
        (Path(cgroup) / "cgroup.procs").write_text(str(os.getpid()))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    if nproc is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    os.execvp(command[0], command)


def main(argv: list[str] | None = None) -> int:
    """``python -m mmbook.course.sandbox -- COMMAND...``: the supervisor (see :func:`supervise`).

    With ``--enter`` it is the first stage instead: it applies the limits and runs the command in its place.
    """
    parser = argparse.ArgumentParser(prog="python -m mmbook.course.sandbox",
                                     description="Run a command, then report and end what it left running.")
    parser.add_argument("--enter", action="store_true", help="apply the limits, then become the command")
    parser.add_argument("--memory-bytes", type=int, default=int(DEFAULT_MEMORY_GIB * 2**30))
    parser.add_argument("--nproc", type=int)
    parser.add_argument("--cgroup")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    if args.enter:
        enter(command, args.memory_bytes, args.nproc, args.cgroup)
    return supervise(command)


if __name__ == "__main__":
    sys.exit(main())
