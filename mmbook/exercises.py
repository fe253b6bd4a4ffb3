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
:func:`check_choice` and :func:`check_module_output`. Checkers for the chapters'
exercises are registered in :data:`CHECKERS` (label -> ``"module:function"``, imported
when first used, so importing this module stays cheap).
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
    "check",
    "check_choice",
    "check_module_output",
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
    except AssertionError as error:
        if _not_done_in_chain(error):
            raise ExerciseNotDone(label) from None
        raise ExerciseError(f"{label}: {error}") from None
    except Exception as error:
        if _not_done_in_chain(error):
            raise ExerciseNotDone(label) from None
        raise
    print(passed_line(label))


# --- checkers for the chapters' exercises -------------------------------------------------------
# Each takes what the exercise asks for (a function or values), computes the reference with the
# book's own code where there is one, and raises ExerciseError saying what is wrong.

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


#: Student's t quantile t(0.975, df) for 1..10 degrees of freedom (standard table values).
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def check_confidence_interval(function: Callable) -> None:
    """ex-intro-seeds: ``function(differences (n,)) -> (low, high)``, the 95% t-interval of the mean."""
    import torch

    for values in ([0.012, -0.004, 0.020], [0.01, 0.03, -0.02, 0.00, 0.015]):
        differences = torch.tensor(values, dtype=torch.float64)
        n = len(values)
        mean, std = differences.mean().item(), differences.std().item()  # std: sample (n - 1)
        half = T_975[n - 1] * std / n ** 0.5
        got = _call(function, f"your function on {values}", differences.clone())
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            _fail(f"your function should return (low, high), got {got!r:.60}", None)
        mistakes = {1.96 * std / n ** 0.5: "use Student's t with n - 1 degrees of freedom, not 1.96",
                    T_975[n - 1] * differences.std(unbiased=False).item() / n ** 0.5:
                        "the sample standard deviation divides by n - 1 (torch's default, unbiased=True)",
                    T_975[n - 1] * std: "divide the standard deviation by sqrt(n): the interval is for the mean",
                    T_975[n] * std / n ** 0.5: "the t quantile has n - 1 degrees of freedom, not n"}
        hint = "the interval is mean -/+ t(0.975, n - 1) * std / sqrt(n), with the sample standard deviation"
        check_value(got[0], mean - half, tol=1e-3, name=f"low for {values}", hint=hint,
                    wrong={mean - width: why for width, why in mistakes.items()})
        check_value(got[1], mean + half, tol=1e-3, name=f"high for {values}", hint=hint,
                    wrong={mean + width: why for width, why in mistakes.items()})


def check_head_parameters(function: Callable) -> None:
    """ex-concepts-head-params: ``function(in_features) -> int``, the parameters of ``ClassifierHead(in_features)``."""
    from mmbook.multimodal import ClassifierHead

    for size in (20, 128, 4096):
        expected = sum(p.numel() for p in ClassifierHead(size).parameters())
        check_value(_call(function, f"head_parameters({size})", size), expected, tol=0.5,
                    name=f"head_parameters({size})",
                    hint="add the weights (inputs times outputs) and the biases (one per output) of both Linear layers",
                    wrong={size * 128 + 128 * 10: "count the biases: one per output unit, in both layers",
                           size * 128 + 128: "count the second layer too, Linear(128, 10), with its biases",
                           size * 128 + 128 * 10 + 10: "count the first layer's biases too",
                           size * 128 + 128 + 128 * 10: "count the second layer's biases too"})


def check_bag_of_words(function: Callable) -> None:
    """ex-concepts-bag-of-words: ``function(token_ids (B, T), vocab_size) -> (B, V)`` word counts, padding (0) not counted."""
    import torch

    ids = torch.tensor([[2, 3, 2, 0, 0], [4, 4, 4, 5, 0], [1, 2, 3, 4, 5]])
    expected = torch.zeros(3, 6)
    expected.scatter_add_(1, ids, torch.ones(ids.shape))
    with_padding = expected.clone()
    expected[:, 0] = 0
    got = _call(function, "bag_of_words(ids, 6)", ids.clone(), 6)
    _tensor_close(got, expected, "bag_of_words(ids, 6)",
                  hint="count, in each row, how often each id occurs (one column per id), and leave padding out",
                  hints=
                  [(with_padding, "padding (id 0) must not be counted"),
                   ((expected > 0).float(), "count every occurrence: a word seen twice counts 2")])


