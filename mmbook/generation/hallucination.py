"""Object hallucination of captions, measured exactly: every scene knows its objects, sizes, places and relations.

A captioning model *hallucinates* when it names something that is not in the image. Rohrbach et al.
(2018, "Object Hallucination in Image Captioning") measure it on COCO with CHAIR, by mapping the
words of a caption (and their synonyms) to the 80 COCO categories and comparing them with the
image's annotated objects. On our scenes the comparison is exact, and it goes beyond objects: a
caption can also state a wrong size, a wrong place or a wrong relation.

**Parsing.** :func:`parse_mentions` reads the objects a caption mentions: every class name or
synonym (:data:`~mmbook.generation.references.SYNONYMS`: "car" is an automobile) and every kind word
("animal", "vehicles", "object"), with the size word just before it (``small``/``little``,
``medium``, ``big``/``large``) and the place phrase just after it ("at the top left" ... the nine
:data:`~mmbook.data.scene_captions.PLACE_PHRASES`). :func:`parse_relations` reads the relations
"left of", "right of" (with or without "to the" or "is"), "above" and "below" between the nearest
mentioned object before and the nearest after. Both accept anything a model may write -- repeated
words, a caption cut off at the maximum length, unknown words (ignored) -- and never raise on a string.

**The figures** of :func:`hallucination_report` (a caption is compared with its own scene):

- ``chair_i`` (CHAIR-i) = sum over captions of |hallucinated objects| / sum over captions of
  |mentioned objects|, where a caption's *mentioned objects* are the **set** of classes it names
  (each class counted once per caption, however often it is repeated, as in the paper's set notation
  ``|{hallucinated objects}| / |{all objects mentioned}|``) and the *hallucinated* ones are those of
  the set that are not in the scene. Kind words ("an animal") are not objects for CHAIR;
- ``chair_s`` (CHAIR-s) = captions with at least one hallucinated object / all captions;
- ``object_precision`` = 1 - ``chair_i``: the share of mentioned objects that are in the scene;
- ``object_recall`` = objects of the scenes whose class a caption names (or a synonym of it) / all
  objects of the scenes. A kind word alone ("an animal") does **not** recall an object;
- ``wrong_size``: among the mentions of a class present in the scene that state a size, the share whose
  size is not :func:`~mmbook.data.scene_captions.size_word` of the object's side (every mention counts);
- ``wrong_place``: likewise for places and :func:`~mmbook.data.scene_captions.place_phrase`;
- ``wrong_relation``: among the stated relations between two classes present in the scene, the share
  that are false. "a is left of b" is true when a's centre is left of b's (``dx < 0``) and the
  horizontal offset is not smaller than the vertical one by more than :data:`RELATION_MARGIN` pixels
  (``|dx| >= |dy| - RELATION_MARGIN``); likewise for the other three. So the relation that
  :func:`~mmbook.data.scene_captions.relation_phrase` writes (the larger offset decides) is always
  true, and near a diagonal both readings are accepted. A relation of a class to itself is false;
  relations with a kind word or an absent class are not judged (the absent class is already a
  hallucination);
- ``mentions_per_caption``: the mean number of mentioned objects (distinct classes) per caption;
- ``kind_errors``: among kind-only mentions "animal(s)" and "vehicle(s)", the share for which the scene
  holds no object of that kind ("object" is true of every scene and is not counted).

A ratio whose denominator is zero (no mentioned object, no stated size ...) is ``nan``, not 0: "no
errors among no statements" is not a score. Reference captions
(:mod:`mmbook.generation.references`) score 0 on every error figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mmbook.data.cifar10 import CIFAR10_CLASSES
from mmbook.data.scene_captions import PLACE_PHRASES, place_phrase, size_word
from mmbook.data.scenes import KIND_OF
from mmbook.generation.references import PLURALS, SIZE_SYNONYMS, SYNONYMS
from mmbook.text.vocab import tokenize

RELATION_MARGIN = 4.0  # pixels: how much smaller the offset along a relation's axis may be than the other
REPORT_KEYS = ("chair_i", "chair_s", "object_precision", "object_recall", "wrong_size", "wrong_place",
               "wrong_relation", "mentions_per_caption", "kind_errors")

_NAME_OF: dict[str, str] = {name: name for name in CIFAR10_CLASSES}
_NAME_OF.update({word: name for name, words in SYNONYMS.items() for word in words})
_KIND_OF_WORD: dict[str, str] = {**{kind: kind for kind in PLURALS}, **{plural: kind for kind, plural in PLURALS.items()}}
_SIZE_OF: dict[str, str] = {word: size for size, words in SIZE_SYNONYMS.items() for word in words}
# Place phrases as token tuples, longest first, so "at the top left" wins over "at the top".
_PLACES = sorted(((tuple(p.split()), p) for p in PLACE_PHRASES), key=lambda item: -len(item[0]))


@dataclass(frozen=True)
class Mention:
    """One object a caption mentions.

    Attributes:
        name: the canonical CIFAR-10 class, or ``None`` when only a kind is said ("an animal").
        kind: ``"animal"``, ``"vehicle"`` or ``"object"``.
        size: ``"small"``, ``"medium"`` or ``"big"`` (synonyms mapped) when stated just before the noun, else ``None``.
        place: one of the nine place phrases when stated just after the noun, else ``None``.
    """

    name: str | None
    kind: str
    size: str | None = None
    place: str | None = None


def _tokens(caption: str) -> list[str]:
    if not isinstance(caption, str):
        raise TypeError(f"expected a caption string, got {type(caption).__name__}")
    return tokenize(caption)


def _place_at(tokens: list[str], start: int) -> str | None:
    """The place phrase starting at ``tokens[start]``, if any.

    "on the left of the truck" is a relation, not a place: a phrase ending in left/right followed by "of" is
    no place (and no shorter phrase is tried).
    """
    for words, phrase in _PLACES:
        if tuple(tokens[start: start + len(words)]) == words:
            follows = tokens[start + len(words)] if start + len(words) < len(tokens) else None
            if follows == "of" and words[-1] in ("left", "right"):
                return None
            return phrase
    return None


def _nouns(tokens: list[str]) -> list[tuple[int, str | None, str]]:
    """``(position, class name or None, kind)`` of every class, synonym or kind word."""
    found = []
    for i, token in enumerate(tokens):
        if token in _NAME_OF:
            name = _NAME_OF[token]
            found.append((i, name, KIND_OF[name]))
        elif token in _KIND_OF_WORD:
            found.append((i, None, _KIND_OF_WORD[token]))
    return found


def parse_mentions(caption: str) -> list[Mention]:
    """The objects ``caption`` mentions, in order (a class said twice is two mentions).

    ``"a little kitten at the top left and two vehicles"`` ->
    ``[Mention("cat", "animal", "small", "at the top left"), Mention(None, "vehicle")]``.
    """
    tokens = _tokens(caption)
    return [Mention(name, kind, _SIZE_OF.get(tokens[i - 1]) if i > 0 else None, _place_at(tokens, i + 1))
            for i, name, kind in _nouns(tokens)]


def _relations(tokens: list[str]) -> list[tuple[str | None, str, str | None]]:
    """Every directional relation with the nearest noun before it and after it (``None`` for a kind word)."""
    nouns = _nouns(tokens)
    found = []
    for i, token in enumerate(tokens):
        if token in ("left", "right") and i + 1 < len(tokens) and tokens[i + 1] == "of":
            end = i + 2
        elif token in ("above", "below"):
            end = i + 1
        else:
            continue
        before = [noun for noun in nouns if noun[0] < i]
        after = [noun for noun in nouns if noun[0] >= end]
        if before and after:
            found.append((before[-1][1], token, after[0][1]))
    return found


def parse_relations(caption: str) -> list[tuple[str, str, str]]:
    """The relations ``caption`` states between two classes, as ``(name_a, relation, name_b)``.

    ``relation`` is ``"left"``, ``"right"``, ``"above"`` or ``"below"`` (a is left of b ...), read from
    "to the left of", "is left of", "left of", "above", "below"; names are canonical (synonyms mapped).
    The subject is the nearest object mentioned before the relation words and the object the nearest
    after them; relations whose subject or object is only a kind ("the animal is left of the truck") are
    left out. ``"a kitten above a big truck"`` -> ``[("cat", "above", "truck")]``.
    """
    return [(a, relation, b) for a, relation, b in _relations(_tokens(caption)) if a is not None and b is not None]


def _relation_holds(relation: str, dx: float, dy: float) -> bool:
    """Whether a centre offset ``(dx, dy)`` (subject minus object) makes ``relation`` true (see the module doc)."""
    if relation in ("left", "right"):
        return (dx < 0 if relation == "left" else dx > 0) and abs(dx) >= abs(dy) - RELATION_MARGIN
    return (dy < 0 if relation == "above" else dy > 0) and abs(dy) >= abs(dx) - RELATION_MARGIN


@dataclass
class CaptionCheck:
    """Everything :func:`check_caption` finds in one caption: the counts behind :func:`hallucination_report`."""

    mentioned: list[str] = field(default_factory=list)     # distinct classes named, in order
    hallucinated: list[str] = field(default_factory=list)  # those not in the scene
    present: int = 0                                       # objects in the scene
    recalled: int = 0                                      # of them, named by the caption
    sizes: int = 0                                         # sizes stated for present classes ...
    wrong_sizes: int = 0                                   # ... and how many are wrong
    places: int = 0
    wrong_places: int = 0
    relations: int = 0                                     # relations between present classes ...
    wrong_relations: int = 0                               # ... and how many are false
    kinds: int = 0                                         # kind-only mentions of animal/vehicle ...
    wrong_kinds: int = 0                                   # ... with no object of that kind in the scene


def check_caption(caption: str, boxes: np.ndarray, classes: np.ndarray) -> CaptionCheck:
    """Compare one caption with its scene: ``boxes`` ``(k, 4)`` and ``classes`` ``(k,)`` (rows with class -1 ignored)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    classes = np.asarray(classes).reshape(-1)
    if len(boxes) != len(classes):
        raise ValueError(f"boxes and classes must have one row per object, got {len(boxes)} boxes and {len(classes)} classes")
    keep = classes >= 0
    boxes, labels = boxes[keep], classes[keep].astype(np.int64).tolist()
    scene = {CIFAR10_CLASSES[c]: box for c, box in zip(labels, boxes)}
    centre = {name: ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2) for name, box in scene.items()}
    scene_kinds = {KIND_OF[name] for name in scene}

    tokens = _tokens(caption)
    check = CaptionCheck(present=len(scene))
    for i, name, kind in _nouns(tokens):
        if name is None:
            if kind != "object":
                check.kinds += 1
                check.wrong_kinds += kind not in scene_kinds
            continue
        if name not in check.mentioned:
            check.mentioned.append(name)
        if name not in scene:
            continue
        size = _SIZE_OF.get(tokens[i - 1]) if i > 0 else None
        if size is not None:
            check.sizes += 1
            check.wrong_sizes += size != size_word(scene[name][2] - scene[name][0])
        place = _place_at(tokens, i + 1)
        if place is not None:
            check.places += 1
            check.wrong_places += place != place_phrase(*centre[name])
    check.hallucinated = [name for name in check.mentioned if name not in scene]
    check.recalled = sum(name in scene for name in check.mentioned)
    for a, relation, b in _relations(tokens):
        if a is None or b is None or a not in scene or b not in scene:
            continue
        check.relations += 1
        holds = a != b and _relation_holds(relation, centre[a][0] - centre[b][0], centre[a][1] - centre[b][1])
        check.wrong_relations += not holds
    return check


