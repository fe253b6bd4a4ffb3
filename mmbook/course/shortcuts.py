"""Find the shortcuts an exercise forbids (``F.conv2d`` in "write your own conv2d") in a reader's answer.

Used by graded checks (the instructor's ``graded_checks.py``, see ``make instructor``) in the
grader's fresh judging process. Two ways, because either alone is easy to get round:

- **read**: :func:`forbidden_references` walks the answer's code (a function, or every method of a
  class, nested functions included) and the objects its names refer to: globals, closure cells,
  default arguments. One that *is* a forbidden object (``from torch.nn.functional import
  conv2d as c`` binds ``c`` to it) is found whatever it is called.
- **watch**: :class:`Watch` replaces, while the answer runs, every binding of each forbidden
  function in every loaded module (``torch.conv2d`` and ``torch.nn.functional.conv2d`` are one
  object, bound in two modules), and each forbidden method on its class
  (``torch.nn.LSTMCell.forward``, ``torch.Tensor.sigmoid``), with a stand-in that records the
  call and calls through. So ``F.conv2d`` reached through an attribute, or ``nn.Conv2d``
  (which calls it), is seen too.
  Only calls made while the answer runs count: the checker's own reference computations,
  made outside, do not.

A grader can only see what runs; code that rebuilds a forbidden routine from its parts
(``torch.ops.aten``) must be named in the forbidden list too.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any


def resolve(dotted: str) -> Any | None:
    """The object ``dotted`` names (``"torch.nn.functional.conv2d"``), or ``None`` where it does not exist."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attribute in parts[cut:]:
                value = getattr(value, attribute)
        except AttributeError:
            return None
        return value
    return None


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _codes(constant)


def _functions_of(answer: Any) -> Iterator[types.FunctionType]:
    """The Python functions an answer is made of: itself, or a class's methods (its own and its bases' outside torch)."""
    if isinstance(answer, functools.partial):
        yield from _functions_of(answer.func)
    elif inspect.isclass(answer):
        for klass in answer.__mro__:
            if klass.__module__.split(".")[0] in {"torch", "builtins", "typing"}:
                continue
            for value in vars(klass).values():
                value = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
                if isinstance(value, property):
                    value = value.fget
                if isinstance(value, types.FunctionType):
                    yield value
    elif isinstance(answer, types.MethodType):
        yield from _functions_of(answer.__func__)
    elif isinstance(answer, types.FunctionType):
        yield answer


def forbidden_references(answer: Any, forbidden: dict[str, Any]) -> list[str]:
    """The names in ``forbidden`` (dotted name to object) that ``answer``'s code refers to directly.

    Follows functions defined alongside the answer (a helper it calls) one level at a time, and
    classes it builds on.
    """
    objects = {id(obj): name for name, obj in forbidden.items() if obj is not None}
    found: list[str] = []
    seen: set[int] = set()
    pending = list(_functions_of(answer))
    while pending:
        function = pending.pop()
        if id(function) in seen:
            continue
        seen.add(id(function))
        referenced: list[Any] = [cell.cell_contents for cell in (function.__closure__ or ())
                                 if _has_contents(cell)]
        referenced += list(function.__defaults__ or ()) + list((function.__kwdefaults__ or {}).values())
        names = {name for code in _codes(function.__code__) for name in code.co_names}
        referenced += [function.__globals__[name] for name in names if name in function.__globals__]
        for value in referenced:
            if id(value) in objects and objects[id(value)] not in found:
                found.append(objects[id(value)])
            elif isinstance(value, (types.FunctionType, type, functools.partial)) and \
                    getattr(value, "__module__", "") not in {None, "builtins"} and \
                    not str(getattr(value, "__module__", "")).startswith(("torch", "mmbook", "numpy", "torchvision")):
                pending.extend(_functions_of(value))  # the reader's own helper or base class
            if inspect.isclass(value):
                for klass in value.__mro__:
                    if id(klass) in objects and objects[id(klass)] not in found:
                        found.append(objects[id(klass)])
    return found


