"""Run one notebook in a fresh Jupyter kernel: ``python -m mmbook.course.execute IN.ipynb OUT.ipynb``.

``mmbook grade`` runs this inside its sandbox (:mod:`mmbook.course.sandbox`), so the kernel and
everything the notebook starts are confined with it. Errors in cells do not stop the run.
The executed notebook is written to ``OUT``; the last line of stdout is JSON,
``{"stopped": null}`` when the notebook ran to its end, else why it stopped (time limit,
dead kernel).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path


def execute(notebook: dict, timeout: float, kernel: str, folder: Path) -> str | None:
    """Run ``notebook`` in place in a fresh kernel whose working folder is ``folder``.

    Returns ``None`` when it ran to the end, otherwise why it stopped.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    node = nbformat.from_dict(notebook)
    deadline = time.monotonic() + timeout
    stopped = None
    client = NotebookClient(node, kernel_name=kernel, allow_errors=True, resources={"metadata": {"path": str(folder)}},
                            timeout_func=lambda cell: max(1, math.ceil(deadline - time.monotonic())),
                            startup_timeout=120)
    try:
        client.execute()
    except CellTimeoutError:
        stopped = f"the notebook ran past the time limit of {timeout:g} s"
    except DeadKernelError:
        stopped = "the kernel died (a crash, or it ran out of memory)"
    except Exception as error:  # a broken kernel must not stop the report
        stopped = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".rstrip(": ")
    notebook["cells"] = [dict(cell) for cell in node.cells]
    return stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmbook.course.execute", description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path, help="the notebook to run")
    parser.add_argument("output", type=Path, help="where to write the executed notebook")
    parser.add_argument("--timeout", type=float, required=True, help="seconds for the whole notebook")
    parser.add_argument("--kernel", default="python3", help="the Jupyter kernel (default python3)")
    parser.add_argument("--folder", type=Path, default=Path.cwd(), help="the kernel's working folder")
    args = parser.parse_args(argv)
    notebook = json.loads(args.notebook.read_text(encoding="utf-8"))
    args.folder.mkdir(parents=True, exist_ok=True)
    stopped = execute(notebook, args.timeout, args.kernel, args.folder)
    args.output.write_text(json.dumps(notebook), encoding="utf-8")
    print(json.dumps({"stopped": stopped}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