def per_caption_hallucinations(caption: str, boxes: np.ndarray, classes: np.ndarray) -> list[str]:
    """The classes ``caption`` names (by name or synonym) that are not in the scene, each once, in order.

    ``per_caption_hallucinations("a car and a kitten", boxes, classes)`` is ``["cat"]`` for a scene with an
    automobile and a dog. ``boxes`` ``(k, 4)`` and ``classes`` ``(k,)`` may carry padding rows with class -1.
    """
    return check_caption(caption, boxes, classes).hallucinated


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / denominator if denominator else math.nan


def hallucination_report(captions: Sequence[str], scenes) -> dict[str, float]:
    """Hallucination figures of ``captions`` (one per scene, in order) against ``scenes``.

    Args:
        captions: one caption per scene.
        scenes: a :class:`~mmbook.data.scenes.SceneSet` (or anything with ``boxes`` ``(N, 4, 4)``, ``classes``
            ``(N, 4)`` padded with -1 and ``counts`` ``(N,)``).

    Returns:
        The floats of :data:`REPORT_KEYS`, defined in the module docstring; ``nan`` where a ratio has
        nothing to count (e.g. ``wrong_size`` when no caption states a size).

    Raises:
        ValueError: when the number of captions and scenes differ.
        TypeError: when ``captions`` is a single string or holds a non-string.
    """
    if isinstance(captions, str):
        raise TypeError("captions must be a sequence of caption strings (one per scene), not a single string")
    counts = np.asarray(scenes.counts).reshape(-1)
    if len(captions) != len(counts):
        raise ValueError(f"got {len(captions)} captions for {len(counts)} scenes; pass exactly one caption per "
                         "scene, in the scenes' order")
    boxes, classes = np.asarray(scenes.boxes), np.asarray(scenes.classes)
    checks = [check_caption(caption, boxes[i, : counts[i]], classes[i, : counts[i]])
              for i, caption in enumerate(captions)]

    def total(attribute: str) -> int:
        return sum(len(v) if isinstance(v := getattr(c, attribute), list) else v for c in checks)

    chair_i = _ratio(total("hallucinated"), total("mentioned"))
    return {
        "chair_i": chair_i,
        "chair_s": _ratio(sum(bool(c.hallucinated) for c in checks), len(checks)),
        "object_precision": 1.0 - chair_i,
        "object_recall": _ratio(total("recalled"), total("present")),
        "wrong_size": _ratio(total("wrong_sizes"), total("sizes")),
        "wrong_place": _ratio(total("wrong_places"), total("places")),
        "wrong_relation": _ratio(total("wrong_relations"), total("relations")),
        "mentions_per_caption": _ratio(total("mentioned"), len(checks)),
        "kind_errors": _ratio(total("wrong_kinds"), total("kinds")),
    }


