"""Questions about a scene, generated from small functional programs executed on its ground truth.

CLEVR (Johnson et al. 2017) writes every question together with a *functional program* that answers it
on the scene's ground truth: "are there more animals than vehicles?" is::

    [["scene"], ["filter", "kind", "animal"], ["count"],
     ["scene"], ["filter", "kind", "vehicle"], ["count"], ["greater"]]

A program is a JSON-able list of steps ``[function, *arguments]`` run on a stack, in postfix order: each
step pops its inputs (the most recent result last), computes, and pushes its result; the answer is the
one value left at the end. The answer is always obtained by :func:`execute`, never written separately,
so a question can never disagree with its scene.

A scene is a list of :class:`SceneObject`: a box and string attributes. CIFAR-10 scenes
(:func:`scene_objects`) have ``class``, ``kind`` (animal or vehicle), ``size`` (``small``/``medium``/``big``
as in the Generation part: side <= 22 pixels, between, >= 27), ``place`` (``left`` or ``right``: centre x < 32
or not) and ``row`` (``top`` or ``bottom``: centre y < 32 or not); Sort-of-CLEVR shapes
(:func:`shape_objects`) have ``shape``, ``colour``, ``size``, ``place`` and ``row``.

The functions (a *set* is a set of objects; "one object" is a set that must hold exactly one):

================  ===========================  =========================================================
``scene``         -> set                       every object of the scene
``filter a v``    set -> set                   the objects whose attribute ``a`` is ``v``
``unique``        set -> one object            the set itself, which must hold exactly one object
``relate d``      one object -> set            the other objects that are ``d`` (left/right/above/below) of it
``closest``       one object -> set            the other object(s) nearest to it (centre distance)
``farthest``      one object -> set            the other object(s) farthest from it
``same a``        one object -> set            the other objects with the same attribute ``a``
``count``         set -> number                how many objects
``exist``         set -> yes/no                whether there is any
``query a``       one object -> value          its attribute ``a``
``equal_attr``    value, value -> yes/no       whether two values of the same attribute are equal
``greater``       number, number -> yes/no     whether the first is greater than the second
``less``          number, number -> yes/no     whether the first is less than the second
``equal_integer`` number, number -> yes/no     whether they are equal
================  ===========================  =========================================================

``relate`` uses the book's one relation rule (:func:`mmbook.data.scene_captions.relation_phrase`): the
larger offset of the two centres decides, so every ordered pair of objects stands in exactly one of the
four relations. ``closest`` and ``farthest`` keep every object within :data:`TIE_MARGIN` pixels of the
extreme distance, so a near tie makes a following ``unique`` fail instead of picking one silently.

Question *families* (:data:`FAMILIES`) propose a ``(text, program)`` for a scene; :func:`generate_questions`
executes the program, drops candidates that refer to a missing or ambiguous object, and balances the
answers of every family by rejection sampling, as CLEVR does. :func:`question_prior_accuracy` measures
the answer bias that remains: how often a "blind" guess from the question text alone is right.

=====================  ====  ==========================================================  ======================
family                 rel.  example                                                     answers
=====================  ====  ==========================================================  ======================
CIFAR-10 scenes
``exist``                    is there a big animal in the left half                      yes, no
``count``                    how many vehicles are there                                 0 .. 4
``query_class``              what is the small animal                                    the 10 classes
``query_kind``               is the big object an animal or a vehicle                    animal, vehicle
``query_size``               what size is the cat                                        small, medium, big
``query_place``              is the truck in the left half or the right half             left, right
``compare_size``       yes   is the cat the same size as the truck                       yes, no
``compare_count``            are there more animals than vehicles                        yes, no
``relate``             yes   what is left of the big truck / which animal is above ...   the 10 classes
Sort-of-CLEVR shapes
``shape_of_colour``          what is the shape of the red object                         circle, square
``horizontal_place``         is the red object in the left half or the right half        left, right
``vertical_place``           is the red object in the top half or the bottom half        top, bottom
``closest_shape``      yes   what is the shape of the object closest to the red object   circle, square
``farthest_shape``     yes   what is the shape of the object farthest from the red ...   circle, square
``count_same_shape``   yes   how many other objects have the same shape as the red ...   0 .. 5
=====================  ====  ==========================================================  ======================

A family is *relational* (Sort-of-CLEVR's split) when its answer depends on how two objects relate: their
positions, their distance or an attribute they share. Questions are lower case, without punctuation, and
use only the words of :func:`question_vocabulary`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch

from mmbook.data.cifar10 import CIFAR10_CLASSES
from mmbook.data.scene_captions import KINDS, SIZE_WORDS, size_word
from mmbook.data.scenes import CANVAS, KIND_OF, RELATION_WORDS, SceneSet
from mmbook.data.shapes import COLOURS, SHAPES, ShapeScenes
from mmbook.text.vocab import LabelVocabulary, Vocabulary, tokenize

PLACES = ("left", "right")
ROWS = ("top", "bottom")
DIRECTIONS = ("left", "right", "above", "below")
# Every attribute an object may have, with its possible values.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "class": tuple(CIFAR10_CLASSES), "kind": KINDS, "shape": SHAPES, "colour": COLOURS,
    "size": SIZE_WORDS, "place": PLACES, "row": ROWS,
}
# The attributes of each image source's objects.
SOURCES: dict[str, tuple[str, ...]] = {
    "scenes": ("class", "kind", "size", "place", "row"),
    "shapes": ("shape", "colour", "size", "place", "row"),
}
MAX_OBJECTS = {"scenes": 4, "shapes": len(COLOURS)}
TIE_MARGIN = 1.0  # pixels: closest/farthest keep every object this close to the extreme distance
BALANCE_SLACK = 0.05  # the most frequent answer of a family may lead the least frequent one by 5% (at least 2)
TRIES_PER_FAMILY = 8  # candidates one family may propose for one question slot of one scene


class ProgramError(ValueError):
    """A program that cannot be executed on a scene: unknown function, wrong argument, missing object..."""


@dataclass(frozen=True)
class SceneObject:
    """One object of a scene: its box ``(x1, y1, x2, y2)`` in pixels and its attributes, e.g.
    ``{"class": "cat", "kind": "animal", "size": "small", "place": "left", "row": "top"}``."""

    box: tuple[float, float, float, float]
    attributes: dict[str, str]

    @property
    def centre(self) -> tuple[float, float]:
        """The centre ``(x, y)`` of the box."""
        x1, y1, x2, y2 = self.box
        return (x1 + x2) / 2, (y1 + y2) / 2


def object_attributes(box: Sequence[float]) -> dict[str, str]:
    """The attributes every source reads off a box ``(x1, y1, x2, y2)``: ``size``, ``place`` and ``row``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return {"size": size_word(x2 - x1), "place": "left" if (x1 + x2) / 2 < CANVAS / 2 else "right",
            "row": "top" if (y1 + y2) / 2 < CANVAS / 2 else "bottom"}


