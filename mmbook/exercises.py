"""Checkers for the book's exercises, and the machinery they share.

A notebook checks an exercise with one call in a cell tagged ``checker``::

    from mmbook.exercises import check

    check("ex-cnn-conv2d", my_conv2d)

:func:`check` looks up the checker registered for the exercise label, and

- raises :class:`ExerciseNotDone` (a ``NotImplementedError``) while the answer still
  holds the starter's ``...``: ``exercise ex-cnn-conv2d : replace the ... with your code``;
- raises :class:`ExerciseError` (an ``AssertionError``) when the answer is wrong, with a
  message that says what kind of mistake it is and how to find it, never the expected value
  or the right choice (these checks are formative: a student who could read the answer off the
  message would learn nothing and pass anyway);
- prints ``ex-cnn-conv2d: passed`` (:func:`passed_line`) when it is right.

Both exceptions show in Jupyter as their message alone, without a traceback into
``mmbook``. ``mmbook grade`` reads the outcome from the checker cell's output.

Generic helpers for writing checkers: :func:`check_value`, :func:`check_shape`,
:func:`check_choice` and :func:`check_module_output`. The chapters' checkers live beside
the course tooling, one module per chapter in :mod:`mmbook.course.checks` (some in their
chapter's package: :mod:`mmbook.text.checks`, :mod:`mmbook.alignment.checkers`, ...), and
are registered in :data:`CHECKERS` (label -> ``"module:function"``, imported when first
used, so importing this module stays cheap and imports none of them).
"""

from __future__ import annotations

import ast
import dis
import importlib
import inspect
import math
import textwrap
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn

__all__ = [
    "CHECKERS",
    "ExerciseError",
    "ExerciseNotDone",
    "PartlyRight",
    "check",
    "check_choice",
    "check_module_output",
    "check_parts",
    "check_shape",
    "check_value",
    "checker_for",
    "is_unfinished",
    "passed_line",
    "register",
    "todo",
]


class ExerciseError(AssertionError):
    """The answer to an exercise is wrong; the message says what is wrong and what to check."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows these lines instead of a traceback (a student needs the verdict, not mmbook's frames).
        return f"ExerciseError: {self}".splitlines()


class PartlyRight(ExerciseError):
    """Some parts of a multi-part answer are right, others not (see :func:`check_parts`); a grader
    gives ``passed / total`` of the exercise's points."""

    def __init__(self, message: str, passed: int, total: int) -> None:
        super().__init__(message)
        self.passed, self.total = passed, total

    def __reduce__(self):
        return (PartlyRight, (str(self), self.passed, self.total))


class ExerciseNotDone(NotImplementedError):
    """The answer still holds the starter's ``...``."""

    def __init__(self, label: str) -> None:
        super().__init__(f"exercise {label} : replace the ... with your code")
        self.label = label

    def __reduce__(self):  # pickles with its label (exceptions re-create themselves from args)
        return (ExerciseNotDone, (self.label,))

    def _render_traceback_(self) -> list[str]:
        return [f"NotImplementedError: {self}"]


def todo(label: str) -> NoReturn:
    """Stop an unfinished exercise with one clear line; use it in starter code, e.g. ``return todo("ex-x")``."""
    raise ExerciseNotDone(label)


def passed_line(label: str) -> str:
    """The line :func:`check` prints when an exercise passes (``mmbook grade`` looks for it)."""
    return f"{label}: passed"


# --- is the answer still the starter? -------------------------------------------------------------

def _ellipsis_in_body(function: Callable) -> bool:
    """Whether ``function``'s body still holds a bare ``...`` (not counting ``x[..., 0]`` or annotations)."""
    try:
        source = textwrap.dedent(inspect.getsource(function))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError, IndentationError):  # no source (exec, some frontends): read the code
        return _does_nothing(function)
    definitions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    if not definitions:
        return False
    ignored: set[int] = set()
    for node in ast.walk(definitions[0]):
        if isinstance(node, ast.Subscript):  # x[..., 0] and tuple[int, ...] are real code
            ignored.update(id(inner) for inner in ast.walk(node.slice))
        if isinstance(node, (ast.arg, ast.AnnAssign)) and getattr(node, "annotation", None) is not None:
            ignored.update(id(inner) for inner in ast.walk(node.annotation))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            ignored.update(id(inner) for inner in ast.walk(node.returns))
    return any(isinstance(node, ast.Constant) and node.value is Ellipsis and id(node) not in ignored
               for node in ast.walk(definitions[0]))