def check_receptive_fields(answer: Any) -> None:
    """ex-cnn-receptive-field: ``(five 3x3 convolutions, ResNet's start)`` receptive fields in pixels."""
    def field(layers: list[tuple[int, int]], start: int = 1, jumps: bool = True, own_stride: bool = False) -> int:
        jump = 1
        for kernel, stride in layers:
            if own_stride:
                jump *= stride
            start += (kernel - 1) * (jump if jumps else 1)
            if not own_stride:
                jump *= stride
        return start

    five, resnet = [(3, 1)] * 5, [(7, 2), (3, 2)] + [(3, 1)] * 4
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        _fail(f"give two numbers, (five 3x3 convolutions, ResNet's start), got {answer!r:.60}", None)
    from_zero = "start from r_0 = 1: one output sees one pixel before any layer"
    check_value(answer[0], field(five), tol=0.5, name="the field of five 3x3 convolutions",
                hint="each convolution with stride 1 widens the field by its kernel size minus one",
                wrong={field(five, start=0): from_zero,
                       1 + 3 * 5: "a layer widens the field by k - 1, not by k: neighbouring windows share k - 1 pixels",
                       3 * 5: "the windows overlap: a layer widens the field by k - 1 pixels, not by k"})
    check_value(answer[1], field(resnet), tol=0.5, name="the field of ResNet's start",
                hint="each layer adds (k - 1) times the product of the strides of the layers before it (the jump); "
                     "the max-pool counts as a layer",
                wrong={field(resnet, jumps=False): "each layer adds (k - 1) times the product of the earlier strides",
                       field(resnet, start=0): from_zero,
                       field(resnet, own_stride=True): "a layer's own stride does not count: multiply the strides of "
                                                       "the layers before it",
                       field([(7, 2)] + [(3, 1)] * 4): "the max-pool is a layer too: its window widens the field and "
                                                       "its stride multiplies the jump"})


def check_pool_sizes(answer: Any) -> None:
    """ex-cnn-pool-shapes: spatial sizes ``(after MaxPool2d(2), after MaxPool2d(3, stride=2))`` of a 15x15 map."""
    import torch
    from torch import nn

    x = torch.zeros(1, 1, 15, 15)
    first = nn.MaxPool2d(2)(x)
    second = nn.MaxPool2d(3, stride=2)(first)
    ceil_first = nn.MaxPool2d(2, ceil_mode=True)(x)
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        _fail(f"give two sizes, (after the first pooling, after the second), got {answer!r:.60}", None)
    side = "a side becomes floor((side - kernel) / stride) + 1: count the whole windows that fit"
    check_value(answer[0], first.shape[-1], tol=0.5, name="the size after the first pooling", hint=side,
                wrong={ceil_first.shape[-1]: "the last row and column fit in no whole 2x2 window: without ceil_mode "
                                             "the partial window is dropped (round down)",
                       15 - 2 + 1: "MaxPool2d(2) also has stride 2 (the stride defaults to the kernel size): "
                                   "pooling divides the side by its stride",
                       15: "pooling shrinks the map: it divides the side by its stride"})
    check_value(answer[1], second.shape[-1], tol=0.5, name="the size after the second pooling", hint=side,
                wrong={first.shape[-1] - 3 + 1: "the second pooling moves its window by its stride, not by one pixel",
                       nn.MaxPool2d(3, stride=2)(x).shape[-1]: "the second pooling works on the first one's output, "
                                                               "not on the original map"})


def check_lenet_parameters(answer: Any) -> None:
    """ex-cnn-lenet-params: ``(LeNet's parameters, fc1's parameters for 64x64 inputs)``."""
    import torch

    from mmbook.cnn import LeNet, count_parameters

    lenet = LeNet()
    with torch.no_grad():
        before_last_pool = lenet.conv2(lenet.pool(lenet.conv1(torch.zeros(1, 3, 64, 64))))
        x = lenet.pool(before_last_pool)
    flat = x[0].numel()
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        _fail(f"give two numbers, (LeNet's total, fc1 for 64x64 inputs), got {answer!r:.60}", None)
    total = count_parameters(lenet)
    named = dict(lenet.named_parameters())
    weights_only = sum(p.numel() for name, p in named.items() if name.endswith("weight"))
    conv_biases = sum(p.numel() for name, p in named.items() if name.startswith("conv") and name.endswith("bias"))
    linear_biases = sum(p.numel() for name, p in named.items() if name.startswith("fc") and name.endswith("bias"))
    grey_conv1 = named["conv1.weight"].numel() // named["conv1.weight"].shape[1]
    check_value(answer[0], total, tol=0.5, name="LeNet's parameter count",
                hint="add up every layer: a convolution has out * in * k * k weights, a linear layer out * in, "
                     "and each has one bias per output channel or unit",
                wrong={weights_only: "count the biases too, one per output channel or unit",
                       total - conv_biases: "the convolutions' parameter count is off: did you count their biases "
                                            "(one per output channel)?",
                       total - linear_biases: "the linear layers' parameter count is off: did you count their biases "
                                              "(one per output unit)?",
                       total - named["conv1.weight"].numel() + grey_conv1:
                           "the first convolution's parameter count is off: its input has 3 colour channels"})
    check_value(answer[1], flat * 120 + 120, tol=0.5, name="fc1's parameters for 64x64 inputs",
                hint="fc1 has 120 units, each with one weight per value of the flattened last feature map "
                     "(16 channels) and one bias; follow the map's side through conv, pool, conv, pool",
                wrong={flat * 120: "add fc1's 120 biases",
                       16 * 16 * 16 * 120 + 120: "the 5x5 convolutions (no padding) shrink the map by 4 pixels each",
                       16 * 5 * 5 * 120 + 120: "that is fc1 for 32x32 inputs: the flattened map grows with the image",
                       before_last_pool[0].numel() * 120 + 120: "the last max-pool halves the map's side before fc1",
                       x.shape[-1] ** 2 * 120 + 120: "the last feature map has 16 channels: fc1 sees all of them"})