def _has_contents(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:  # an empty cell
        return False
    return True


class Watch:
    """While active, every binding of each forbidden function in a loaded module records its calls.

    Use :meth:`wrap` on the answer so that only calls made while it runs are watched::

        watch = Watch({"torch.nn.functional.conv2d": F.conv2d})
        checker(watch.wrap(answer))
        watch.used  # ["torch.nn.functional.conv2d"] if the answer called it
    """

    def __init__(self, forbidden: dict[str, Any]) -> None:
        self.forbidden = {name: obj for name, obj in forbidden.items() if callable(obj) and not inspect.isclass(obj)}
        self.used: list[str] = []
        self._depth = 0

    def _stand_in(self, name: str, original: Callable) -> Callable:
        def stand_in(*args: Any, **kwargs: Any) -> Any:
            if name not in self.used:
                self.used.append(name)
            return original(*args, **kwargs)

        return stand_in

    def _bindings(self) -> list[tuple[Any, str, Any, bool, str]]:
        """Every place a forbidden function is bound: ``(owner, key, original, owner is a class, forbidden name)``.

        A module's namespace may bind it under any name; a method (``torch.nn.LSTMCell.forward``)
        is bound on its class, where it is replaced on the class itself.
        """
        names = {id(obj): name for name, obj in self.forbidden.items()}
        bindings: list[tuple[Any, str, Any, bool, str]] = []
        for module in list(sys.modules.values()):
            namespace = getattr(module, "__dict__", None)
            if not isinstance(namespace, dict):
                continue
            for key, value in list(namespace.items()):
                if id(value) in names:
                    bindings.append((namespace, key, value, False, names[id(value)]))
        for name in self.forbidden:
            owner_name, _, attribute = name.rpartition(".")
            owner = resolve(owner_name) if owner_name else None
            if inspect.isclass(owner):
                bindings.append((owner, attribute, vars(owner).get(attribute), True, name))
        return bindings

    def __enter__(self) -> Watch:
        self._depth += 1
        if self._depth == 1:
            self._saved = self._bindings()
            for owner, key, value, on_class, name in self._saved:
                if on_class:
                    setattr(owner, key, self._stand_in(name, getattr(owner, key)))
                else:
                    owner[key] = self._stand_in(name, value)
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            for owner, key, value, on_class, _ in reversed(self._saved):
                if not on_class:
                    owner[key] = value
                elif value is None:  # inherited (e.g. from torch's C base class): remove the stand-in
                    delattr(owner, key)
                else:
                    setattr(owner, key, value)

    def wrap(self, answer: Any) -> Any:
        """``answer`` with its calls watched: a function, or a class whose instances' methods are watched."""
        if inspect.isclass(answer):
            watch = self

            def watched_method(method: Callable) -> Callable:
                @functools.wraps(method)
                def run(*args: Any, **kwargs: Any) -> Any:
                    with watch:
                        return method(*args, **kwargs)
                return run

            methods = {name: watched_method(value) for name, value in vars(answer).items()
                       if isinstance(value, types.FunctionType)}
            return type(answer.__name__, (answer,), methods)
        if not callable(answer):
            return answer

        @functools.wraps(answer)
        def watched(*args: Any, **kwargs: Any) -> Any:
            with self:
                return answer(*args, **kwargs)

        return watched


def forbid(checker: Callable[..., Any], forbidden: dict[str, str], what: str) -> Callable[..., Any]:
    """``checker`` made strict: it fails an answer that uses any of ``forbidden`` (dotted name to why).

    ``what`` says what to use instead, for the message. The returned checker reads the
    answer's code first, then runs ``checker`` on the watched answer and fails when a
    forbidden function ran, even where its result was right.
    """

    def strict(answer: Any, *more: Any, **options: Any) -> None:
        objects = {name: resolve(name) for name in forbidden}
        named = forbidden_references(answer, objects)
        if named:
            raise AssertionError(_message(named, forbidden, what))
        watch = Watch(objects)
        try:
            checker(watch.wrap(answer), *more, **options)
        finally:
            if watch.used:
                raise AssertionError(_message(watch.used, forbidden, what))

    strict.__name__ = f"strict_{getattr(checker, '__name__', 'check')}"
    strict.__doc__ = f"{checker.__doc__ or ''}\n\nGraded: fails an answer that uses {', '.join(forbidden)}."
    return strict


def _message(names: list[str], forbidden: dict[str, str], what: str) -> str:
    listed = "; ".join(f"{name} ({forbidden[name]})" for name in names)
    return f"your answer uses what this exercise forbids: {listed}. {what}"
