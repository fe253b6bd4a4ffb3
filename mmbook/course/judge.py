"""Graded checks outside the student's kernel, and the tampering the grader looks for.

``mmbook grade`` runs a submission in a Jupyter kernel, where the student's code runs
first and could replace anything in that process: ``check``, ``CHECKERS``, ``print``,
``torch.allclose``. So the kernel's own checker output is only feedback. The verdict
comes from here:

1. After each checker cell, the grader adds a *capture* cell (:func:`capture_source`) that
   writes the answer the checker cell passes to ``check`` to a file with ``cloudpickle``
   (a function defined in the notebook travels by value; modules such as ``torch``
   travel by name and are imported afresh).
2. When the notebook has run, each answer is checked in a new Python process
   (``python -m mmbook.course.judge LABEL ANSWER_FILE [--checks FILE]``, see :func:`judge`):
   a fresh interpreter that imports the checkers from the installed package (or from the
   instructor's ``--checks`` file), where nothing the notebook did to its own process
   exists. It prints one JSON line, ``{"status": ..., "detail": ...}``.
3. :func:`tampering` reads the submission's own code (every code cell that is not a cell
   of the edition the students were given) for what tampering looks like: rebinding
   ``check`` or the checker machinery, changing ``CHECKERS``, touching ``builtins``,
   assigning attributes of imported modules (monkeypatching), replacing ``sys.modules``
   entries, and checker cells that differ from the edition. The grader flags those and
   scores the exercises they can affect 0.

What this does not stop: the answer's own code runs in the judge's process when the
checker calls it, so a function written to attack the checker from inside (rather than
to answer) could still do so; such code has to patch something to work, which
:func:`tampering` looks for, and the grader's sandbox limits what it can reach.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import runpy
import sys
from dataclasses import dataclass
from pathlib import Path

#: Names of the checker machinery; student code that binds one of them is tampering.
CHECKER_NAMES = frozenset({"check", "CHECKERS", "checker_for", "register", "passed_line", "ExerciseError",
                           "ExerciseNotDone", "check_value", "check_choice", "check_shape", "check_module_output"})

#: Module settings a notebook may change without touching grading (plot style, kernels' speed).
HARMLESS_SETTINGS = ("plt.rcParams", "matplotlib.rcParams", "mpl.rcParams", "torch.backends.")


# --- capture (runs in the student's kernel) -------------------------------------------------------

def check_call_arguments(source: str, label: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The argument expressions after the label in ``check("<label>", ...)`` in a checker cell's source.

    Returns ``(positional sources, [(keyword, source)])``.

    Raises:
        ValueError: the source has no such call (the edition's checker cell is malformed).
    """
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        function = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        first = node.args[0]
        if function == "check" and isinstance(first, ast.Constant) and first.value == label:
            if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
                raise ValueError(f"the checker cell of {label} passes *args or **kwargs; name each answer")
            return ([ast.unparse(a) for a in node.args[1:]], [(k.arg, ast.unparse(k.value)) for k in node.keywords])
    raise ValueError(f"the checker cell of {label} has no check({label!r}, ...) call:\n{source}")


def capture_source(checker_source: str, label: str, answer_file: Path) -> str:
    """The code of a cell that pickles the answers of ``label``'s checker cell to ``answer_file``."""
    positional, keywords = check_call_arguments(checker_source, label)
    arguments = "(" + "".join(f"{p}, " for p in positional) + ")"
    options = "{" + ", ".join(f"{k!r}: {v}" for k, v in keywords) + "}"
    return (f"# mmbook grade: the answers of {label}, for the graded check outside this kernel\n"
            "import cloudpickle as _mmbook_cloudpickle\n"
            f"with open({str(answer_file)!r}, 'wb') as _mmbook_answer_file:\n"
            f"    _mmbook_answer_file.write(_mmbook_cloudpickle.dumps(({arguments}, {options})))\n"
            "del _mmbook_cloudpickle, _mmbook_answer_file")


# --- the graded check (runs in a fresh process) ---------------------------------------------------

def judge(label: str, answer_file: Path, checks: Path | None = None) -> dict[str, str]:
    """Check the answers pickled in ``answer_file`` with the checker registered for ``label``.

    ``checks``: an instructor's Python file to run first (it registers graded checks with
    :func:`mmbook.exercises.register`); otherwise the package's :data:`~mmbook.exercises.CHECKERS`.
    Returns ``{"status": "pass"|"fail"|"error", "detail": str}``, and ``"credit"``, the fraction of
    the points earned, when a multi-part answer is partly right (:func:`mmbook.exercises.check_parts`).
    """
    import cloudpickle

    from mmbook import exercises

    if checks is not None:
        runpy.run_path(str(checks), run_name="mmbook_instructor_checks")
    if label not in exercises.CHECKERS:
        return {"status": "error", "detail": f"no graded check for {label}"
                + ("" if checks else "; give the instructor's checks with --checks")}
    try:
        with open(answer_file, "rb") as handle:
            positional, keywords = cloudpickle.load(handle)
    except FileNotFoundError:
        return {"status": "error", "detail": "the checker cell did not run, so there is no answer to grade"}
    except Exception as error:  # an answer that cannot leave its kernel (e.g. it holds an open file)
        return {"status": "error", "detail": f"the answer could not be read outside the notebook "
                                             f"({type(error).__name__}: {error})"}
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            exercises.check(label, *positional, **keywords)
    except exercises.ExerciseNotDone:
        return {"status": "fail", "detail": "not done (the starter's ... is still there)"}
    except (AssertionError, NotImplementedError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        verdict = {"status": "fail", "detail": message[len(label) + 2:] if message.startswith(f"{label}: ") else message}
        if isinstance(error, exercises.PartlyRight):  # some parts right: their share of the points
            verdict["credit"] = error.passed / error.total
        return verdict
    except Exception as error:
        return {"status": "error", "detail": f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}".rstrip(": ")}
    return {"status": "pass", "detail": ""}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmbook.course.judge",
                                     description="Grade one captured answer in this fresh process.")
    parser.add_argument("label")
    parser.add_argument("answer_file", type=Path)
    parser.add_argument("--checks", type=Path)
    args = parser.parse_args(argv)
    result = judge(args.label, args.answer_file, args.checks)
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    return 0