def check_costliest_part(answer: Any) -> None:
    """ex-cnn-flops: which part of ``SmallCNN`` costs the most FLOPs per image ("stem", "block1", ..., "head")."""
    from mmbook.cnn import SmallCNN, count_flops

    net = SmallCNN()
    flops = {"stem": count_flops(net.stem, (3, 32, 32)), "block1": count_flops(net.block1, (24, 15, 15)),
             "block2": count_flops(net.block2, (32, 7, 7)), "block3": count_flops(net.block3, (64, 3, 3)),
             "head": 2 * net.head.in_features * net.head.out_features}
    costliest = max(flops, key=flops.get)
    # One hint for every wrong part: a comparison of the parts (widest, most pixels, ...) would name the answer.
    check_choice(answer, costliest, list(flops), name="the costliest part",
                 hint="compare the parts' costs, not their sizes: a convolution costs about 2 * output pixels * "
                      "kernel area * in-channels * out-channels, a linear layer 2 * inputs * outputs; work it out "
                      "for each part, or measure each with count_flops")


def check_left_pad(function: Callable) -> None:
    """ex-text-left-padding: ``function(ids (N, T) right-padded, lengths (N,)) -> (N, T)`` left-padded ids."""
    import torch

    ids = torch.tensor([[5, 6, 7, 0, 0], [8, 0, 0, 0, 0], [2, 3, 4, 5, 6]])
    lengths = torch.tensor([3, 1, 5])
    expected = torch.zeros_like(ids)
    for row, length in enumerate(lengths.tolist()):
        expected[row, ids.shape[1] - length:] = ids[row, :length]
    got = _call(function, "your left padding", ids.clone(), lengths.clone())
    _tensor_close(got, expected, "the left-padded ids", exact=True,
                  hint="each row's first `length` ids move, in order, to the end of a row of zeros", hints=[
        (ids.flip(1), "move the words, do not reverse them: the words keep their order"),
        (ids, "the padding should come first, then the words")])


def _cell_inputs(batch: int = 4, inputs: int = 5, hidden: int = 6, gates: int = 1, seed: int = 0):
    import torch

    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, inputs, generator=generator)
    h = torch.randn(batch, hidden, generator=generator)
    weights = (torch.randn(gates * hidden, inputs, generator=generator) * 0.5,
               torch.randn(gates * hidden, hidden, generator=generator) * 0.5,
               torch.randn(gates * hidden, generator=generator), torch.randn(gates * hidden, generator=generator))
    return x, h, weights


def check_relu_rnn_cell(function: Callable) -> None:
    """ex-text-relu-rnn: ``function(x (B, I), h (B, H), weight_ih, weight_hh, bias_ih, bias_hh) -> (B, H)``."""
    import torch

    x, h, (w_ih, w_hh, b_ih, b_hh) = _cell_inputs()
    cell = torch.nn.RNNCell(5, 6, nonlinearity="relu")
    with torch.no_grad():
        for parameter, value in zip((cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh), (w_ih, w_hh, b_ih, b_hh)):
            parameter.copy_(value)
        expected = cell(x, h)
    got = _call(function, "relu_rnn_cell", x, h, w_ih, w_hh, b_ih, b_hh)
    pre = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    _tensor_close(got, expected, "relu_rnn_cell's output",
                  hint="check the ReLU RNN step's formula and the weight layout (x @ W.T + b)", hints=[
        (torch.tanh(pre), "use max(0, .) (torch.relu), not tanh"),
        (torch.relu(x @ w_ih.T + b_ih + h @ w_hh.T), "add both biases, bias_ih and bias_hh")])


def check_paper_gru_cell(function: Callable) -> None:
    """ex-text-gru-cell: the GRU of Cho et al. (2014), reset gate *before* the recurrent product.

    ``function(x (B, I), h (B, H), weight_ih (3H, I), weight_hh (3H, H), bias_ih (3H,), bias_hh (3H,)) -> (B, H)``,
    gate order reset, update, new, as in ``torch.nn.GRU``.
    """
    import torch

    x, h, (w_ih, w_hh, b_ih, b_hh) = _cell_inputs(gates=3)
    x_r, x_z, x_n = (x @ w_ih.T + b_ih).chunk(3, dim=1)
    w_hr, w_hz, w_hn = w_hh.chunk(3, dim=0)
    b_hr, b_hz, b_hn = b_hh.chunk(3)
    r = torch.sigmoid(x_r + h @ w_hr.T + b_hr)
    z = torch.sigmoid(x_z + h @ w_hz.T + b_hz)
    paper_n = torch.tanh(x_n + (r * h) @ w_hn.T + b_hn)
    torch_n = torch.tanh(x_n + r * (h @ w_hn.T + b_hn))
    expected = (1 - z) * paper_n + z * h
    got = _call(function, "your GRU cell", x, h, w_ih, w_hh, b_ih, b_hh)
    _tensor_close(got, expected, "your GRU cell's output",
                  hint="check the gate order (reset, update, new), where the reset gate applies, and which state "
                       "the update gate keeps", hints=[
        ((1 - z) * torch_n + z * h, "that is PyTorch's form; apply the reset gate before the product: W_hn (r * h)"),
        (z * paper_n + (1 - z) * h, "the update gate z keeps the old state: h' = (1 - z) * n + z * h")])