def _does_nothing(function: Callable) -> bool:
    """Whether a function (or every method of a class) only returns None: a body of ``...``, ``pass`` or a docstring."""
    if inspect.isclass(function):
        methods = [m for m in vars(function).values() if inspect.isfunction(m)]
        return bool(methods) and any(_does_nothing(m) for m in methods)
    code = getattr(function, "__code__", None)
    if code is None:
        return False
    steps = [(i.opname, i.argval) for i in dis.get_instructions(code) if i.opname not in {"RESUME", "NOP", "CACHE"}]
    return steps in ([("LOAD_CONST", None), ("RETURN_VALUE", None)], [("RETURN_CONST", None)])


def is_unfinished(answer: Any) -> bool:
    """Whether ``answer`` is still a starter: ``...`` itself, a container holding ``...``, or a function
    or class whose code still holds a bare ``...``."""
    if answer is Ellipsis:
        return True
    if isinstance(answer, (list, tuple)):
        return any(is_unfinished(item) for item in answer)
    if isinstance(answer, dict):
        return any(is_unfinished(item) for item in answer.values())
    if inspect.isfunction(answer) or inspect.isclass(answer):
        return _ellipsis_in_body(answer)
    return False


# --- generic checks -----------------------------------------------------------------------------

def _fail(message: str, hint: str | None) -> NoReturn:
    raise ExerciseError(message + (f"; {hint}" if hint else ""))


def _format(value: Any) -> str:
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}" if abs(value) >= 10_000 else str(int(value))
        return f"{value:.4g}"
    return repr(value)


def _too(number: float, expected: float) -> str:
    return "too small" if number < expected else "too large"


def check_value(answer: Any, expected: Any, *, tol: float = 1e-6, rel: float = 0.0, name: str = "your answer",
                hint: str | None = None, wrong: dict[Any, str] | None = None, show_expected: bool = False) -> None:
    """Check a number (or a sequence of numbers) against the expected one.

    Passes when ``|answer - expected| <= max(tol, rel * |expected|)`` for every entry.
    ``wrong`` maps typical wrong answers to the hint that explains them (compared with
    the same tolerance), e.g. ``{2.31: "did you average over the batch?"}``; ``hint`` is
    given when none of them matches. Neither may state the expected value.

    The message says whether the answer is too small or too large, never what it should be:
    a formative check must not hand out the answer. Pass ``show_expected=True`` only where
    seeing the target is harmless (the number is given in the text, say).

    Raises:
        ExerciseError: "your loss is 2.31, which is too large; did you ..." (with ``show_expected``:
            "your loss is 2.31 but should be 1.87 (within 0.01); did you ...").
    """
    if isinstance(expected, (list, tuple)):
        if not isinstance(answer, (list, tuple)) or len(answer) != len(expected):
            got = f"{type(answer).__name__} of length {len(answer)}" if isinstance(answer, (list, tuple)) else type(answer).__name__
            _fail(f"{name} should be a sequence of {len(expected)} numbers, got {got}", hint)
        for index, (got_item, expected_item) in enumerate(zip(answer, expected)):
            check_value(got_item, expected_item, tol=tol, rel=rel, name=f"{name}[{index}]", hint=hint, wrong=wrong,
                        show_expected=show_expected)
        return
    try:
        number = float(answer.item() if hasattr(answer, "item") else answer)
    except (TypeError, ValueError):
        _fail(f"{name} should be a number, got {type(answer).__name__} {answer!r:.40}", hint)
    allowed = max(tol, rel * abs(float(expected)))
    if math.isfinite(number) and abs(number - float(expected)) <= allowed:
        return
    for wrong_value, wrong_hint in (wrong or {}).items():
        if math.isfinite(number) and abs(number - float(wrong_value)) <= allowed:
            hint = wrong_hint
            break
    # The tolerance is worth saying for a measured number, not for a count or a tiny round-off allowance.
    measured = allowed >= 1e-4 and float(expected) != round(float(expected))
    if show_expected:
        within = f" (within {allowed:.2g})" if measured else ""
        _fail(f"{name} is {_format(number)} but should be {_format(float(expected))}{within}", hint)
    if not math.isfinite(number):
        _fail(f"{name} is {_format(number)}, not a finite number", hint)
    within = f" (the check allows a difference of {allowed:.2g})" if measured else ""
    _fail(f"{name} is {_format(number)}, which is {_too(number, float(expected))}{within}", hint)