# --- tampering (a static reading of the submission) -----------------------------------------------

@dataclass(frozen=True)
class Tampering:
    """Code in cell ``cell`` that tampers with grading; ``label`` is set when it concerns one exercise only."""

    cell: int
    reason: str
    label: str | None = None


def _python_of(source: str) -> str:
    """A code cell's source as plain Python (IPython's ``%magics`` and ``!shell`` lines translated)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # pragma: no cover - IPython comes with the kernel
        return source
    return TransformerManager().transform_cell(source)


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _dotted(node: ast.AST) -> str:
    try:
        return ast.unparse(node)
    except Exception:  # pragma: no cover
        return "?"


def code_tampering(source: str, modules: set[str]) -> list[str]:
    """Why the Python ``source`` of one cell tampers with grading (empty when it does not).

    ``modules``: the names bound to imported modules so far in the notebook (updated in place).
    """
    try:
        tree = ast.parse(_python_of(source))
    except SyntaxError:
        return []
    reasons: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                modules.add(alias.asname or alias.name.split(".")[0])
                if alias.name == "builtins":
                    reasons.append("imports builtins")
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                bound = alias.asname or alias.name
                if alias.name[:1].islower() and alias.name != "*":
                    modules.add(bound)  # a submodule or a function; attributes of either count as patching
                if node.module == "builtins":
                    reasons.append(f"imports {alias.name} from builtins")
                elif alias.asname and alias.name in CHECKER_NAMES:
                    reasons.append(f"imports {alias.name} under another name ({alias.asname})")
        elif isinstance(node, ast.Name) and node.id in {"__builtins__", "__import__"}:
            reasons.append(f"uses {node.id}")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in CHECKER_NAMES:
            reasons.append(f"defines its own {node.name}")
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name) and isinstance(leaf.ctx, (ast.Store, ast.Del)) and leaf.id in CHECKER_NAMES:
                        reasons.append(f"rebinds {leaf.id}")
                    elif isinstance(leaf, (ast.Attribute, ast.Subscript)) and isinstance(leaf.ctx, (ast.Store, ast.Del)):
                        root = _root_name(leaf)
                        if _dotted(leaf).startswith(HARMLESS_SETTINGS):
                            continue
                        if root in modules or root in CHECKER_NAMES or root in {"sys", "builtins"}:
                            reasons.append(f"changes {_dotted(leaf)}")
        elif isinstance(node, ast.Call):
            function = node.func
            name = function.id if isinstance(function, ast.Name) else None
            if name in {"setattr", "delattr"} and node.args and _root_name(node.args[0]) in modules | CHECKER_NAMES:
                reasons.append(f"calls {name} on {_dotted(node.args[0])}")
            if isinstance(function, ast.Attribute) and _root_name(function.value) in CHECKER_NAMES | {"sys"} \
                    and function.attr in {"update", "pop", "clear", "setdefault", "__setitem__", "popitem"}:
                reasons.append(f"calls {_dotted(function)}")
            if name == "register" or (isinstance(function, ast.Attribute) and function.attr == "register"
                                      and _root_name(function.value) in modules):
                reasons.append("registers a checker")
    return list(dict.fromkeys(reasons))


def tampering(notebook: dict, edition: dict, checker_sources: dict[str, str]) -> list[Tampering]:
    """What in a submission tampers with grading.

    Args:
        notebook: the submission as submitted.
        edition: the student edition it answers; its code cells are the book's own and are trusted.
        checker_sources: label -> the edition's checker cell source.
    """
    from mmbook.course.markup import CHECKER_TAG, cell_source, cell_tags, checker_label

    def is_checker(cell: dict) -> bool:
        return cell["cell_type"] == "code" and CHECKER_TAG in cell_tags(cell)

    trusted = {cell_source(c) for c in edition["cells"] if c["cell_type"] == "code"}
    # The k-th checker cell of the submission stands where the edition's k-th one does, so an
    # edited cell whose label can no longer be read is still matched to its exercise.
    expected = iter([checker_label(c) for c in edition["cells"] if is_checker(c)])
    modules: set[str] = set()
    found: list[Tampering] = []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = cell_source(cell)
        if is_checker(cell):
            in_edition = next(expected, None)
            label = checker_label(cell) or in_edition
            if label in checker_sources and source != checker_sources[label]:
                found.append(Tampering(index, "the checker cell was edited", label))
            continue
        if source in trusted:
            code_tampering(source, modules)  # keeps track of the imports of the book's own cells
            continue
        found.extend(Tampering(index, reason) for reason in code_tampering(source, modules))
    return found


if __name__ == "__main__":
    sys.exit(main())