def scene_objects(scenes: SceneSet) -> list[list[SceneObject]]:
    """The ground truth of every CIFAR-10 scene (:mod:`mmbook.data.scenes`) as :class:`SceneObject` lists.

    Attributes: ``class``, ``kind``, ``size``, ``place`` and ``row`` (see the module docstring).
    """
    boxes, classes, counts = scenes.boxes.tolist(), scenes.classes.tolist(), scenes.counts.tolist()
    return [[cifar_object(box, label) for box, label in zip(scene_boxes[:k], scene_classes[:k])]
            for scene_boxes, scene_classes, k in zip(boxes, classes, counts)]


def cifar_object(box: Sequence[float], label: int) -> SceneObject:
    """The object of a CIFAR-10 scene with box ``(x1, y1, x2, y2)`` and class index ``label``, with the attributes
    ``class``, ``kind``, ``size``, ``place`` and ``row`` (see the module docstring)."""
    name = CIFAR10_CLASSES[label]
    return SceneObject(tuple(box), {"class": name, "kind": KIND_OF[name], **object_attributes(box)})


def shape_objects(scenes: ShapeScenes) -> list[list[SceneObject]]:
    """The ground truth of every scene as :class:`SceneObject` lists, in box order.

    Each object's attributes: ``shape`` (:data:`~mmbook.data.shapes.SHAPES`), ``colour`` (:data:`~mmbook.data.shapes.COLOURS`), ``size`` (the book's size
    word of its side: always ``"small"`` at 10..12 pixels), ``place`` (``"left"`` or ``"right"``: centre x < 32
    or not) and ``row`` (``"top"`` or ``"bottom"``: centre y < 32 or not).
    """
    boxes, shapes, colours = scenes.boxes.tolist(), scenes.shapes.tolist(), scenes.colours.tolist()
    return [[SceneObject(tuple(box), {"shape": SHAPES[s], "colour": COLOURS[c], **object_attributes(box)})
             for box, s, c in zip(scene_boxes, scene_shapes, scene_colours)]
            for scene_boxes, scene_shapes, scene_colours in zip(boxes, shapes, colours)]


def object_source(objects: Sequence[SceneObject]) -> str:
    """``"scenes"`` or ``"shapes"``: which image source one scene's objects come from (by their attributes)."""
    if not objects:
        raise ValueError("a scene needs at least one object; this one has none")
    names = set(objects[0].attributes)
    for source, attributes in SOURCES.items():
        if names == set(attributes):
            return source
    raise ValueError(f"objects with attributes {sorted(names)} come from no known source; expected "
                     + " or ".join(f"{sorted(a)} ({s})" for s, a in SOURCES.items()))


# ----------------------------------------------------------------------------------------------------------------
# Execution
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Value:
    """An attribute value, with the attribute it belongs to (so a size is never compared with a class)."""

    attribute: str
    value: str


_Result = Union[tuple, int, bool, _Value]  # a set of object indices, a number, yes/no, or a value

# function -> (input types, argument names); "objects" is a set, "object" a set that must hold one object.
_FUNCTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "scene": ((), ()),
    "filter": (("objects",), ("attribute", "value")),
    "unique": (("objects",), ()),
    "relate": (("object",), ("direction",)),
    "closest": (("object",), ()),
    "farthest": (("object",), ()),
    "same": (("object",), ("attribute",)),
    "count": (("objects",), ()),
    "exist": (("objects",), ()),
    "query": (("object",), ("attribute",)),
    "equal_attr": (("value", "value"), ()),
    "greater": (("number", "number"), ()),
    "less": (("number", "number"), ()),
    "equal_integer": (("number", "number"), ()),
}
FUNCTIONS = tuple(_FUNCTIONS)


