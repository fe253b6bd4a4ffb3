"""Captions that describe *their own* scene: every object with its size and place, and one relation.

The scenes of :mod:`mmbook.data.scenes` come with a caption that mentions two classes, one of
them possibly absent: good for tagging, useless for retrieval, where a caption has to single
out its image among a thousand others. :func:`describe_scenes` writes one caption per scene
that lists every object, left to right, as ``size name place``, and adds one spatial relation
between two of them::

    a small cat at the top left and a big truck in the middle where the cat is left of the truck

- **size**: ``small`` (side <= 22 pixels), ``medium`` or ``big`` (side >= 27), from the object's box;
- **name**: the CIFAR-10 class, or with probability ``kind_probability`` only its kind
  (``animal`` or ``vehicle``), so that the kind words are learned for every class;
- **place**: the cell of a 3x3 grid that holds the object's centre (``top left`` ... ``bottom right``,
  ``middle`` for the centre cell);
- **relation** (scenes with two or more objects): ``left of``, ``right of``, ``above`` or ``below``,
  from the larger offset between two random objects' centres.

Everything is deterministic given ``seed``. :func:`caption_vocabulary` is fixed, independent of the
data, so a model and its prompts always agree on token ids.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch

from mmbook.data.cifar10 import CIFAR10_CLASSES
from mmbook.data.scenes import BIG_MIN, CANVAS, KIND_OF, SMALL_MAX, SceneSet
from mmbook.text.vocab import Vocabulary

SIZE_WORDS = ("small", "medium", "big")
KINDS = ("animal", "vehicle")
# Rows (top to bottom) x columns (left to right) of the 3x3 grid of places.
PLACES = (("at the top left", "at the top", "at the top right"),
          ("on the left", "in the middle", "on the right"),
          ("at the bottom left", "at the bottom", "at the bottom right"))
RELATIONS = {"left": "is left of", "right": "is right of", "above": "is above", "below": "is below"}
PLACE_PHRASES = tuple(phrase for row in PLACES for phrase in row)
# Prompt templates for zero-shot classification; ``{}`` is replaced by a class name. They read like
# the caption of a one-object scene, one template per size and place (27 in all), so that their
# average keeps the class and averages size and place out. Every word of them is in the caption
# vocabulary (a word outside it would read as "<unk>").
PROMPT_TEMPLATES = tuple(f"a {size} {{}} {place}" for size in SIZE_WORDS for place in PLACE_PHRASES)


def caption_vocabulary() -> Vocabulary:
    """The fixed vocabulary of :func:`describe_scenes` captions and the prompt templates."""
    words = ["a", "the", "and", "where", "is", "of", *SIZE_WORDS, *KINDS, *CIFAR10_CLASSES]
    for phrase in PLACE_PHRASES + tuple(RELATIONS.values()):
        words += phrase.split()
    return Vocabulary(list(dict.fromkeys(words)))


def size_word(side: float) -> str:
    """``small``, ``medium`` or ``big`` for an object of side ``side`` pixels."""
    return "small" if side <= SMALL_MAX else ("big" if side >= BIG_MIN else "medium")


def place_phrase(centre_x: float, centre_y: float) -> str:
    """The 3x3-grid place of a centre on the 64x64 canvas, e.g. ``"at the top left"``."""
    column = min(2, int(3 * centre_x / CANVAS))
    row = min(2, int(3 * centre_y / CANVAS))
    return PLACES[row][column]


def relation_phrase(centres: np.ndarray, a: int, b: int) -> str:
    """How object ``a`` lies relative to object ``b``, from the larger offset of their centres ``(k, 2)``: e.g. ``"is left of"``."""
    dx, dy = centres[a] - centres[b]
    return RELATIONS[("left" if dx < 0 else "right") if abs(dx) >= abs(dy) else ("above" if dy < 0 else "below")]


def _compose(boxes: np.ndarray, names: Sequence[str], with_layout: bool, pair: tuple[int, int] | None, *,
             sizes: Sequence[str] | None = None, places: Sequence[str] | None = None,
             reverse_relation: bool = False) -> str:
    """The caption of objects ``names`` at ``boxes`` ``(k, 4)``, left to right, with the relation of ``pair``.

    ``sizes`` and ``places`` replace the words the boxes give (one per object), and ``reverse_relation``
    swaps the two objects of the relation, keeping its word: the hard negatives of :mod:`mmbook.data.scene_negatives`.
    """
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    sides = boxes[:, 2] - boxes[:, 0]
    sizes = [size_word(side) for side in sides] if sizes is None else sizes
    places = [place_phrase(*centre) for centre in centres] if places is None else places
    order = np.argsort(centres[:, 0], kind="stable")
    if with_layout:
        parts = [f"a {sizes[j]} {names[j]} {places[j]}" for j in order]
    else:
        parts = [f"a {names[j]}" for j in order]
    caption = " and ".join(parts)
    if pair is not None:
        a, b = pair
        first, second = (b, a) if reverse_relation else (a, b)
        caption += f" where the {names[first]} {relation_phrase(centres, a, b)} the {names[second]}"
    return caption


def caption_choices(classes: np.ndarray, rng: np.random.Generator, kind_probability: float = 0.2,
                    layout_dropout: float = 0.0) -> tuple[list[str], bool, tuple[int, int] | None]:
    """The random choices behind one caption: each object's word (class or kind), whether sizes and places are
    given, and the ordered pair of objects of the relation (``None`` for one object)."""
    k = len(classes)
    if k == 0:
        raise ValueError("a scene needs at least one object to be described")
    names = [KIND_OF[CIFAR10_CLASSES[c]] if rng.random() < kind_probability else CIFAR10_CLASSES[c]
             for c in classes.tolist()]
    with_layout = not rng.random() < layout_dropout
    pair = tuple(int(j) for j in rng.choice(k, size=2, replace=False)) if k >= 2 else None
    return names, with_layout, pair


def describe_scene(boxes: np.ndarray, classes: np.ndarray, rng: np.random.Generator,
                   kind_probability: float = 0.2, layout_dropout: float = 0.0) -> str:
    """One caption for one scene.

    Args:
        boxes: ``(k, 4)`` ``(x1, y1, x2, y2)`` of the scene's ``k`` objects.
        classes: ``(k,)`` their CIFAR-10 labels.
        rng: the random generator (names by kind, which relation).
        kind_probability: chance that an object is named by its kind instead of its class.
        layout_dropout: chance that the caption leaves out every size and place ("a cat and a truck
            where the cat is left of the truck"); the relation stays.
    """
    return _compose(boxes, *caption_choices(classes, rng, kind_probability, layout_dropout))


def true_captions(boxes: np.ndarray, classes: np.ndarray) -> set[str]:
    """Every caption :func:`describe_scene` can write for one scene: each object named by its class or its
    kind, with or without sizes and places, and every ordered pair of objects for the relation.

    A caption in this set is a true description of the scene, word for word as the generator writes it;
    :func:`caption_relevance_to_scenes` uses it to mark every correct answer of a retrieval query.
    """
    k = len(classes)
    if k == 0:
        raise ValueError("a scene needs at least one object to be described")
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    sizes = [size_word(side) for side in boxes[:, 2] - boxes[:, 0]]
    places = [place_phrase(*centre) for centre in centres]
    order = np.argsort(centres[:, 0], kind="stable").tolist()
    relations = {(a, b): relation_phrase(centres, a, b) for a in range(k) for b in range(k) if a != b}
    choices = [(CIFAR10_CLASSES[c], KIND_OF[CIFAR10_CLASSES[c]]) for c in classes.tolist()]
    found = set()
    for names in itertools.product(*choices):
        for with_layout in (True, False):
            listing = " and ".join(f"a {sizes[j]} {names[j]} {places[j]}" if with_layout else f"a {names[j]}"
                                   for j in order)
            if k == 1:
                found.add(listing)
            for (a, b), relation in relations.items():
                found.add(f"{listing} where the {names[a]} {relation} the {names[b]}")
    return found


def caption_relevance_to_scenes(captions: Sequence[str], scenes: SceneSet) -> torch.Tensor:
    """``(len(captions), len(scenes))`` bool: True where caption ``t`` is a true description of scene ``i``.

    A caption is correct for every scene it describes truly, not only for the scene it was written for:
    "a small animal on the left" is a correct answer for a scene whose caption reads "a small dog on the
    left", and a caption with one relation is true of every scene with the same objects, sizes, places
    and that relation. Every caption must be true of at least one scene (its own), else a ``ValueError``.
    """
    where: dict[str, list[int]] = {}
    boxes, classes, counts = scenes.boxes.numpy(), scenes.classes.numpy(), scenes.counts.numpy()
    for i in range(len(scenes)):
        for caption in true_captions(boxes[i, : counts[i]], classes[i, : counts[i]]):
            where.setdefault(caption, []).append(i)
    relevant = torch.zeros(len(captions), len(scenes), dtype=torch.bool)
    for t, caption in enumerate(captions):
        found = where.get(caption)
        if not found:
            raise ValueError(f"caption {t} ({caption!r}) describes none of the {len(scenes)} scenes; pass the scenes "
                             f"the captions were written for")
        relevant[t, found] = True
    return relevant


def describe_scenes(scenes: SceneSet, seed: int = 0, kind_probability: float = 0.2,
                    layout_dropout: float = 0.0) -> list[str]:
    """One caption per scene of ``scenes`` (see the module docstring). Deterministic given ``seed``.

    ``layout_dropout`` > 0 is for training captions: a caption without sizes and places can only be
    matched by the classes it names, so the model cannot get by on layout alone.
    """
    for name, value in (("kind_probability", kind_probability), ("layout_dropout", layout_dropout)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {value}")
    rng = np.random.default_rng(seed)
    boxes, classes, counts = scenes.boxes.numpy(), scenes.classes.numpy(), scenes.counts.numpy()
    return [describe_scene(boxes[i, : counts[i]], classes[i, : counts[i]], rng, kind_probability, layout_dropout)
            for i in range(len(scenes))]


def encode_captions(captions: Sequence[str], vocab: Vocabulary | None = None) -> torch.Tensor:
    """Token ids ``(N, T)`` int64, right-padded with 0, in the :func:`caption_vocabulary`."""
    vocab = vocab or caption_vocabulary()
    unknown = sorted({w for c in captions for w in c.split() if w not in vocab})
    if unknown:
        raise ValueError(f"captions hold words outside the caption vocabulary: {unknown[:5]}; "
                         f"write prompts with words of caption_vocabulary() only")
    tokens, _ = vocab.encode_batch(list(captions))
    return tokens


def shared_captions(captions: Sequence[str]) -> dict[str, int]:
    """How often captions repeat: ``unique`` captions, ``shared`` (captions used by more than one scene),
    ``scenes_with_shared_caption`` and ``largest_group`` (the most scenes sharing one caption)."""
    counts = Counter(captions)
    repeated = [n for n in counts.values() if n > 1]
    return {"scenes": len(captions), "unique": len(counts), "shared": len(repeated),
            "scenes_with_shared_caption": int(sum(repeated)), "largest_group": max(counts.values(), default=0)}