def check_causal_mask(function: Callable) -> None:
    """ex-text-causal: ``function(T) -> (T, T)`` bool mask, True where attention is blocked (the future)."""
    import torch

    for steps in (4, 6, 1):
        expected = torch.triu(torch.ones(steps, steps, dtype=torch.bool), diagonal=1)
        got = _call(function, f"causal_mask({steps})", steps)
        if isinstance(got, torch.Tensor) and got.dtype != torch.bool:
            _fail(f"causal_mask({steps}) should be a bool tensor (True = blocked), got {got.dtype}", None)
        _tensor_close(got, expected, f"causal_mask({steps})", exact=True,
                      hint="True marks the positions a token may not attend to: those later than itself", hints=[
            (~expected, "True marks the *blocked* positions for nn.MultiheadAttention: the future, above the diagonal"),
            (torch.triu(torch.ones(steps, steps, dtype=torch.bool)), "a token may attend to itself: the diagonal must not be blocked")])


def check_reverse_real_tokens(function: Callable) -> None:
    """ex-text-reverse: ``function(tokens (N, T) right-padded, lengths (N,)) -> (N, T)``, real tokens reversed."""
    import torch

    tokens = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 0, 0, 0], [2, 3, 4, 5, 6]])
    lengths = torch.tensor([3, 2, 5])
    expected = torch.zeros_like(tokens)
    for row, length in enumerate(lengths.tolist()):
        expected[row, :length] = tokens[row, :length].flip(0)
    got = _call(function, "reverse_real_tokens", tokens.clone(), lengths.clone())
    _tensor_close(got, expected, "the reversed captions", exact=True,
                  hint="reverse the first `length` tokens of each row and leave the padding where it is", hints=[
        (tokens.flip(1), "reverse only the real tokens: the padding must stay at the end"),
        (tokens, "nothing was reversed")])


def check_concat_head_parameters(function: Callable) -> None:
    """ex-fusion-concat-cost: ``function(modalities, size) -> int``, concatenation + ``ClassifierHead`` parameters."""
    from mmbook.fusion import ConcatFusion
    from mmbook.multimodal import ClassifierHead

    for modalities, size in ((2, 64), (3, 64), (4, 10)):
        fusion = ConcatFusion([size] * modalities)
        expected = sum(p.numel() for p in fusion.parameters()) + sum(
            p.numel() for p in ClassifierHead(modalities * size).parameters())
        check_value(_call(function, f"your formula for M={modalities}, D={size}", modalities, size), expected, tol=0.5,
                    name=f"the count for M={modalities}, D={size}",
                    hint="concatenation has no parameters; add the weights and biases of the head's two Linear layers",
                    wrong={modalities * size * 128 + 128 * 10: "count the biases, one per output unit in both layers",
                           size * 128 + 128 + 128 * 10 + 10: "the head's input is all M features concatenated: M * D",
                           modalities * size * 10 + 10: "ClassifierHead has a hidden layer of 128 units before the "
                                                        "10 outputs"})


def check_pareto_front(function: Callable) -> None:
    """ex-fusion-accuracy-per-parameter: ``function({name: (parameters, accuracy)}) -> names on the Pareto front``."""
    runs = {"a": (100, 0.60), "b": (1_000, 0.70), "c": (5_000, 0.65), "d": (50, 0.55), "e": (20_000, 0.72)}
    expected = {n for n, (p, a) in runs.items()
                if not any(po <= p and ao > a for o, (po, ao) in runs.items() if o != n)}
    got = _call(function, "your Pareto front", dict(runs))
    if isinstance(got, str) or not hasattr(got, "__iter__"):
        _fail(f"return the names on the front (a list or set), got {type(got).__name__}", None)
    got = set(got)
    if got == expected:
        return
    hint = None
    if got == {n for n, (p, a) in runs.items() if not any(po >= p and ao > a for o, (po, ao) in runs.items() if o != n)}:
        hint = "smaller is better for parameters: a method is dominated by one that is both smaller and more accurate"
    elif got == set(runs):
        hint = "leave out every method that another one beats with fewer parameters and higher accuracy"
    elif got - set(runs):
        hint = f"return names of the given runs, got {sorted(map(str, got - set(runs)))!r:.60}"
    # Say what kind of error, not which names: the names are the answer.
    problems = []
    if got - expected:
        problems.append("it includes a method that another one beats (fewer parameters and higher accuracy)")
    if expected - got:
        problems.append("it leaves out a method that no other method beats")
    _fail(f"your front {sorted(map(str, got))} is not right: {' and '.join(problems)}", hint or
          "keep a method unless some other method has at most as many parameters and a higher accuracy")