def _kind_of_result(value: _Result) -> str:
    """How a result reads in an error message."""
    if isinstance(value, tuple):
        return f"a set of {len(value)} object(s)"
    if isinstance(value, bool):
        return "a yes/no answer"
    if isinstance(value, int):
        return "a number"
    return f"a {value.attribute} value"


def _check_input(value: _Result, wanted: str) -> bool:
    if wanted in ("objects", "object"):
        return isinstance(value, tuple)
    if wanted == "number":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, _Value)


def _direction(objects: Sequence[SceneObject], a: int, b: int) -> str:
    """Where object ``a`` is relative to object ``b``: the book's rule
    (:func:`~mmbook.data.scene_captions.relation_phrase`, written out for speed), the larger offset of the centres
    decides."""
    (xa, ya), (xb, yb) = objects[a].centre, objects[b].centre
    dx, dy = xa - xb, ya - yb
    return ("left" if dx < 0 else "right") if abs(dx) >= abs(dy) else ("above" if dy < 0 else "below")


class _Where:
    """Names a step in error messages; formatted only when an error is raised."""

    def __init__(self, n: int, step: Sequence) -> None:
        self.n, self.step = n, step

    def __str__(self) -> str:
        return f"step {self.n} {list(self.step)!r}"


def _attribute(name: Any, objects: Sequence[SceneObject], where: _Where) -> str:
    """Check an attribute argument: known, and carried by this scene's objects."""
    if name not in ATTRIBUTES:
        raise ProgramError(f"{where}: unknown attribute {name!r}; the attributes are {', '.join(ATTRIBUTES)}")
    if name not in objects[0].attributes:
        raise ProgramError(f"{where}: the objects of this scene have no attribute {name!r}; they have "
                           f"{', '.join(objects[0].attributes)}")
    return name


def _one(value: tuple, where: _Where) -> int:
    """The single object of a set, or a ProgramError saying the program refers to a missing or ambiguous object."""
    if len(value) == 0:
        raise ProgramError(f"{where}: the program refers to an object that does not exist (no object matches)")
    if len(value) > 1:
        raise ProgramError(f"{where}: the program refers to one object, but {len(value)} objects match; "
                           f"add filters so that exactly one does")
    return value[0]


def _step(function: str, args: list, inputs: list[_Result], objects: Sequence[SceneObject], where: _Where) -> _Result:
    """Apply one function to its (type-checked) inputs."""
    everyone = range(len(objects))
    if function == "scene":
        return tuple(everyone)
    if function == "filter":
        attribute = _attribute(args[0], objects, where)
        if args[1] not in ATTRIBUTES[attribute]:
            raise ProgramError(f"{where}: {args[1]!r} is not a value of {attribute!r}; expected one of "
                               f"{', '.join(ATTRIBUTES[attribute])}")
        return tuple(i for i in inputs[0] if objects[i].attributes[attribute] == args[1])
    if function == "unique":
        _one(inputs[0], where)
        return inputs[0]
    if function in ("count", "exist"):
        return len(inputs[0]) if function == "count" else len(inputs[0]) > 0
    if function in ("equal_attr", "greater", "less", "equal_integer"):
        a, b = inputs
        if function == "equal_attr":
            if a.attribute != b.attribute:
                raise ProgramError(f"{where}: cannot compare a {a.attribute} with a {b.attribute}; query the same "
                                   f"attribute of both objects")
            return a.value == b.value
        return a > b if function == "greater" else a < b if function == "less" else a == b
    # The functions of one object.
    me = _one(inputs[0], where)
    others = [i for i in everyone if i != me]
    if function == "query":
        attribute = _attribute(args[0], objects, where)
        return _Value(attribute, objects[me].attributes[attribute])
    if function == "same":
        attribute = _attribute(args[0], objects, where)
        return tuple(i for i in others if objects[i].attributes[attribute] == objects[me].attributes[attribute])
    if function == "relate":
        if args[0] not in DIRECTIONS:
            raise ProgramError(f"{where}: unknown direction {args[0]!r}; expected one of {', '.join(DIRECTIONS)}")
        return tuple(i for i in others if _direction(objects, i, me) == args[0])
    # closest / farthest
    if not others:
        return ()
    cx, cy = objects[me].centre
    distance = {i: math.hypot(objects[i].centre[0] - cx, objects[i].centre[1] - cy) for i in others}
    if function == "closest":
        best = min(distance.values())
        return tuple(i for i in others if distance[i] <= best + TIE_MARGIN)
    best = max(distance.values())
    return tuple(i for i in others if distance[i] >= best - TIE_MARGIN)