def _class_id(name: str) -> int:
    if name not in CIFAR10_CLASSES:
        raise ValueError(f"unknown class {name!r}; expected one of {', '.join(CIFAR10_CLASSES)}")
    return CIFAR10_CLASSES.index(name)


def _holds(classes, name: str) -> np.ndarray:
    """``(N,)`` bool: which scenes (``classes`` ``(N, 4)``, -1 padded) hold an object of class ``name``."""
    return (np.asarray(classes) == _class_id(name)).any(axis=1)


def cooccurrence_split(classes, present: str, companion: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two training sets of equal size from one pool of scenes: one where ``present`` never comes without
    ``companion``, and a control where it does as often as chance has it.

    Rohrbach et al. (2018) trace part of captioners' hallucination to the language prior: objects that
    co-occur in the training captions get named together, also when one is absent. Here the co-occurrence is
    built in. ``biased`` drops every scene that holds ``present`` without ``companion``, so in its captions
    ``present`` is always accompanied. ``control`` keeps every scene with ``companion`` too, and fills up to
    the same size with scenes without it drawn at random: both sets then hold the same scenes with the
    companion (it is named equally often in both), and differ only in whether ``present`` ever comes alone.

    Args:
        classes: ``(N, 4)`` class ids of each scene's objects, -1 padded (``SceneSet.classes``).
        present, companion: two different CIFAR-10 class names.

    Returns:
        ``(biased, control)``: sorted int64 index arrays into the ``N`` scenes, of equal length.
    """
    if present == companion:
        raise ValueError(f"present and companion must be two different classes, got {present!r} twice")
    alone = _holds(classes, present) & ~_holds(classes, companion)
    biased = np.flatnonzero(~alone)
    if len(biased) == 0:
        raise ValueError(f"every scene holds a {present} without a {companion}; nothing is left to train on")
    with_companion = _holds(classes, companion)
    rng = np.random.default_rng(seed)
    others = rng.choice(np.flatnonzero(~with_companion), size=len(biased) - int(with_companion.sum()), replace=False)
    control = np.sort(np.concatenate([np.flatnonzero(with_companion), others]))
    return biased.astype(np.int64), control.astype(np.int64)


def mention_rate(captions: Sequence[str], name: str) -> float:
    """The share of ``captions`` that name class ``name`` (or a synonym of it); ``nan`` for no captions."""
    _class_id(name)
    if isinstance(captions, str):
        raise TypeError("captions must be a sequence of caption strings, not a single string")
    named = [any(mention.name == name for mention in parse_mentions(caption)) for caption in captions]
    return _ratio(sum(named), len(named))


def scenes_with(classes, present: str, without: str | None = None) -> np.ndarray:
    """Indices of the scenes (``classes`` ``(N, 4)``, -1 padded) that hold ``present`` and, if given, no ``without``."""
    chosen = _holds(classes, present)
    if without is not None:
        chosen &= ~_holds(classes, without)
    return np.flatnonzero(chosen).astype(np.int64)