def check_shape(tensor: Any, expected: Sequence[int], *, name: str = "the output", hint: str | None = None,
                show_expected: bool = False) -> None:
    """Check that ``tensor`` is a tensor (or array) of shape ``expected``.

    The message names the dimensions that are off (and whether too small or too large), not the
    expected shape; pass ``show_expected=True`` where the shape is part of the question's statement
    (a function documented as returning ``(B, V)``, say), not part of its answer.

    Raises:
        ExerciseError: "the output has shape (4, 20): dimension 1 is too large" (with ``show_expected``:
            "the output has shape (4, 20); it should be (4, 10)").
    """
    expected = tuple(expected)
    shape = getattr(tensor, "shape", None)
    if shape is None:
        what = f" of shape {expected}" if show_expected else f" with {len(expected)} dimension{'s' * (len(expected) != 1)}"
        _fail(f"{name} should be a tensor{what}, got {type(tensor).__name__}", hint)
    shape = tuple(shape)
    if shape == expected:
        return
    if show_expected:
        transposed = " (transposed?)" if len(shape) == len(expected) and sorted(shape) == sorted(expected) else ""
        _fail(f"{name} has shape {shape}; it should be {expected}{transposed}", hint)
    if len(shape) != len(expected):
        _fail(f"{name} has shape {shape}, {len(shape)} dimension{'s' * (len(shape) != 1)}; it should have "
              f"{len(expected)}", hint)
    if sorted(shape) == sorted(expected):
        _fail(f"{name} has shape {shape}: the right sizes in the wrong order (transposed?)", hint)
    off = [f"dimension {axis} is {_too(got, want)}" for axis, (got, want) in enumerate(zip(shape, expected)) if got != want]
    _fail(f"{name} has shape {shape}: {', '.join(off)}", hint)


def check_choice(answer: Any, expected: Any, options: Iterable[Any], *, name: str = "your choice",
                 hints: dict[Any, str] | None = None, hint: str | None = None) -> None:
    """Check a multiple-choice answer.

    ``hints`` maps a wrong option to what it overlooks; ``hint`` is given for a wrong option with no
    hint of its own. A hint says what to reconsider, never why the right option is right: with few
    options, an explanation of the answer after one wrong guess is the answer. Where the options'
    own explanations would give the answer away, give one ``hint`` for every wrong option.

    Raises:
        ExerciseError: if ``answer`` is not one of ``options``, or not the expected one.
    """
    options = list(options)
    normalise = (lambda v: v.strip().lower() if isinstance(v, str) else v)
    if normalise(answer) not in [normalise(o) for o in options]:
        _fail(f"{name} is {answer!r}; choose one of {', '.join(repr(o) for o in options)}", None)
    if normalise(answer) != normalise(expected):
        specific = next((h for o, h in (hints or {}).items() if normalise(o) == normalise(answer)), None)
        _fail(f"{name} {answer!r} is not right", specific or hint)


def check_module_output(module: Any, inputs: Any, expected_shape: Sequence[int], *, name: str = "your module",
                        hint: str | None = None, show_expected: bool = False) -> Any:
    """Run ``module(inputs)`` (a list/tuple is not unpacked) and check the output's shape; returns the output.

    ``show_expected`` is passed to :func:`check_shape`.

    Raises:
        ExerciseError: if calling it fails or the shape is wrong, saying which.
    """
    if not callable(module):
        _fail(f"{name} should be a callable module or function, got {type(module).__name__}", hint)
    try:
        output = module(inputs)
    except ExerciseNotDone:
        raise
    except Exception as error:
        _fail(f"{name} raised {type(error).__name__}: {error}", hint)
    check_shape(output, expected_shape, name=f"{name}'s output", hint=hint, show_expected=show_expected)
    return output


# --- the registry -------------------------------------------------------------------------------

#: Exercise label -> ``"module:function"`` of its checker. A checker takes the student's
#: answers (the arguments after the label in :func:`check`), returns on success and raises
#: ``AssertionError`` (or :class:`ExerciseError`) with a message otherwise.
CHECKERS: dict[str, str | Callable[..., Any]] = {
    "ex-cnn-conv2d": "mmbook.cnn:check_conv2d",
    "ex-text-lstm-cell": "mmbook.text:check_lstm_cell",
    "ex-text-attention": "mmbook.text:check_attention",
    "ex-fusion-gmu": "mmbook.fusion.checks:check_fusion_module",
    "ex-obj-iou": "mmbook.objectives.checks:check_iou",
    "ex-obj-entity-f1": "mmbook.objectives.checks:check_entity_f1",
}