def execute(program: Sequence[Sequence[str]], objects: Sequence[SceneObject]) -> str:
    """Run ``program`` on one scene's ``objects`` and return the answer as a string.

    Answers: ``"yes"``/``"no"``, a number as digits (``"0"``, ``"3"``) or an attribute value (``"cat"``).

    Raises:
        ProgramError: for an unknown function, a wrong number or kind of argument, an unknown attribute or
            value, inputs of the wrong type, a ``unique``/``query`` (or any one-object function) on a set that is
            empty or holds several objects, or a program that does not end with exactly one answer.
    """
    if not objects:
        raise ProgramError("the scene has no objects; every scene needs at least one")
    if not isinstance(program, (list, tuple)) or len(program) == 0:
        raise ProgramError(f"a program is a non-empty list of steps such as [['scene'], ['count']], got {program!r}")
    stack: list[_Result] = []
    for n, step in enumerate(program):
        if not isinstance(step, (list, tuple)) or len(step) == 0:
            raise ProgramError(f"step {n} must be a list [function, *arguments], got {step!r}")
        function, args = step[0], list(step[1:])
        where = _Where(n, step)
        if function not in _FUNCTIONS:
            raise ProgramError(f"{where}: unknown function {function!r}; the functions are {', '.join(FUNCTIONS)}")
        wanted, names = _FUNCTIONS[function]
        if len(args) != len(names):
            raise ProgramError(f"{where}: {function} takes {len(names)} argument(s)"
                               + (f" ({', '.join(names)})" if names else "") + f", got {len(args)}")
        if not all(isinstance(a, str) for a in args):
            raise ProgramError(f"{where}: arguments must be strings, got {args!r}")
        if len(stack) < len(wanted):
            raise ProgramError(f"{where}: {function} needs {len(wanted)} input(s), but only {len(stack)} "
                               f"result(s) were computed before it")
        inputs = stack[len(stack) - len(wanted):] if wanted else []
        del stack[len(stack) - len(wanted):]
        for value, kind in zip(inputs, wanted):
            if not _check_input(value, kind):
                need = {"objects": "a set of objects", "object": "one object (a set)", "number": "a number",
                        "value": "an attribute value (from query)"}[kind]
                raise ProgramError(f"{where}: {function} needs {need}, got {_kind_of_result(value)}")
        stack.append(_step(function, args, inputs, objects, where))
    if len(stack) != 1:
        raise ProgramError(f"the program leaves {len(stack)} results; it must end with exactly one answer")
    result = stack[0]
    if isinstance(result, tuple):
        raise ProgramError("the program ends with a set of objects; end it with count, exist or query")
    if isinstance(result, bool):
        return "yes" if result else "no"
    if isinstance(result, int):
        return str(result)
    return result.value


# ----------------------------------------------------------------------------------------------------------------
# Question families
# ----------------------------------------------------------------------------------------------------------------

Candidate = tuple[str, list[list[str]]]
Proposer = Callable[[Sequence[SceneObject], np.random.Generator], Union[Candidate, None]]


@dataclass(frozen=True)
class Family:
    """A kind of question: how to propose one for a scene, and what it can answer.

    Attributes:
        name: the key in :data:`FAMILIES`.
        relational: whether answering needs a relation between objects (Sort-of-CLEVR's split).
        sources: the image sources it applies to (``"scenes"``, ``"shapes"``).
        answers: every answer its programs can give.
        example: an example question.
        propose: ``(objects, rng) -> (text, program)`` or ``None`` when it has nothing to ask; the program may
            still fail on the scene (a missing or ambiguous object), which rejects the candidate.
    """

    name: str
    relational: bool
    sources: tuple[str, ...]
    answers: tuple[str, ...]
    example: str
    propose: Proposer


def _pick(rng: np.random.Generator, values: Sequence) -> Any:
    return values[int(rng.integers(len(values)))]