def check_layernorm_answer(answer: Any) -> None:
    """ex-fusion-weights-layernorm: does the fusion's output change when the text projection is scaled by 10?"""
    import torch

    from mmbook.fusion import GlobalWeightFusion

    torch.manual_seed(0)
    fusion = GlobalWeightFusion([10, 10])
    x = [torch.randn(8, 10), torch.randn(8, 10)]
    with torch.no_grad():
        before = fusion(x)
        fusion.projections[1].weight.mul_(10)
        fusion.projections[1].bias.mul_(10)
        changes = not torch.allclose(before, fusion(x), atol=1e-4)
    # Two options: any explanation after a wrong guess is the answer, so the hint only says where to look.
    check_choice(answer, changes, [True, False], name="your answer (does the output change?)",
                 hint="look at what GlobalWeightFusion does to each projection before weighting it, and what that "
                      "step does to an input multiplied by a constant; or run the experiment and compare the outputs "
                      "with torch.allclose")


def check_drop_words(function: Callable) -> None:
    """ex-fusion-word-dropout: ``function(tokens (N, T), level) -> (N, T)``, each real token -> <unk> (1) with
    probability ``level``; padding (0) untouched."""
    import torch

    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(2, 50, (400, 12), generator=generator)
    tokens[:, 8:] = 0  # padding
    for level in (0.0, 1.0, 0.5):
        got = _call(function, f"your function at level {level}", tokens.clone(), level)
        check_shape(got, tuple(tokens.shape), name=f"the output at level {level}")
        if bool((got[:, 8:] != 0).any()):
            _fail(f"at level {level} padding was changed", "replace only real tokens (id != 0) by <unk>")
        real = got[:, :8]
        changed = real != tokens[:, :8]
        if bool((changed & (real != 1)).any()):
            _fail(f"at level {level} some tokens were changed to something other than <unk> (id 1)", None)
        share = changed.float().mean().item()
        if level == 0.5 and float(changed.all(dim=1).float().mean() + (~changed).all(dim=1).float().mean()) > 0.9:
            _fail("at level 0.5 whole captions were replaced", "decide for each *word* separately")
        if abs(share - level) > 0.05:
            _fail(f"at level {level} {share:.0%} of the real tokens became <unk>, {'too few' if share < level else 'too many'}",
                  "level is the probability that each real token is replaced (compare torch.rand with level)")


def check_modulation_factor(function: Callable) -> None:
    """ex-fusion-ogm: ``function(s_mine, s_other) -> float``, the factor on this branch's gradients."""
    import math

    for mine, other in ((0.6, 0.3), (0.3, 0.6), (0.5, 0.5), (0.9, 0.2)):
        expected = 1 - math.tanh(mine / other - 1) if mine > other else 1.0
        check_value(_call(function, f"factor({mine}, {other})", mine, other), expected, tol=1e-6,
                    name=f"factor({mine}, {other})",
                    hint="follow the chapter's formula: only the dominant branch is slowed, by an amount that "
                         "grows with the ratio s_mine / s_other",
                    wrong={1 - math.tanh(mine / other - 1): "only the dominant branch (s_mine > s_other) is slowed; "
                                                            "the other's gradients are left as they are",
                           math.tanh(mine / other - 1): "the factor is 1 - tanh(...), so it shrinks as the lead grows",
                           1 - math.tanh(mine / other): "the tanh is of the ratio minus one, so that equal scores give "
                                                        "no slowing"})


def check_ece_by_hand(answer: Any) -> None:
    """ex-obj-ece-blind-spot: the ECE of the exercise's six predictions with 2 bins."""
    import torch

    from mmbook.objectives.calibration import expected_calibration_error

    confidences = torch.tensor([0.95, 0.9, 0.9, 0.6, 0.55, 0.52])
    right = torch.tensor([1, 1, 0, 1, 0, 0])
    probabilities = torch.stack([confidences, 1 - confidences], dim=1)
    labels = torch.where(right.bool(), 0, 1)
    expected = expected_calibration_error(probabilities, labels, bins=2)
    check_value(answer, expected, tol=1e-3, name="your ECE",
                hint="put each prediction in its confidence bin, take |accuracy - mean confidence| in each bin, and "
                     "weight each bin by its share of the predictions",
                wrong={right.float().mean().item(): "that is the accuracy; ECE is |accuracy - mean confidence| per bin, "
                                                    "weighted",
                       confidences.mean().item(): "that is the mean confidence; subtract it from the accuracy of the bin",
                       -expected: "ECE takes the absolute gap between accuracy and confidence: it is never negative",
                       expected / 2: "weight each bin by its share of the predictions (an empty bin adds nothing); "
                                     "do not average the bins"})


