"""Pin the notebooks that the published book's Colab and Binder buttons open to the build.

Every notebook's first code cell installs mmbook on Colab from the repository and branch of
``_config.yml`` (``mmbook @ git+URL@main``). A learner who opens a chapter from the published
book months later would then get today's ``main``, not the code that produced the page's
numbers. The publish workflow therefore builds the book with its launch buttons pointing at
a branch of its own (``published``) and, after the build, pushes the notebooks there with
every install cell pinned to the built commit (``make publish-notebooks``).

Usage::

    python scripts/pin_notebooks.py --launch-branch published     # before the build: the buttons' branch
    python scripts/pin_notebooks.py --ref COMMIT                  # after it: install cells install COMMIT

Both rewrite files in place (``_config.yml``; ``book/**/*.ipynb``) and change nothing else.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

_BRANCH_LINE = re.compile(r"^(?P<indent>[ \t]+)branch:[ \t]*(?P<branch>\S+)[ \t]*$", re.MULTILINE)
_REF = re.compile(r"^[\w./-]+$")


def repository(config: str) -> tuple[str, str]:
    """``(url, branch)`` of the ``repository:`` section of a ``_config.yml`` text."""
    section = (yaml.safe_load(config) or {}).get("repository")
    if not isinstance(section, dict):
        raise ValueError("_config.yml has no 'repository:' section")
    url, branch = section.get("url"), section.get("branch")
    if not url or not branch:
        raise ValueError("_config.yml's repository section needs 'url:' and 'branch:'")
    return str(url), str(branch)


def check_ref(ref: str) -> str:
    if not _REF.match(ref) or ref.startswith("-"):
        raise ValueError(f"not a git branch, tag or commit: {ref!r}")
    return ref


def set_launch_branch(config: str, branch: str) -> str:
    """The ``_config.yml`` text with the repository's ``branch:`` set to ``branch``."""
    head, body = config.split("\nrepository:", 1)
    section, *rest = re.split(r"(\n(?=\S))", body, maxsplit=1)
    section = _BRANCH_LINE.sub(lambda m: f"{m['indent']}branch: {check_ref(branch)}", section, count=1)
    return head + "\nrepository:" + section + "".join(rest)


def pin_notebook(text: str, url: str, branch: str, ref: str) -> str:
    """A notebook's JSON text with its install cell installing ``url@ref`` instead of ``url@branch``.

    Raises:
        ValueError: the notebook has no install cell for ``url@branch``.
    """
    old, new = f"git+{url}@{branch}", f"git+{url}@{check_ref(ref)}"
    notebook = json.loads(text)
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if old in source:
            pinned = source.replace(old, new)
            cell["source"] = pinned.splitlines(keepends=True) if isinstance(cell["source"], list) else pinned
            return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
    raise ValueError(f"no install cell for {old}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", help="the commit (or tag) the install cells should install")
    parser.add_argument("--launch-branch", help="the branch the Colab and Binder buttons open")
    parser.add_argument("--root", type=Path, default=Path("."), help="the repository (with _config.yml and book/)")
    args = parser.parse_args(argv)
    if not args.ref and not args.launch_branch:
        parser.error("give --ref, --launch-branch or both")
    config_path = args.root / "_config.yml"
    try:
        config = config_path.read_text(encoding="utf-8")
        url, branch = repository(config)
        if args.ref:
            notebooks = sorted(p for p in (args.root / "book").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
            for path in notebooks:
                path.write_text(pin_notebook(path.read_text(encoding="utf-8"), url, branch, args.ref),
                                encoding="utf-8")
            print(f"{len(notebooks)} notebooks install mmbook from {url}@{args.ref}")
        if args.launch_branch:
            config_path.write_text(set_launch_branch(config, args.launch_branch), encoding="utf-8")
            print(f"launch buttons open branch {args.launch_branch} of {url}")
    except (OSError, ValueError, yaml.YAMLError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
