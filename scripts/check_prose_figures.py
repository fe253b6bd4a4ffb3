"""Find run figures typed into the prose of the book's notebooks instead of glued.

Usage::

    python scripts/check_prose_figures.py [NOTEBOOK_OR_FOLDER ...]   # default: book/

A *figure* is a percentage with two or more digits or a decimal point (``46%``, ``4.5%``),
a decimal with two or more digits after the point (``0.53``, ``1.25``), or a signed or
two-digit count of points (``+29 points``, ``16 points``). The scanner reads the markdown
cells of each notebook and reports every figure that is not

- inside math (``$...$``, ``$$...$$``, a ``{math}`` block) or code (inline or fenced),
- inside a link target, a URL or an arXiv identifier,
- inside a role such as ``{glue:text}`name:.3f``` or ``{ref}`...```,
- on a line that quotes its source: one that holds a ``{cite}`` role or a
  ``<!-- quoted: SOURCE -->`` comment (for figures from a paper or from
  ``benchmarks/RESULTS.md``),
- inside a block that code writes, between the MyST comments ``% BEGIN GENERATED ...``
  and ``% END GENERATED`` (the course map's table, written by ``mmbook.course.course_map``).

Notebooks are read cell by cell; the book's Markdown pages (``.md``) as one cell each.

Exit status 1 when something was found, with one line per figure.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

FIGURE = re.compile(
    r"(?<![\w.@])("
    r"\d{2,}(?:\.\d+)?\s?%"                  # 46%, 81.45%
    r"|\d+\.\d+\s?%"                          # 4.5%
    r"|[+\-\u2212]?\d*\.\d{2,}(?!\d|\.\d)"   # 0.53, .745, -0.12 (not 2.11.0)
    r"|[+\-\u2212]\d+(?:\.\d+)?\s+points?"    # +29 points, -3 points
    r"|\d{2,}(?:\.\d+)?\s+points?"            # 16 points
    r")"
)
QUOTED_MARKER = re.compile(r"<!--\s*quoted:\s*\S.*?-->|\{cite(?::\w+)?\}`")
ROLE = re.compile(r"\{[\w:+-]+\}`[^`]*`")
INLINE_CODE = re.compile(r"``.*?``|`[^`]*`")
HTML_COMMENT = re.compile(r"<!--.*?-->")
VERSION = re.compile(r"\b\d+\.\d+\.\d+\b")
LINK = re.compile(r"\]\([^)]*\)|<?https?://[^\s>)]+>?|\barXiv:\s?\d{4}\.\d{4,5}(?:v\d+)?", re.IGNORECASE)
FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*(\{[\w:-]+\}|[\w+-]*)")
# Fenced blocks whose body is prose and is scanned; every other fenced block is code or math.
PROSE_DIRECTIVES = {
    "{exercise}", "{solution}", "{solution-start}", "{solution-end}", "{note}", "{tip}", "{warning}",
    "{admonition}", "{important}", "{hint}", "{attention}", "{caution}", "{seealso}", "{margin}",
    "{sidebar}", "{epigraph}", "{figure}", "{table}", "{list-table}", "{prf:definition}", "{prf:theorem}",
}


@dataclass(frozen=True)
class Offender:
    """One unglued figure: where it is and the line that holds it."""

    path: Path
    cell: int
    cell_id: str | None
    line: int
    figure: str
    text: str

    def __str__(self) -> str:
        return f"{self.path}: cell {self.cell} (id {self.cell_id}), line {self.line}: {self.figure!r} in {self.text.strip()!r}"


def prose_lines(source: str) -> list[tuple[int, str]]:
    """The lines of a markdown cell that are prose, with their 1-based numbers.

    Math (``$...$``, ``$$...$$``, ``{math}`` blocks), fenced code blocks and the option lines of directives (``:label: ...``)
    are left out; the bodies of prose directives such as ``{exercise}`` are kept.
    """
    # Math may span lines; blank it out first, keeping the line breaks.
    source = re.sub(r"\$\$.+?\$\$|\$[^$]+?\$", lambda m: re.sub(r"[^\n]", " ", m.group()), source, flags=re.S)
    lines = source.splitlines()
    generated = False
    for number, line in enumerate(lines):
        if line.startswith("% BEGIN GENERATED"):
            generated = True
        elif line.startswith("% END GENERATED"):
            generated = False
            lines[number] = ""
        if generated:
            lines[number] = ""
    kept: list[tuple[int, str]] = []
    stack: list[tuple[str, bool]] = []  # (fence, is_prose) of the open fenced blocks
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        fence = FENCE.match(line)
        if fence:
            marker, kind = fence.group(1), fence.group(2)
            if stack and stack[-1][0] == marker and not kind:
                stack.pop()
                continue
            if not stack or stack[-1][1]:
                stack.append((marker, kind in PROSE_DIRECTIVES))
                continue
        if stack and not stack[-1][1]:
            continue
        if stack and stripped.startswith(":") and re.match(r"^:[\w-]+:", stripped):
            continue  # a directive option, e.g. :label: or :class:
        kept.append((number, line))
    return kept


def figures_in_line(line: str) -> list[str]:
    """The unglued figures in one prose line (none on a line that quotes its source)."""
    if QUOTED_MARKER.search(line):
        return []
    text = HTML_COMMENT.sub(" ", line)
    text = ROLE.sub(" ", text)
    text = INLINE_CODE.sub(" ", text)
    text = VERSION.sub(" ", text)
    text = LINK.sub(" ", text)
    return [match.group(1) for match in FIGURE.finditer(text)]


def scan_notebook(path: Path) -> list[Offender]:
    """Every unglued figure in the markdown cells of the notebook at ``path`` (or in a ``.md`` page)."""
    try:
        if Path(path).suffix == ".md":
            notebook = {"cells": [{"cell_type": "markdown", "source": Path(path).read_text(encoding="utf-8")}]}
        else:
            notebook = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a readable notebook (.ipynb JSON): {error}") from error
    offenders = []
    for index, cell in enumerate(notebook.get("cells", [])):
        if cell.get("cell_type") != "markdown":
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        for number, line in prose_lines(source):
            for figure in figures_in_line(line):
                offenders.append(Offender(Path(path), index, cell.get("id"), number, figure, line))
    return offenders


GLUE_REFERENCE = re.compile(r"\{glue(?::\w*)?\}`([^`:]+)")
GLUE_CALL = re.compile(r"""\bglue\(\s*(f?)(["'])(.+?)\2""")


def missing_glue(path: Path) -> list[str]:
    """Glue names that the markdown of the notebook at ``path`` pastes but none of its code cells glues.

    A name glued with an f-string (``glue(f"acc_{key}", ...)``) matches any text in place of each ``{...}``.
    """
    notebook = json.loads(Path(path).read_text(encoding="utf-8"))
    sources = [(cell["cell_type"], cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"]))
               for cell in notebook.get("cells", [])]
    patterns = []
    for kind, source in sources:
        if kind != "code":
            continue
        for is_f, _, name in GLUE_CALL.findall(source):
            parts = re.split(r"\{[^}]*\}", name) if is_f else [name]
            patterns.append(re.compile(".+".join(re.escape(part) for part in parts) + "$"))
    referenced = [name.strip() for kind, source in sources if kind == "markdown" for name in GLUE_REFERENCE.findall(source)]
    return sorted({name for name in referenced if not any(p.match(name) for p in patterns)})


def notebooks_under(paths: list[Path]) -> list[Path]:
    """The notebooks and Markdown pages named, and those under the folders named (checkpoints skipped), sorted."""
    found = []
    for path in paths:
        if path.is_dir():
            found += [p for suffix in ("*.ipynb", "*.md") for p in path.rglob(suffix)
                      if ".ipynb_checkpoints" not in p.parts and "_build" not in p.parts]
        elif path.suffix in (".ipynb", ".md"):
            found.append(path)
        else:
            raise ValueError(f"{path} is neither a notebook (.ipynb), a Markdown page (.md) nor a folder")
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    paths = [Path(a) for a in args] or [Path(__file__).resolve().parents[1] / "book"]
    offenders = [o for notebook in notebooks_under(paths) for o in scan_notebook(notebook)]
    for offender in offenders:
        print(offender)
    if offenders:
        print(f"{len(offenders)} unglued figure(s): glue them ({{glue:text}}`name:fmt`) or, for a figure from a "
              "paper or benchmarks/RESULTS.md, name the source with {cite} or <!-- quoted: SOURCE --> on the same line")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