def _a(phrase: str) -> str:
    """``phrase`` with its indefinite article: ``"an animal"``, ``"a big cat"``."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


_PLACE_WORDS = {"left": "in the left half", "right": "in the right half"}


def _phrase(filters: dict[str, str], plural: bool = False) -> str:
    """The words for the objects ``filters`` selects: ``{"size": "big", "kind": "animal", "place": "left"}`` ->
    ``"big animal in the left half"`` (``"big animals in the left half"`` when ``plural``)."""
    noun = filters.get("class") or filters.get("kind") or filters.get("shape") or "object"
    if plural:
        if "class" in filters:
            raise ValueError("no family counts a class: every class occurs at most once in a scene")
        noun += "s"
    words = [filters[a] for a in ("size", "colour") if a in filters] + [noun]
    if "place" in filters:
        words.append(_PLACE_WORDS[filters["place"]])
    return " ".join(words)


def _select(filters: dict[str, str]) -> list[list[str]]:
    """``[["scene"], ["filter", a, v], ...]`` for ``filters``, in a fixed attribute order."""
    return [["scene"]] + [["filter", a, filters[a]] for a in ATTRIBUTES if a in filters]


def _noun(obj: SceneObject, rng: np.random.Generator, p_class: float, p_kind: float) -> dict[str, str]:
    """Name ``obj`` by its class (probability ``p_class``), its kind (``p_kind``) or as "object"."""
    r = rng.random()
    if r < p_class:
        return {"class": obj.attributes["class"]}
    if r < p_class + p_kind:
        return {"kind": obj.attributes["kind"]}
    return {}


def _maybe(obj: SceneObject, rng: np.random.Generator, attributes: dict[str, float]) -> dict[str, str]:
    """Each attribute of ``obj`` in ``attributes`` with its probability."""
    return {a: obj.attributes[a] for a, p in attributes.items() if rng.random() < p}


def _exist(objects: Sequence[SceneObject], rng: np.random.Generator) -> Candidate | None:
    filters: dict[str, str] = {}
    if rng.random() < 0.4:
        filters["size"] = _pick(rng, SIZE_WORDS)
    r = rng.random()
    if r < 0.45:
        filters["class"] = _pick(rng, CIFAR10_CLASSES)
    elif r < 0.75:
        filters["kind"] = _pick(rng, KINDS)
    if rng.random() < 0.4:
        filters["place"] = _pick(rng, PLACES)
    if not filters:
        return None  # "is there an object?" is always yes
    return f"is there {_a(_phrase(filters))}", _select(filters) + [["exist"]]


def _count_filters(rng: np.random.Generator) -> dict[str, str]:
    filters: dict[str, str] = {}
    if rng.random() < 0.3:
        filters["size"] = _pick(rng, SIZE_WORDS)
    if rng.random() < 0.5:
        filters["kind"] = _pick(rng, KINDS)
    if rng.random() < 0.3:
        filters["place"] = _pick(rng, PLACES)
    return filters


def _count(objects: Sequence[SceneObject], rng: np.random.Generator) -> Candidate | None:
    filters = _count_filters(rng)
    place = filters.pop("place", None)
    text = f"how many {_phrase(filters, plural=True)} " + (f"are {_PLACE_WORDS[place]}" if place else "are there")
    if place:
        filters["place"] = place
    return text, _select(filters) + [["count"]]


def _query_class(objects: Sequence[SceneObject], rng: np.random.Generator) -> Candidate | None:
    obj = _pick(rng, objects)
    filters = {**_maybe(obj, rng, {"size": 0.5}), **_noun(obj, rng, 0.0, 0.5), **_maybe(obj, rng, {"place": 0.5})}
    return f"what is the {_phrase(filters)}", _select(filters) + [["unique"], ["query", "class"]]


def _query_kind(objects: Sequence[SceneObject], rng: np.random.Generator) -> Candidate | None:
    obj = _pick(rng, objects)
    filters = _maybe(obj, rng, {"size": 0.5, "place": 0.5})
    return (f"is the {_phrase(filters)} an animal or a vehicle",
            _select(filters) + [["unique"], ["query", "kind"]])


def _query_size(objects: Sequence[SceneObject], rng: np.random.Generator) -> Candidate | None:
    obj = _pick(rng, objects)
    filters = {**_noun(obj, rng, 0.5, 0.25), **_maybe(obj, rng, {"place": 0.4})}
    return f"what size is the {_phrase(filters)}", _select(filters) + [["unique"], ["query", "size"]]


def _query_place(objects: Sequence[SceneObject], rng: np.random.Generator) -> Candidate | None:
    obj = _pick(rng, objects)
    filters = {**_maybe(obj, rng, {"size": 0.4}), **_noun(obj, rng, 0.5, 0.25)}
    return (f"is the {_phrase(filters)} in the left half or the right half",
            _select(filters) + [["unique"], ["query", "place"]])


def _two(objects: Sequence[SceneObject], rng: np.random.Generator) -> tuple[int, int] | None:
    """Two different objects' indices, or ``None`` for a one-object scene."""
    if len(objects) < 2:
        return None
    a = int(rng.integers(len(objects)))
    b = int(rng.integers(len(objects) - 1))
    return a, b + (b >= a)


def _compare_size(objects: Sequence[SceneObject], rng: np.random.Generator) -> Candidate | None:
    pair = _two(objects, rng)
    if pair is None:
        return None
    first, second = (_noun(objects[j], rng, 0.7, 0.3) for j in pair)
    program = (_select(first) + [["unique"], ["query", "size"]] + _select(second) + [["unique"], ["query", "size"]]
               + [["equal_attr"]])
    return f"is the {_phrase(first)} the same size as the {_phrase(second)}", program


_COMPARISONS = (("more", "than", "greater"), ("fewer", "than", "less"), ("as many", "as", "equal_integer"))


def _compare_count(objects: Sequence[SceneObject], rng: np.random.Generator) -> Candidate | None:
    words, joiner, function = _COMPARISONS[int(rng.choice(3, p=[0.4, 0.3, 0.3]))]
    contrast = _pick(rng, ("kind", "size", "place"))
    shared: dict[str, str] = {}
    if contrast != "size" and rng.random() < 0.3:
        shared["size"] = _pick(rng, SIZE_WORDS)
    if contrast != "kind" and rng.random() < 0.5:
        shared["kind"] = _pick(rng, KINDS)
    if contrast != "place" and rng.random() < 0.3:
        shared["place"] = _pick(rng, PLACES)
    values = {"kind": KINDS, "size": SIZE_WORDS, "place": PLACES}[contrast]
    one, two = (str(v) for v in rng.choice(values, size=2, replace=False))
    first, second = {**shared, contrast: one}, {**shared, contrast: two}
    program = _select(first) + [["count"]] + _select(second) + [["count"], [function]]
    if contrast == "place":
        base = _phrase(shared, plural=True)
        text = f"are there {words} {base} {_PLACE_WORDS[one]} {joiner} {_PLACE_WORDS[two]}"
    else:
        text = f"are there {words} {_phrase(first, plural=True)} {joiner} {_phrase(second, plural=True)}"
    return text, program


