"""The instructor's bundle: ``python -m mmbook.course.bundle [instructor] [_build/instructor]`` (``make instructor``).

It writes, into a folder the instructor keeps private (not the published book, not the
student edition, not the package students install):

- ``graded_checks.py``: the graded checks of ``instructor/graded_checks.py`` with a random
  ``COURSE_SEED``, so the extra cases they draw are this course's own; grade with
  ``mmbook grade SUBMISSIONS... --checks <folder>/graded_checks.py``;
- ``README.md``: how to grade with it.

Run it again for a new seed (e.g. each term); ``--seed N`` fixes one.
"""

from __future__ import annotations

import argparse
import re
import secrets
import sys
from pathlib import Path

SEED_LINE = re.compile(r"^COURSE_SEED = \d+$", re.M)

README = """# Instructor bundle (keep private)

Written by `make instructor`. Do not publish this folder or
give it to students: `graded_checks.py` holds the graded checks and this course's seed.

Grade the returned notebooks of one chapter notebook:

    mmbook grade submissions/*.ipynb --checks {folder}/graded_checks.py \\
        --json gradebook.json --csv grades.csv --feedback feedback/ --jobs 2

The graded checks fail answers that use what their exercise forbids (PyTorch's convolution in
"your own conv2d", torchvision's IoU and NMS, the book's InfoNCE, a GMU without its gate), and
test further cases drawn from COURSE_SEED = {seed}. Exercises they do not list keep the
package's checks. See the course map ("Student edition and grading") for the whole workflow.
"""


def build(source: Path, output: Path, seed: int | None = None) -> list[Path]:
    """Write the bundle from the folder ``source`` (the repository's ``instructor/``) into ``output``.

    Raises:
        FileNotFoundError: ``source`` has no ``graded_checks.py``.
        ValueError: its ``COURSE_SEED = <int>`` line is missing.
    """
    checks = Path(source) / "graded_checks.py"
    if not checks.is_file():
        raise FileNotFoundError(f"{checks} not found: give the repository's instructor/ folder")
    text = checks.read_text(encoding="utf-8")
    if not SEED_LINE.search(text):
        raise ValueError(f"{checks} has no line 'COURSE_SEED = <integer>' to set the course's seed in")
    seed = secrets.randbelow(2**31) if seed is None else int(seed)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    written = [output / "graded_checks.py", output / "README.md"]
    written[0].write_text(SEED_LINE.sub(f"COURSE_SEED = {seed}", text, count=1), encoding="utf-8")
    written[1].write_text(README.format(folder=output, seed=seed), encoding="utf-8")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmbook.course.bundle", description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, default=Path("instructor"),
                        help="the repository's instructor/ folder (default: instructor)")
    parser.add_argument("output", nargs="?", type=Path, default=Path("_build/instructor"),
                        help="where to write the bundle (default: _build/instructor)")
    parser.add_argument("--seed", type=int, help="the course's seed (default: a random one)")
    args = parser.parse_args(argv)
    try:
        written = build(args.source, args.output, args.seed)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    print("Keep this folder private: it holds the graded checks.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