def check_nms(function: Callable) -> None:
    """ex-obj-nms: ``function(boxes (N, 4), scores (N,), iou_threshold) -> kept indices, best first``."""
    import torch
    from torchvision.ops import nms

    generator = torch.Generator().manual_seed(1)
    corners = torch.rand(60, 2, generator=generator) * 50
    boxes = torch.cat([corners, corners + torch.rand(60, 2, generator=generator) * 20 + 1], dim=1)
    scores = torch.rand(60, generator=generator)
    for threshold in (0.5, 0.3):
        expected = nms(boxes, scores, threshold)
        got = _call(function, f"your NMS at threshold {threshold}", boxes.clone(), scores.clone(), threshold)
        try:
            got = torch.as_tensor(got).long().flatten()
        except (TypeError, ValueError, RuntimeError):
            _fail(f"at threshold {threshold} your NMS returned {type(got).__name__}",
                  "return the indices of the kept boxes (a tensor or a list of ints), best first")
        if torch.equal(got, expected):
            continue
        if set(got.tolist()) == set(expected.tolist()):
            _fail(f"at threshold {threshold} the right boxes are kept but in the wrong order",
                  "return them best (highest score) first")
        if len(got) > len(expected):
            _fail(f"at threshold {threshold} you keep {len(got)} box{'es' * (len(got) != 1)}, too many",
                  "after keeping the best box, drop every remaining box whose IoU with it is above the threshold")
        if len(got) < len(expected):
            _fail(f"at threshold {threshold} you keep {len(got)} box{'es' * (len(got) != 1)}, too few",
                  "compare IoU with the kept box only (not with every box), drop a box only when its IoU is above "
                  "the threshold, and visit boxes by decreasing score")
        _fail(f"at threshold {threshold} you keep the right number of boxes, but not the right ones",
              "visit the boxes by decreasing score and compare each only with the boxes kept so far")


def check_concat_head_cost(function: Callable) -> None:
    """ex-worked-concat-cost: ``function(sizes) -> int``, the parameters of ``ClassifierHead(sum(sizes))``."""
    from mmbook.multimodal import ClassifierHead

    for sizes in ([10, 10], [84, 84], [512, 512, 512]):
        expected = sum(p.numel() for p in ClassifierHead(sum(sizes)).parameters())
        check_value(_call(function, f"your function for {sizes}", list(sizes)), expected, tol=0.5,
                    name=f"the head's parameters for {sizes}",
                    hint="add the weights and biases of Linear(sum(sizes), 128) and Linear(128, 10)",
                    wrong={sum(sizes) * 128 + 128 * 10: "count the biases, one per output unit in both layers",
                           sizes[0] * 128 + 128 + 128 * 10 + 10: "the head takes all the features: sum(sizes) inputs"})