def _relate(objects: Sequence[SceneObject], rng: np.random.Generator) -> Candidate | None:
    pair = _two(objects, rng)
    if pair is None:
        return None
    direction = _direction(objects, *pair)
    target, anchor = objects[pair[0]], objects[pair[1]]
    reference = _noun(anchor, rng, 0.6, 0.4)
    if "class" in reference and rng.random() < 0.3:
        reference = {"size": anchor.attributes["size"], **reference}
    program = _select(reference) + [["unique"], ["relate", direction]]
    relation = RELATION_WORDS[direction]
    if rng.random() < 0.5:
        kind = target.attributes["kind"]
        program += [["filter", "kind", kind], ["unique"], ["query", "class"]]
        return f"which {kind} is {relation} the {_phrase(reference)}", program
    program += [["unique"], ["query", "class"]]
    return f"what is {relation} the {_phrase(reference)}", program


def _by_colour(objects: Sequence[SceneObject], rng: np.random.Generator) -> tuple[str, list[list[str]]]:
    colour = _pick(rng, objects).attributes["colour"]
    return f"the {colour} object", [["scene"], ["filter", "colour", colour], ["unique"]]


def _shape_of_colour(objects: Sequence[SceneObject], rng: np.random.Generator) -> Candidate | None:
    name, program = _by_colour(objects, rng)
    return f"what is the shape of {name}", program + [["query", "shape"]]


def _horizontal_place(objects: Sequence[SceneObject], rng: np.random.Generator) -> Candidate | None:
    name, program = _by_colour(objects, rng)
    return f"is {name} in the left half or the right half", program + [["query", "place"]]


def _vertical_place(objects: Sequence[SceneObject], rng: np.random.Generator) -> Candidate | None:
    name, program = _by_colour(objects, rng)
    return f"is {name} in the top half or the bottom half", program + [["query", "row"]]


def _closest_shape(objects: Sequence[SceneObject], rng: np.random.Generator) -> Candidate | None:
    name, program = _by_colour(objects, rng)
    return (f"what is the shape of the object closest to {name}",
            program + [["closest"], ["unique"], ["query", "shape"]])


def _farthest_shape(objects: Sequence[SceneObject], rng: np.random.Generator) -> Candidate | None:
    name, program = _by_colour(objects, rng)
    return (f"what is the shape of the object farthest from {name}",
            program + [["farthest"], ["unique"], ["query", "shape"]])


def _count_same_shape(objects: Sequence[SceneObject], rng: np.random.Generator) -> Candidate | None:
    name, program = _by_colour(objects, rng)
    return f"how many other objects have the same shape as {name}", program + [["same", "shape"], ["count"]]


def _digits(n: int) -> tuple[str, ...]:
    return tuple(str(i) for i in range(n + 1))


_YES_NO = ("yes", "no")
FAMILIES: dict[str, Family] = {family.name: family for family in (
    Family("exist", False, ("scenes",), _YES_NO, "is there a big animal in the left half", _exist),
    Family("count", False, ("scenes",), _digits(MAX_OBJECTS["scenes"]), "how many vehicles are there", _count),
    Family("query_class", False, ("scenes",), tuple(CIFAR10_CLASSES), "what is the small animal", _query_class),
    Family("query_kind", False, ("scenes",), KINDS, "is the big object an animal or a vehicle", _query_kind),
    Family("query_size", False, ("scenes",), SIZE_WORDS, "what size is the cat", _query_size),
    Family("query_place", False, ("scenes",), PLACES, "is the truck in the left half or the right half",
           _query_place),
    Family("compare_size", True, ("scenes",), _YES_NO, "is the cat the same size as the truck", _compare_size),
    Family("compare_count", False, ("scenes",), _YES_NO, "are there more animals than vehicles", _compare_count),
    Family("relate", True, ("scenes",), tuple(CIFAR10_CLASSES), "what is left of the big truck", _relate),
    Family("shape_of_colour", False, ("shapes",), SHAPES, "what is the shape of the red object", _shape_of_colour),
    Family("horizontal_place", False, ("shapes",), PLACES, "is the red object in the left half or the right half",
           _horizontal_place),
    Family("vertical_place", False, ("shapes",), ROWS, "is the red object in the top half or the bottom half",
           _vertical_place),
    Family("closest_shape", True, ("shapes",), SHAPES, "what is the shape of the object closest to the red object",
           _closest_shape),
    Family("farthest_shape", True, ("shapes",), SHAPES,
           "what is the shape of the object farthest from the red object", _farthest_shape),
    Family("count_same_shape", True, ("shapes",), _digits(MAX_OBJECTS["shapes"] - 1),
           "how many other objects have the same shape as the red object", _count_same_shape),
)}