def register(label: str, checker: str | Callable[..., Any]) -> None:
    """Register ``checker`` (a function, or ``"module:function"``) for exercise ``label``."""
    if not isinstance(label, str) or not label:
        raise ValueError(f"an exercise label must be a non-empty string, got {label!r}")
    if not (callable(checker) or (isinstance(checker, str) and ":" in checker)):
        raise TypeError(f"a checker must be a function or 'module:function', got {checker!r}")
    CHECKERS[label] = checker


def checker_for(label: str) -> Callable[..., Any]:
    """The checker registered for exercise ``label``.

    Raises:
        KeyError: naming the labels that have checkers.
    """
    if label not in CHECKERS:
        raise KeyError(f"no checker for exercise {label!r}; exercises with checkers: {', '.join(sorted(CHECKERS))}")
    checker = CHECKERS[label]
    if callable(checker):
        return checker
    module_name, _, function_name = checker.partition(":")
    return getattr(importlib.import_module(module_name), function_name)


def _not_done_in_chain(error: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ExerciseNotDone):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def check(label: str, *answers: Any, **options: Any) -> None:
    """Check the answer(s) to exercise ``label`` with its registered checker.

    Args:
        label: the exercise's label, e.g. ``"ex-cnn-conv2d"``.
        *answers: what the checker takes: a function, a module class or values.
        **options: passed on to the checker.

    Raises:
        ExerciseNotDone: an answer still holds the starter's ``...``.
        ExerciseError: the checker rejected the answer (its message says why).
    """
    checker = checker_for(label)
    if not answers or any(is_unfinished(answer) for answer in answers):
        raise ExerciseNotDone(label)
    try:
        checker(*answers, **options)
    except ExerciseNotDone:
        raise ExerciseNotDone(label) from None
    except PartlyRight as error:
        raise PartlyRight(f"{label}: {error}", error.passed, error.total) from None
    except AssertionError as error:
        if _not_done_in_chain(error):
            raise ExerciseNotDone(label) from None
        raise ExerciseError(f"{label}: {error}") from None
    except Exception as error:
        if _not_done_in_chain(error):
            raise ExerciseNotDone(label) from None
        raise
    print(passed_line(label))


# --- helpers for the chapters' checkers (mmbook.course.checks and the chapters' packages) ---------

def check_parts(*parts: Callable[[], None]) -> None:
    """Check each part of a multi-part answer (each a function that raises ``AssertionError`` when its
    part is wrong), all of them, so that a grader can give credit for the parts that are right.

    Raises:
        PartlyRight: with the first wrong part's message (saying when other parts are right), and the counts
            of parts right and in all.
        ExerciseNotDone: a part still holds the starter's ``...``.
    """
    failures = []
    for part in parts:
        try:
            part()
        except ExerciseNotDone:
            raise
        except AssertionError as error:
            failures.append(error)
    if failures:
        passed = len(parts) - len(failures)
        # In words: a count such as "1 of 2" could be read as (or be) the answer to a part.
        right = "" if not passed else " (the other parts are right)" if len(failures) == 1 else " (some parts are right)"
        raise PartlyRight(str(failures[0]) + right, passed, len(parts))


def reader_call(function: Callable, case: str, *args: Any) -> Any:
    """Call a reader's function on one case of a chapter's checker; an exception it raises becomes an
    ``AssertionError`` that names the case and the exception, so the reader sees which input broke it."""
    try:
        return function(*args)
    except Exception as error:
        raise AssertionError(f"{case}: your function raised {error.__class__.__name__}: {error}") from error


def _call(function: Callable, what: str, *args: Any) -> Any:
    """Call the student's function; its exceptions become an ExerciseError that names the call."""
    if not callable(function):
        _fail(f"{what} should be a function, got {type(function).__name__}", None)
    try:
        return function(*args)
    except ExerciseNotDone:
        raise
    except Exception as error:
        raise ExerciseError(f"{what} raised {type(error).__name__}: {error}") from error


