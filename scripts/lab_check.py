"""Open a chapter in JupyterLab, as `make lab` does, in headless Chromium, and check what a learner sees.

Usage::

    python scripts/lab_check.py [NOTEBOOK ...] [--out _build/lab-check]

NOTEBOOK is a path under ``book/`` (default: the first chapter). It starts JupyterLab on a free
local port (with notebook windowing off, so every cell is drawn), opens each notebook and
asserts that jupyterlab-myst renders the book's markup:

- no raw MyST markup in the rendered text: no directive fence (```` ```{exercise} ````),
  no ``{cite}``/``{ref}`` role and no ``(label)=`` target left as text;
- every exercise and concept question is drawn as a box with its title, and every gated
  solution as a "Solution" dropdown, folded;
- every cell inside a solution is folded: JupyterLab shows only its first line, and that line
  is the neutral ``# Solution`` or ``% Solution`` (``mmbook.course.markup.FOLDED_FIRST_LINE``),
  so reading on shows nothing of the answer.

It saves a screenshot of the first exercise of each notebook to ``--out``. Glue roles show
their names in JupyterLab (the values are in the output of the cell that computes them),
and the prose cells inside a solution stay visible: jupyterlab-myst draws markdown cells
itself and folds them to their first line like code cells. Needs Chromium, chromedriver and selenium, like
``scripts/browser_check.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser_check import missing_requirements, start_browser  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mmbook.course.markup import (FOLDED_FIRST_LINE, cell_source, concept_questions, exercises,  # noqa: E402
                                  solution_span_cells)

RAW_MARKUP = re.compile(r"`{3,}\{[\w-]+\}|\{(?:cite|ref|doc|numref)\}`|^\([\w-]+\)=\s*$", re.MULTILINE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_lab(book: Path, port: int, token: str, log: Path) -> subprocess.Popen:
    """JupyterLab on ``port``, serving ``book``, with windowing off (all cells drawn)."""
    settings = Path(tempfile.mkdtemp(prefix="lab-settings-"))
    tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings), OMP_NUM_THREADS="1")
    jupyter = Path(sys.executable).parent / "jupyter"
    command = [str(jupyter), "lab", "--no-browser", f"--port={port}", f"--ServerApp.token={token}",
               f"--ServerApp.root_dir={book}", "--allow-root"]
    lab = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    for _ in range(240):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api?token={token}", timeout=2)
            return lab
        except OSError:
            if lab.poll() is not None:
                raise RuntimeError(f"JupyterLab exited; see {log}")
            time.sleep(0.5)
    lab.terminate()
    raise RuntimeError(f"JupyterLab did not answer within 2 minutes; see {log}")


def check_notebook(driver, url: str, source: dict, shot: Path, wait: float = 90.0) -> list[str]:
    """Problems with the notebook at ``url`` as JupyterLab draws it (empty when it is right)."""
    expected_boxes = len(exercises(source)) + len(concept_questions(source))
    spans = solution_span_cells(source["cells"])
    solutions = sum(1 for c in source["cells"] if "{solution-start}" in cell_source(c))
    folded_code = [i for i in spans if source["cells"][i]["cell_type"] == "code"]
    driver.get(url)
    script = """
        const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
        if (!nb) return null;
        return {cells: nb.querySelectorAll('.jp-Cell').length,
                markdown: [...nb.querySelectorAll('.jp-MarkdownCell .jp-RenderedMarkdown, .jp-MarkdownCell .myst')]
                            .map(e => e.innerText).join('\\n'),
                text: nb.innerText,
                dropdowns: nb.querySelectorAll('details').length,
                open: nb.querySelectorAll('details[open]').length,
                placeholders: nb.querySelectorAll('.jp-InputPlaceholder').length,
                shown: [...nb.querySelectorAll('.jp-Cell')].map(c => c.innerText.trim())};
    """
    titles = [e.title for e in exercises(source) + concept_questions(source) if e.title]
    state, deadline = None, time.monotonic() + wait
    while time.monotonic() < deadline:  # until every cell is drawn and jupyterlab-myst has rendered them all
        state = driver.execute_script(script)
        if (state and state["cells"] >= len(source["cells"]) and state["dropdowns"] >= solutions
                and all(title in state["text"] for title in titles)):
            break
        time.sleep(1)
    if not state:
        return ["the notebook did not open"]
    problems = []
    if state["cells"] < len(source["cells"]):
        problems.append(f"only {state['cells']} of {len(source['cells'])} cells drawn")
    raw = sorted(set(RAW_MARKUP.findall(state["markdown"])))
    if raw:
        problems.append(f"raw MyST markup in the rendered text: {raw[:5]} (is jupyterlab-myst enabled?)")
    if state["dropdowns"] < solutions:
        problems.append(f"{state['dropdowns']} dropdowns drawn for {solutions} gated solutions")
    if state["open"]:
        problems.append(f"{state['open']} solution dropdown(s) open; they should start folded")
    if state["placeholders"] < len(folded_code):
        problems.append(f"{state['placeholders']} folded inputs for {len(folded_code)} code cells inside solutions")
    for index in folded_code:
        lines = [line for line in cell_source(source["cells"][index]).splitlines() if line.strip()]
        if len(lines) > 1 and lines[-1].strip() in state["text"]:
            problems.append(f"the code of solution cell {index} is shown in full: {lines[-1].strip()[:60]!r}")
    neutral = set(FOLDED_FIRST_LINE.values())
    for index in spans:
        shown = state["shown"][index] if index < len(state["shown"]) else ""
        if shown not in neutral:
            problems.append(f"folded solution cell {index} shows {shown[:60]!r}, not one of {sorted(neutral)}")
    missing = [t for t in titles if t not in state["text"]]
    if missing or expected_boxes == 0:
        problems.append(f"exercise titles not drawn: {missing[:3]}")
    driver.execute_script("""
        const first = [...document.querySelectorAll('.jp-MarkdownCell')].find(c => c.innerText.includes(arguments[0]));
        if (first) first.scrollIntoView();""", titles[0] if titles else "")
    time.sleep(1)
    driver.save_screenshot(str(shot))
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", default=["ch01_what_is_multimodal/what_is_multimodal.ipynb"],
                        help="notebooks under book/")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "lab-check", help="where the screenshots go")
    args = parser.parse_args(argv)
    if (reason := missing_requirements()) is not None:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    book = ROOT / "book"
    for notebook in args.notebooks:
        if not (book / notebook).is_file():
            print(f"error: no notebook book/{notebook}", file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    port, token = free_port(), "lab-check"
    lab = start_lab(book, port, token, args.out / "jupyterlab.log")
    failed = 0
    try:
        driver = start_browser(Path(tempfile.mkdtemp(prefix="lab-check-profile-")))
        try:
            for notebook in args.notebooks:
                source = json.loads((book / notebook).read_text(encoding="utf-8"))
                shot = args.out / (Path(notebook).stem + ".png")
                problems = check_notebook(driver, f"http://127.0.0.1:{port}/lab/tree/{notebook}?token={token}", source,
                                          shot)
                print(f"{notebook}: {'ok' if not problems else 'FAILED'} (screenshot {shot})")
                for problem in problems:
                    print(f"  - {problem}")
                failed += bool(problems)
        finally:
            driver.quit()
    finally:
        lab.terminate()
        lab.wait(30)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