def families_for(source: str) -> tuple[str, ...]:
    """The names of the families that apply to ``source`` (``"scenes"`` or ``"shapes"``), in registry order."""
    _check_source(source)
    return tuple(name for name, family in FAMILIES.items() if source in family.sources)


def _check_source(source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")


# ----------------------------------------------------------------------------------------------------------------
# Question sets
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class QuestionSet:
    """Questions about scenes, with the programs that answer them.

    Attributes:
        scene_index: int64 ``(Q,)`` the scene each question is about.
        family: ``Q`` family names (keys of :data:`FAMILIES`).
        questions: ``Q`` question texts, lower case, without punctuation.
        programs: ``Q`` programs (lists of steps, see :func:`execute`).
        answers: ``Q`` answers, each the result of executing its program.
    """

    scene_index: torch.Tensor
    family: list[str]
    questions: list[str]
    programs: list[list[list[str]]]
    answers: list[str]

    def __len__(self) -> int:
        return len(self.questions)

    def subset(self, index: torch.Tensor | Sequence[int]) -> "QuestionSet":
        """The questions at ``index`` (a long or bool tensor, or a list of ints), as a new :class:`QuestionSet`."""
        index = torch.as_tensor(index)
        if index.dtype == torch.bool:
            if index.shape != (len(self),):
                raise ValueError(f"a bool index must have shape ({len(self)},), got {tuple(index.shape)}")
            index = torch.nonzero(index).flatten()
        rows = index.long().tolist()
        return QuestionSet(self.scene_index[index.long()], [self.family[i] for i in rows],
                           [self.questions[i] for i in rows], [self.programs[i] for i in rows],
                           [self.answers[i] for i in rows])

    def tokens(self, vocab: Vocabulary, max_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Question token ids ``(Q, T)`` int64, right-padded with 0, and lengths ``(Q,)``.

        Raises:
            ValueError: if a question has a word outside ``vocab`` (it would silently become ``<unk>``).
        """
        unknown = sorted({w for q in self.questions for w in tokenize(q) if w not in vocab})
        if unknown:
            raise ValueError(f"question words {unknown[:8]} are not in the vocabulary; use question_vocabulary(source) "
                             f"for the source the questions were generated on")
        return vocab.encode_batch(self.questions, max_len=max_len)

    def answer_ids(self, answer_vocab: LabelVocabulary) -> torch.Tensor:
        """Answer ids ``(Q,)`` int64 in ``answer_vocab`` (see :func:`answer_vocabulary`).

        Raises:
            ValueError: for an answer outside the vocabulary.
        """
        for i, answer in enumerate(self.answers):
            if answer not in answer_vocab:
                raise ValueError(f"answer {answer!r} of question {i} ({self.questions[i]!r}) is not in the answer "
                                 f"vocabulary ({', '.join(answer_vocab.classes)}); use answer_vocabulary(source) for "
                                 f"the source the questions were generated on")
        return answer_vocab.encode_many(self.answers)


def _balanced(counts: dict[str, int], answer: str) -> bool:
    """The balancing rule: accept ``answer`` unless it already leads the family's least frequent answer (among
    the answers its candidates have given so far) by ``max(2, BALANCE_SLACK * least)`` questions or more."""
    least = min(counts.values())
    return counts[answer] < least + max(2.0, BALANCE_SLACK * least)


def generate_questions(objects: Sequence[Sequence[SceneObject]], families: Sequence[str], per_scene: int,
                       seed: int, *, balance: bool = True) -> QuestionSet:
    """Up to ``per_scene`` questions for every scene, from ``families``, with balanced answers.

    For each question slot of a scene the families are tried in order of how few questions they have so far
    (ties in random order), each proposing up to :data:`TRIES_PER_FAMILY` candidates; the first acceptable
    candidate is kept. A candidate is acceptable when its program executes (it refers to no missing or
    ambiguous object), its text is new for this scene, and, with ``balance``, its answer passes the
    rejection rule of CLEVR's kind: for every family the accepted answers are counted, and a candidate is
    rejected while its answer already has at least ``least + max(2, 5% of least)`` questions, ``least`` being
    the count of the family's least frequent answer among those its candidates have given so far (an answer a
    family never produces does not hold the others back). Every answer of a family thus ends up about equally
    frequent, and a family whose answers are rare in the scenes gets fewer questions rather than skewed ones.
    A scene where no family finds an acceptable candidate gets fewer than ``per_scene`` questions.

    Args:
        objects: the scenes, as from :func:`scene_objects` or :func:`shape_objects`.
        families: names of :data:`FAMILIES` that apply to the scenes' source (see :func:`families_for`).
        per_scene: the most questions per scene.
        seed: the seed; the same arguments give the same questions.
        balance: ``False`` keeps every valid candidate (to see the unbalanced answer distribution).
    """
    if isinstance(families, str):
        families = [families]
    unknown = [name for name in families if name not in FAMILIES]
    if unknown or not families:
        raise ValueError(f"unknown question families {unknown}; the families are {', '.join(FAMILIES)}"
                         if unknown else f"no question families given; choose from {', '.join(FAMILIES)}")
    families = list(dict.fromkeys(families))
    if not isinstance(per_scene, int) or per_scene <= 0:
        raise ValueError(f"per_scene must be a positive int, got {per_scene!r}")
    if len(objects) == 0:
        raise ValueError("no scenes given; pass scene_objects(scenes) or shape_objects(scenes)")
    sources = {object_source(scene) for scene in objects}
    for name in families:
        wrong = sources - set(FAMILIES[name].sources)
        if wrong:
            raise ValueError(f"family {name!r} asks about {' and '.join(FAMILIES[name].sources)}, but the scenes "
                             f"are {' and '.join(sorted(wrong))}; its families are "
                             f"{', '.join(n for s in sorted(wrong) for n in families_for(s))}")
    rng = np.random.default_rng(seed)
    accepted = {name: 0 for name in families}
    answer_counts: dict[str, dict[str, int]] = {name: {} for name in families}
    scene_index: list[int] = []
    out: dict[str, list] = {"family": [], "questions": [], "programs": [], "answers": []}
    for i, scene in enumerate(objects):
        asked: set[str] = set()
        for _ in range(per_scene):
            order = sorted(rng.permutation(len(families)).tolist(), key=lambda f: accepted[families[f]])
            found = None
            for f in order:
                name = families[f]
                for _ in range(TRIES_PER_FAMILY):
                    candidate = FAMILIES[name].propose(scene, rng)
                    if candidate is None or candidate[0] in asked:
                        continue
                    try:
                        answer = execute(candidate[1], scene)
                    except ProgramError:
                        continue
                    counts = answer_counts[name]
                    counts.setdefault(answer, 0)
                    if balance and not _balanced(counts, answer):
                        continue
                    found = (name, candidate, answer)
                    break
                if found:
                    break
            if found is None:
                break  # nothing acceptable is left for this scene
            name, (text, program), answer = found
            accepted[name] += 1
            answer_counts[name][answer] += 1
            asked.add(text)
            scene_index.append(i)
            for key, value in zip(("family", "questions", "programs", "answers"), (name, text, program, answer)):
                out[key].append(value)
    return QuestionSet(torch.tensor(scene_index, dtype=torch.int64), **out)


# ----------------------------------------------------------------------------------------------------------------
# Vocabularies and the question-only baseline
# ----------------------------------------------------------------------------------------------------------------

_TEMPLATE_WORDS = {
    "scenes": "is there a an how many are what the size in left right half or of same as more fewer than which "
              "animal animals vehicle vehicles object objects above below",
    "shapes": "what is the shape of object in left right half or top bottom closest to farthest from how many "
              "other objects have same as",
}


def question_vocabulary(source: str) -> Vocabulary:
    """The fixed vocabulary of every question the families of ``source`` can ask (independent of the data)."""
    _check_source(source)
    words = _TEMPLATE_WORDS[source].split()
    for attribute in SOURCES[source]:
        words += [w for value in ATTRIBUTES[attribute] for w in value.split()]
    return Vocabulary(list(dict.fromkeys(words)))


def answer_vocabulary(source: str) -> LabelVocabulary:
    """Every answer a program can give on ``source``: ``yes``, ``no``, the counts ``0`` .. the most objects per
    scene, then every value of the source's attributes. Fixed, independent of the data."""
    _check_source(source)
    answers = [*_YES_NO, *_digits(MAX_OBJECTS[source])]
    answers += [value for attribute in SOURCES[source] for value in ATTRIBUTES[attribute]]
    return LabelVocabulary(list(dict.fromkeys(answers)))