def check_occlusion_grid(answer: Any) -> None:
    """ex-frontiers-image-occlusion: positions per side of an 8x8 patch sliding with stride 4 over 32 pixels."""
    expected = len(range(0, 32 - 8 + 1, 4))
    check_value(answer, expected, tol=0.5, name="the occlusion map's side",
                hint="list the patch's start positions along one side: from 0, by the stride, while the patch still "
                     "fits inside the image",
                wrong={32 // 4: "the patch must fit inside the image: its last position is where its far edge meets "
                                "the image's edge",
                       (32 - 8) // 4: "count the first position (0) as well",
                       32 // 8: "the patch moves by the stride, not by its own size: positions overlap",
                       32 // 4 + 1: "the patch must fit inside the image: it cannot start where it would stick out"})


def check_tta_passes(answer: Any) -> None:
    """ex-cnn-tta: forward passes per image of ``evaluate_images`` with ``tta=True``, and with ``tta=True, shift=1``."""
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        _fail(f"give two numbers, (tta=True, tta=True with shift=1), got {answer!r:.60}", None)
    passes = {(tta, shift): _count_passes(tta, shift) for tta, shift in ((False, 0), (True, 0), (True, 1))}
    check_value(answer[0], passes[True, 0], tol=0.5, name="passes with tta=True",
                hint="read evaluate_images: count the model calls for one batch with tta=True",
                wrong={passes[False, 0]: "TTA adds the mirror image"})
    check_value(answer[1], passes[True, 1], tol=0.5, name="passes with tta=True, shift=1",
                hint="read evaluate_images: count the shifted copies that shift=1 makes, and whether each is mirrored",
                wrong={passes[True, 0] + 2: "each shifted copy is also mirrored",
                       passes[True, 0] + 1: "count the shifted copies again (evaluate_images' docstring says "
                                            "how many), and remember that each is also mirrored",
                       passes[True, 0]: "shift=1 adds shifted copies of the image to the average"})


def _count_passes(tta: bool, shift: int) -> int:
    """Forward passes per batch that ``mmbook.fastcnn.evaluate_images`` makes."""
    import torch

    from mmbook.fastcnn import evaluate_images

    class Counter(torch.nn.Module):
        calls = 0

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            Counter.calls += 1
            return torch.zeros(images.shape[0], 10)

    model = Counter()
    evaluate_images(model, [{"image": torch.zeros(2, 3, 32, 32), "label": torch.zeros(2, dtype=torch.long)}],
                    tta=tta, shift=shift)
    return Counter.calls


#: The choices offered for ex-obj-shuffled-expressions.
SHUFFLED_EXPRESSION_CHOICES = ("about the fused model's accuracy", "about the image-only model's accuracy", "zero")


def check_shuffled_expectation(answer: Any) -> None:
    """ex-obj-shuffled-expressions: the accuracy to expect with another scene's expression (a choice)."""
    # The same hint for both wrong options: their explanations, read together, give the answer.
    check_choice(answer, SHUFFLED_EXPRESSION_CHOICES[1], SHUFFLED_EXPRESSION_CHOICES, name="your expectation",
                 hint="ask what the fused model can still use when the expression belongs to another scene, and what "
                      "it can no longer use; then which model that leaves it comparable to")


def check_confusion_matrix(function: Callable) -> None:
    """ex-align-confusion: ``function(labels (N,), predicted (N,), num_classes) -> (C, C)`` counts,
    rows the true class, columns the predicted one."""
    import torch

    labels = torch.tensor([0, 0, 1, 2, 2, 2, 1, 0])
    predicted = torch.tensor([0, 1, 1, 2, 0, 2, 2, 0])
    expected = torch.zeros(3, 3, dtype=torch.long)
    expected.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
    got = _call(function, "your confusion matrix", labels.clone(), predicted.clone(), 3)
    _tensor_close(got, expected, "the confusion matrix", exact=True,
                  hint="entry [i, j] counts the samples of true class i predicted as class j", hints=[
        (expected.T, "rows are the true classes, columns the predicted ones"),
        ((expected > 0).long(), "count every prediction: use index_put_ with accumulate=True (or bincount)")])


#: The choices offered for ex-align-cone.
CONE_CHOICES = ("the gap is there before training: each random tower maps into a cone of its own",
                "the contrastive loss creates the gap during training",
                "the gap comes from the difference between images and text")


def check_cone_conclusion(answer: Any) -> None:
    """ex-align-cone: what the gap between two random image towers shows (a choice)."""
    # The same hint for both wrong options: each one's refutation points straight at the answer.
    check_choice(answer, CONE_CHOICES[0], CONE_CHOICES, name="your conclusion",
                 hint="look again at how this experiment was set up: what kind of data each of the two clouds holds, "
                      "and what had happened to the towers that embedded them")


def check_majority_baseline(function: Callable) -> None:
    """ex-own-majority: ``function(train_labels (N,), test_labels (M,)) -> float``, the test accuracy of
    always answering the most common *training* label."""
    import torch

    train = torch.tensor([2, 2, 2, 0, 1, 1])
    test = torch.tensor([0, 1, 1, 1, 2, 0, 0, 2])
    expected = float((test == 2).float().mean())
    got = _call(function, "your majority baseline", train.clone(), test.clone())
    check_value(got, expected, tol=1e-6, name="the majority baseline on a small example", wrong={
        float((test == 0).float().mean()): "take the most common label of the *training* labels; the test labels "
                                             "are what the baseline is scored on, not what it may look at",
        float((test == 1).float().mean()): "take the most common label of the *training* labels; the test labels "
                                             "are what the baseline is scored on, not what it may look at",
        float((train == 2).float().mean()): "score the constant answer on the test labels, not on the training "
                                              "labels",
        float((test == 2).sum()): "return the share of test labels that match (a mean), not their number"})


def check_fastest_run(function: Callable) -> None:
    """ex-appendix-fastest: ``function(records, threshold) -> Record``, the training record with
    ``test_accuracy_tta >= threshold`` and the fewest ``train_seconds``."""
    from mmbook.results import Record

    rows = [
        {"step": "fastcnn", "recipe": "slow and good", "train_seconds": 9.0, "test_accuracy": 0.93,
         "test_accuracy_tta": 0.94},
        {"step": "seed", "recipe": "fast, good only with TTA", "train_seconds": 5.0, "test_accuracy": 0.91,
         "test_accuracy_tta": 0.925},
        {"step": "fastcnn", "recipe": "fastest, too weak", "train_seconds": 2.0, "test_accuracy": 0.80,
         "test_accuracy_tta": 0.81},
        {"step": "loader", "recipe": "a loader benchmark", "train_seconds": 0.5},
        {"step": "reference", "recipe": "failed", "error": "out of memory"},
    ]
    records = [Record("demo.jsonl", line, row) for line, row in enumerate(rows, start=1)]
    for threshold, expected in ((0.92, records[1]), (0.93, records[0])):
        got = _call(function, f"your function with threshold {threshold}", list(records), threshold)
        if got == expected:
            continue
        if isinstance(got, str):
            _fail(f"your function returned the string {got!r:.60}", "return the record itself (a Record), "
                  "so that its run, recipe and figures can be read from it")
        names = {id(record): record.recipe for record in records}
        got_name = names.get(id(got), repr(got)[:60])
        if got is records[2]:
            hint = "keep only the runs that reach the threshold before taking the fastest"
        elif got is records[3] or got is records[4]:
            hint = "keep only training records (step fastcnn, seed or reference) that have an accuracy"
        else:
            hint = ("compare the accuracy with TTA (test_accuracy_tta) with the threshold, then take the record "
                    "with the fewest train_seconds")
        _fail(f"with threshold {threshold} your function chose {got_name!r}, which is not the fastest run that "
              f"reaches it", hint)


def check_ghost_gradient(function: Callable) -> None:
    """ex-scaling-ghost-bn: ``function(net, images (B, 3, H, W), labels (B,), parts) -> (P,)``, the mean of
    the flattened parameter gradients of ``parts`` equal slices of the batch, each run through ``net`` alone."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 5))
    images, labels = torch.randn(12, 3, 8, 8), torch.randint(0, 5, (12,))

    def gradient(losses: list[torch.Tensor], scale: float) -> torch.Tensor:
        net.zero_grad()
        (sum(losses) * scale).backward()
        return torch.cat([p.grad.flatten() for p in net.parameters()]).clone()

    for parts in (2, 3):
        chunks = list(zip(images.chunk(parts), labels.chunk(parts)))
        expected = gradient([F.cross_entropy(net(x), y) for x, y in chunks], 1 / parts)
        whole = gradient([F.cross_entropy(net(images), labels)], 1.0)
        summed = expected * parts
        got = _call(function, f"your function with parts={parts}", net, images.clone(), labels.clone(), parts)
        if isinstance(got, torch.Tensor):
            got = got.detach()
        _tensor_close(got, expected, f"the gradient with parts={parts}", atol=1e-6,
                      hint="split the batch into `parts` equal slices (chunk), run each through the network on its own, "
                           "and average the slices' gradients; flatten and concatenate them in parameters() order",
                      hints=[
            (whole, "that is the whole-batch gradient (what SyncBatchNorm computes): run each slice through the "
                    "network on its own, so that BatchNorm uses that slice's statistics"),
            (summed, "average the slices' gradients, as DDP does, instead of adding them")])


CHECKERS.update({
    "ex-intro-seeds": "mmbook.exercises:check_confidence_interval",
    "ex-concepts-head-params": "mmbook.exercises:check_head_parameters",
    "ex-concepts-bag-of-words": "mmbook.exercises:check_bag_of_words",
    "ex-cnn-receptive-field": "mmbook.exercises:check_receptive_fields",
    "ex-cnn-pool-shapes": "mmbook.exercises:check_pool_sizes",
    "ex-cnn-lenet-params": "mmbook.exercises:check_lenet_parameters",
    "ex-cnn-flops": "mmbook.exercises:check_costliest_part",
    "ex-cnn-tta": "mmbook.exercises:check_tta_passes",
    "ex-text-left-padding": "mmbook.exercises:check_left_pad",
    "ex-text-relu-rnn": "mmbook.exercises:check_relu_rnn_cell",
    "ex-text-gru-cell": "mmbook.exercises:check_paper_gru_cell",
    "ex-text-causal": "mmbook.exercises:check_causal_mask",
    "ex-text-reverse": "mmbook.exercises:check_reverse_real_tokens",
    "ex-fusion-concat-cost": "mmbook.exercises:check_concat_head_parameters",
    "ex-fusion-accuracy-per-parameter": "mmbook.exercises:check_pareto_front",
    "ex-fusion-weights-layernorm": "mmbook.exercises:check_layernorm_answer",
    "ex-fusion-word-dropout": "mmbook.exercises:check_drop_words",
    "ex-fusion-ogm": "mmbook.exercises:check_modulation_factor",
    "ex-obj-ece-blind-spot": "mmbook.exercises:check_ece_by_hand",
    "ex-obj-nms": "mmbook.exercises:check_nms",
    "ex-obj-shuffled-expressions": "mmbook.exercises:check_shuffled_expectation",
    "ex-worked-concat-cost": "mmbook.exercises:check_concat_head_cost",
    "ex-frontiers-image-occlusion": "mmbook.exercises:check_occlusion_grid",
    "ex-align-info-nce": "mmbook.alignment:check_info_nce",
    "ex-align-recall": "mmbook.alignment:check_recall_at_k",
    "ex-align-confusion": "mmbook.exercises:check_confusion_matrix",
    "ex-align-cone": "mmbook.exercises:check_cone_conclusion",
    "ex-own-majority": "mmbook.exercises:check_majority_baseline",
    "ex-appendix-fastest": "mmbook.exercises:check_fastest_run",
    "ex-scaling-ghost-bn": "mmbook.exercises:check_ghost_gradient",
    "ex-gen-chair": "mmbook.generation.checkers:check_chair",
    "ex-gen-beam-step": "mmbook.generation.checkers:check_beam_step",
    "ex-gen-prefix-parameters": "mmbook.generation.checkers:check_prefix_parameters",
    "ex-reason-pairs": "mmbook.reasoning.checkers:check_relation_pairs",
    "ex-reason-tokens": "mmbook.reasoning.checkers:check_token_count",
    "ex-reason-closest": "mmbook.reasoning.checkers:check_closest_colour",
})