def _tensor_close(got: Any, expected: Any, what: str, hints: list[tuple[Any, str]] = (), atol: float = 1e-5,
                  exact: bool = False, hint: str | None = None) -> None:
    """Compare a tensor answer with the reference; ``hints`` pairs a typical wrong result with its explanation,
    ``hint`` is what to check when none matches. The message never shows the reference's values."""
    import torch

    # The output's shape is in the function's documented signature (e.g. (B, V)): part of the question.
    check_shape(got, tuple(expected.shape), name=what, show_expected=True)
    if not isinstance(got, torch.Tensor):
        got = torch.as_tensor(got)
    same = torch.equal(got.to(expected.dtype), expected) if exact else torch.allclose(
        got.double(), expected.double(), atol=atol)
    if same:
        return
    for wrong, hint in hints:
        if tuple(wrong.shape) == tuple(got.shape) and (torch.equal(got.to(wrong.dtype), wrong) if exact else
                                                       torch.allclose(got.double(), wrong.double(), atol=atol)):
            _fail(f"{what} is not right", hint)
    if exact:
        differ = int((got.to(expected.dtype) != expected).sum())
        _fail(f"{what} differs from the reference in {differ} of {expected.numel()} entries", hint)
    difference = (got.double() - expected.double()).abs().max().item()
    _fail(f"{what} differs from the reference by up to {difference:.3g} (tolerance {atol:g})", hint)


# The chapters' checkers, imported by checker_for when first used.
CHECKERS.update({
    "ex-intro-seeds": "mmbook.course.checks.intro:check_confidence_interval",
    "ex-concepts-head-params": "mmbook.course.checks.intro:check_head_parameters",
    "ex-concepts-bag-of-words": "mmbook.course.checks.intro:check_bag_of_words",
    "ex-cnn-receptive-field": "mmbook.course.checks.cnn:check_receptive_fields",
    "ex-cnn-pool-shapes": "mmbook.course.checks.cnn:check_pool_sizes",
    "ex-cnn-lenet-params": "mmbook.course.checks.cnn:check_lenet_parameters",
    "ex-cnn-flops": "mmbook.course.checks.cnn:check_costliest_part",
    "ex-cnn-tta": "mmbook.course.checks.cnn:check_tta_passes",
    "ex-text-left-padding": "mmbook.course.checks.text:check_left_pad",
    "ex-text-relu-rnn": "mmbook.course.checks.text:check_relu_rnn_cell",
    "ex-text-gru-cell": "mmbook.course.checks.text:check_paper_gru_cell",
    "ex-text-causal": "mmbook.course.checks.text:check_causal_mask",
    "ex-text-reverse": "mmbook.course.checks.text:check_reverse_real_tokens",
    "ex-fusion-concat-cost": "mmbook.course.checks.fusion:check_concat_head_parameters",
    "ex-fusion-accuracy-per-parameter": "mmbook.course.checks.fusion:check_pareto_front",
    "ex-fusion-weights-layernorm": "mmbook.course.checks.fusion:check_layernorm_answer",
    "ex-fusion-word-dropout": "mmbook.course.checks.fusion:check_drop_words",
    "ex-fusion-ogm": "mmbook.course.checks.fusion:check_modulation_factor",
    "ex-obj-ece-blind-spot": "mmbook.course.checks.objectives:check_ece_by_hand",
    "ex-obj-nms": "mmbook.course.checks.objectives:check_nms",
    "ex-obj-shuffled-expressions": "mmbook.course.checks.objectives:check_shuffled_expectation",
    "ex-worked-concat-cost": "mmbook.course.checks.worked:check_concat_head_cost",
    "ex-frontiers-image-occlusion": "mmbook.course.checks.frontiers:check_occlusion_grid",
    "ex-align-info-nce": "mmbook.alignment:check_info_nce",
    "ex-align-recall": "mmbook.alignment:check_recall_at_k",
    "ex-align-confusion": "mmbook.course.checks.alignment:check_confusion_matrix",
    "ex-align-cone": "mmbook.course.checks.alignment:check_cone_conclusion",
    "ex-own-majority": "mmbook.course.checks.worked:check_majority_baseline",
    "ex-appendix-fastest": "mmbook.course.checks.appendix:check_fastest_run",
    "ex-scaling-ghost-bn": "mmbook.course.checks.appendix:check_ghost_gradient",
    "ex-gen-chair": "mmbook.generation.checkers:check_chair",
    "ex-gen-beam-step": "mmbook.generation.checkers:check_beam_step",
    "ex-gen-prefix-parameters": "mmbook.generation.checkers:check_prefix_parameters",
    "ex-reason-pairs": "mmbook.reasoning.checkers:check_relation_pairs",
    "ex-reason-tokens": "mmbook.reasoning.checkers:check_token_count",
    "ex-reason-closest": "mmbook.reasoning.checkers:check_closest_colour",
})