def _most_frequent(answers: Sequence[str]) -> str:
    """The most frequent answer; ties go to the first in alphabetical order."""
    counts = Counter(answers)
    return min(counts, key=lambda a: (-counts[a], a))


def question_prior_accuracy(train: QuestionSet, test: QuestionSet) -> dict[str, float]:
    """Accuracy of the "blind" question-only baseline, by counting (no learning; Agrawal et al. 2018).

    For every test question it predicts the most frequent training answer of the same question text; for a
    text never seen in training, the most frequent training answer of its family (and of all training
    questions if the family is missing from training). Ties go to the first answer in alphabetical order.

    Returns:
        accuracy per family of ``test`` and ``"overall"``, each in ``[0, 1]``.
    """
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"question_prior_accuracy needs training and test questions, got {len(train)} and {len(test)}")
    by_text: dict[str, list[str]] = {}
    by_family: dict[str, list[str]] = {}
    for text, family, answer in zip(train.questions, train.family, train.answers):
        by_text.setdefault(text, []).append(answer)
        by_family.setdefault(family, []).append(answer)
    text_guess = {text: _most_frequent(answers) for text, answers in by_text.items()}
    family_guess = {family: _most_frequent(answers) for family, answers in by_family.items()}
    fallback = _most_frequent(train.answers)
    right: dict[str, list[bool]] = {}
    for text, family, answer in zip(test.questions, test.family, test.answers):
        guess = text_guess.get(text) or family_guess.get(family) or fallback
        right.setdefault(family, []).append(guess == answer)
    accuracy = {family: sum(hits) / len(hits) for family, hits in right.items()}
    accuracy["overall"] = sum(sum(hits) for hits in right.values()) / len(test)
    return accuracy
