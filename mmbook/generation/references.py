"""Several different, true reference captions per scene, written by seven "annotators" (grammars).

Captioning metrics such as BLEU and CIDEr-D were designed for COCO, where every image has five
captions by five people who notice different things and word them differently. One caption per
image (as :func:`mmbook.data.scene_captions.describe_scenes` writes) makes them behave oddly: a
model is punished for every word it words differently from the one annotator. Here each scene
gets ``per_scene`` references from as many *different* grammars, each an imitation of one kind of
annotator:

===============  =====================================================================================
``listing``      every object left to right with its size and place
``salient``      only the biggest one or two objects, with size and place
``relation``     one or two spatial relations between objects (or "on its own" for one object)
``counting``     how many objects of each kind, then their names
``biggest``      biggest first, with synonyms for sizes and names ("a large car and a little kitten")
``short``        names only, in random order, with synonyms
``places``       right to left, names and places but no sizes
===============  =====================================================================================

For example, for a scene with a big truck in the middle (box ``(16, 20, 44, 48)``) and a small cat at
the top left (box ``(0, 0, 20, 20)``) the seven grammars write, for instance (each draw differs in its
random choices; :func:`scene_references` keeps five of the seven by default)::

    a small cat at the top left and a big truck in the middle           (listing)
    a big truck in the middle with a small cat at the top left          (salient)
    a kitten above a big truck                                          (relation)
    one animal a cat and one vehicle a truck                            (counting)
    we see a large lorry and a little cat                               (biggest)
    a truck and a kitten                                                (short)
    a truck in the middle and a cat at the top left                     (places)

Every reference is true of its scene: every object it names is in the scene, every size is
:func:`~mmbook.data.scene_captions.size_word` of the object's side, every place is
:func:`~mmbook.data.scene_captions.place_phrase` of its centre and every relation is
:func:`~mmbook.data.scene_captions.relation_phrase` (the larger offset of the centres decides).
:mod:`mmbook.generation.hallucination` checks exactly this, and a test checks that the references
score zero hallucinations. Sizes, places and relations use the words of
:mod:`mmbook.data.scene_captions`; the class names may be replaced by a synonym from
:data:`SYNONYMS` ("car" for automobile), which a captioning model has to learn to map.

References carry no punctuation, so splitting on spaces and every tokenizer of the book give the
same words, and :func:`generation_vocabulary` (fixed, independent of the data) holds all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mmbook.data.cifar10 import CIFAR10_CLASSES
from mmbook.data.scene_captions import (
    KINDS, PLACE_PHRASES, RELATIONS, SIZE_WORDS, caption_vocabulary, place_phrase, relation_phrase, size_word,
)
from mmbook.data.scenes import KIND_OF, SceneSet
from mmbook.text.vocab import Vocabulary

BOS_TOKEN, EOS_TOKEN = "<bos>", "<eos>"
BOS_ID, EOS_ID = 2, 3

# Other words for some classes; the first word of each tuple is the CIFAR-10 name itself.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "airplane": ("airplane", "plane"),
    "automobile": ("automobile", "car"),
    "cat": ("cat", "kitten"),
    "dog": ("dog", "puppy"),
    "ship": ("ship", "boat"),
    "truck": ("truck", "lorry"),
}
# Other words for the size words of :data:`~mmbook.data.scene_captions.SIZE_WORDS`; the first is the word itself.
SIZE_SYNONYMS: dict[str, tuple[str, ...]] = {"small": ("small", "little"), "medium": ("medium",), "big": ("big", "large")}
NUMBER_WORDS = ("one", "two", "three", "four")
PLURALS = {"animal": "animals", "vehicle": "vehicles", "object": "objects"}
# How the grammars write each relation of :data:`~mmbook.data.scene_captions.RELATIONS` ("is left of" ...).
RELATION_WORDS = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}
_RELATION_OF_PHRASE = {phrase: relation for relation, phrase in RELATIONS.items()}
_PREFIXES = ("there is", "we see")

Grammar = Callable[[np.ndarray, np.ndarray, np.random.Generator], str]


@dataclass
class _Objects:
    """What the grammars may say about the ``k`` objects of one scene."""

    names: list[str]      # CIFAR-10 class names
    sizes: list[str]      # size_word of each side
    places: list[str]     # place_phrase of each centre
    centres: np.ndarray   # (k, 2)
    sides: np.ndarray     # (k,)

    def __len__(self) -> int:
        return len(self.names)

    def left_to_right(self) -> list[int]:
        return np.argsort(self.centres[:, 0], kind="stable").tolist()

    def biggest_first(self) -> list[int]:
        return np.argsort(-self.sides, kind="stable").tolist()

    def relation(self, a: int, b: int) -> str:
        """``left``, ``right``, ``above`` or ``below``: where object ``a`` is relative to object ``b``."""
        return _RELATION_OF_PHRASE[relation_phrase(self.centres, a, b)]


def _objects(boxes: np.ndarray, classes: np.ndarray) -> _Objects:
    """Check one scene's ``boxes`` ``(k, 4)`` and ``classes`` ``(k,)`` (padding rows with class -1 are dropped)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    classes = np.asarray(classes)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or classes.ndim != 1 or len(classes) != len(boxes):
        raise ValueError(f"expected boxes (k, 4) and classes (k,) of one scene, got {boxes.shape} and {classes.shape}")
    keep = classes >= 0
    boxes, classes = boxes[keep], classes[keep].astype(np.int64)
    if len(classes) == 0:
        raise ValueError("a scene needs at least one object to be described; this one has none")
    if classes.max() >= len(CIFAR10_CLASSES):
        raise ValueError(f"classes must be CIFAR-10 labels 0..{len(CIFAR10_CLASSES) - 1}, got {classes.tolist()}")
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    sides = boxes[:, 2] - boxes[:, 0]
    return _Objects(names=[CIFAR10_CLASSES[c] for c in classes.tolist()], sizes=[size_word(s) for s in sides],
                    places=[place_phrase(*c) for c in centres], centres=centres, sides=sides)


def _a(phrase: str) -> str:
    """``phrase`` with its indefinite article: ``"an animal"``, ``"a cat"``."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _name(name: str, rng: np.random.Generator, synonyms: bool) -> str:
    """The class name, or half the time (when ``synonyms``) one of its synonyms."""
    words = SYNONYMS.get(name, (name,))
    if not synonyms or len(words) == 1 or rng.random() < 0.5:
        return name
    return str(words[1 + int(rng.integers(len(words) - 1))])


def _size(size: str, rng: np.random.Generator) -> str:
    """The size word or, half the time, a synonym of it."""
    words = SIZE_SYNONYMS[size]
    return size if len(words) == 1 or rng.random() < 0.5 else words[1]


def _listing(items: list[str]) -> str:
    """``"a cat"``, ``"a cat and a dog"``, ``"a cat a dog and a truck"`` (no commas)."""
    return items[0] if len(items) == 1 else " ".join(items[:-1]) + " and " + items[-1]


def listing(boxes: np.ndarray, classes: np.ndarray, rng: np.random.Generator) -> str:
    """Every object left to right with size and place: ``a small cat at the top left and a big truck in the middle``."""
    o = _objects(boxes, classes)
    return " and ".join(_a(f"{o.sizes[j]} {o.names[j]} {o.places[j]}") for j in o.left_to_right())


def salient(boxes: np.ndarray, classes: np.ndarray, rng: np.random.Generator) -> str:
    """The biggest object (and, half the time, the second biggest) with size and place:
    ``a big truck in the middle with a small cat at the top left``."""
    o = _objects(boxes, classes)
    order = o.biggest_first()
    shown = order[: 2 if len(o) >= 2 and rng.random() < 0.5 else 1]
    return " with ".join(_a(f"{o.sizes[j]} {o.names[j]} {o.places[j]}") for j in shown)


def relation(boxes: np.ndarray, classes: np.ndarray, rng: np.random.Generator) -> str:
    """A relation between two random objects, and with three or more objects half the time a second one:
    ``a kitten above a big truck and a dog to the left of the truck``; one object: ``a small cat on its own``."""
    o = _objects(boxes, classes)
    with_sizes = rng.random() < 0.5
    if len(o) == 1:
        return _a(f"{o.sizes[0]} {_name(o.names[0], rng, True)}" if with_sizes else _name(o.names[0], rng, True)) \
            + " on its own"
    a, b = (int(j) for j in rng.choice(len(o), size=2, replace=False))
    words = {j: _name(o.names[j], rng, True) for j in range(len(o))}  # one word per object in the whole caption

    def described(j: int) -> str:
        return _a(f"{o.sizes[j]} {words[j]}" if with_sizes else words[j])

    caption = f"{described(a)} {RELATION_WORDS[o.relation(a, b)]} {described(b)}"
    if len(o) >= 3 and rng.random() < 0.5:
        rest = [j for j in range(len(o)) if j not in (a, b)]
        c = int(rest[int(rng.integers(len(rest)))])
        caption += f" and {described(c)} {RELATION_WORDS[o.relation(c, b)]} the {words[b]}"
    return caption


def counting(boxes: np.ndarray, classes: np.ndarray, rng: np.random.Generator) -> str:
    """How many objects, then their names in random order: ``two animals a cat and a dog and one vehicle a truck``
    or ``three objects a dog a truck and a cat``."""
    o = _objects(boxes, classes)

    def group(kind: str, members: list[int]) -> str:
        members = [members[j] for j in rng.permutation(len(members))]
        noun = kind if len(members) == 1 else PLURALS[kind]
        return f"{NUMBER_WORDS[len(members) - 1]} {noun} " + _listing([_a(o.names[j]) for j in members])

    if rng.random() < 0.3:
        return group("object", list(range(len(o))))
    groups = [group(kind, [j for j in range(len(o)) if KIND_OF[o.names[j]] == kind]) for kind in KINDS
              if any(KIND_OF[name] == kind for name in o.names)]
    if len(groups) == 2 and rng.random() < 0.5:
        groups.reverse()
    return " and ".join(groups)


def biggest(boxes: np.ndarray, classes: np.ndarray, rng: np.random.Generator) -> str:
    """Biggest first, sizes and names often by a synonym: ``there is a large car and a little kitten``."""
    o = _objects(boxes, classes)
    prefix = _PREFIXES[int(rng.integers(len(_PREFIXES)))]
    return prefix + " " + " and ".join(_a(f"{_size(o.sizes[j], rng)} {_name(o.names[j], rng, True)}")
                                       for j in o.biggest_first())


def short(boxes: np.ndarray, classes: np.ndarray, rng: np.random.Generator) -> str:
    """Names only, in random order, often by a synonym: ``a truck and a kitten``."""
    o = _objects(boxes, classes)
    return " and ".join(_a(_name(o.names[j], rng, True)) for j in rng.permutation(len(o)).tolist())


def places(boxes: np.ndarray, classes: np.ndarray, rng: np.random.Generator) -> str:
    """Right to left, names and places, no sizes: ``a truck in the middle and a cat at the top left``."""
    o = _objects(boxes, classes)
    return " and ".join(_a(f"{o.names[j]} {o.places[j]}") for j in reversed(o.left_to_right()))


GRAMMARS: tuple[tuple[str, Grammar], ...] = (
    ("listing", listing), ("salient", salient), ("relation", relation), ("counting", counting),
    ("biggest", biggest), ("short", short), ("places", places),
)


def bos_eos_tokens(word_ids: Sequence[Sequence[int]]) -> torch.Tensor:
    """``<bos> ids <eos>`` rows ``(N, T)`` int64 of ``N`` lists of word ids, right-padded with 0."""
    rows = [[BOS_ID, *ids, EOS_ID] for ids in word_ids]
    tokens = torch.zeros(len(rows), max(len(row) for row in rows), dtype=torch.long)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = torch.tensor(row)
    return tokens


def generation_vocabulary() -> Vocabulary:
    """The fixed vocabulary of captioning: ``<pad>`` 0, ``<unk>`` 1, ``<bos>`` 2, ``<eos>`` 3, then every word
    of the :func:`~mmbook.data.scene_captions.caption_vocabulary` and every word the grammars can write.

    It does not depend on any data, so a model's token ids mean the same words in every run.
    """
    words = [BOS_TOKEN, EOS_TOKEN] + caption_vocabulary().itos[2:]
    words += ["an", "with", "on", "its", "own", "to", *_PREFIXES, *NUMBER_WORDS, *PLURALS, *PLURALS.values()]
    words += [w for synonyms in SYNONYMS.values() for w in synonyms]
    words += [w for size in SIZE_WORDS for w in SIZE_SYNONYMS[size]]
    words += [w for phrase in PLACE_PHRASES + tuple(RELATION_WORDS.values()) for w in phrase.split()]
    vocab = Vocabulary(list(dict.fromkeys(w for phrase in words for w in phrase.split(" "))))
    assert vocab.stoi[BOS_TOKEN] == BOS_ID and vocab.stoi[EOS_TOKEN] == EOS_ID, "BOS/EOS ids moved"
    return vocab


def named_references(boxes: np.ndarray, classes: np.ndarray, rng: np.random.Generator,
                     count: int = 5) -> list[tuple[str, str]]:
    """``count`` references of one scene as ``(grammar name, caption)`` pairs, from ``count`` different grammars.

    The grammars are tried in a random order; a caption equal to one already written is drawn again (up to
    three times) and otherwise the grammar is skipped for the next one, so the references differ whenever the
    grammars can make them differ. Only if too few distinct captions exist are repeats kept.
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 1 <= count <= len(GRAMMARS):
        raise ValueError(f"count must be an int from 1 to {len(GRAMMARS)} (the number of grammars), got {count!r}")
    _objects(boxes, classes)  # raises ValueError for a scene without objects
    chosen: list[tuple[str, str]] = []
    repeats: list[tuple[str, str]] = []
    for g in rng.permutation(len(GRAMMARS)).tolist():
        if len(chosen) == count:
            break
        name, write = GRAMMARS[g]
        for _ in range(3):
            caption = write(boxes, classes, rng)
            if all(caption != written for _, written in chosen):
                chosen.append((name, caption))
                break
        else:
            repeats.append((name, caption))
    return chosen + repeats[: count - len(chosen)]


def reference_captions(boxes: np.ndarray, classes: np.ndarray, rng: np.random.Generator, count: int = 5) -> list[str]:
    """``count`` different reference captions of one scene, each from a different grammar (see :func:`named_references`).

    Args:
        boxes: ``(k, 4)`` ``(x1, y1, x2, y2)`` of the scene's objects (rows with class -1 are ignored).
        classes: ``(k,)`` their CIFAR-10 labels.
        rng: the random generator: which grammars, and each grammar's choices.
        count: how many references, 1 to ``len(GRAMMARS)``.

    Raises:
        ValueError: for a bad ``count`` or a scene without objects.
    """
    return [caption for _, caption in named_references(boxes, classes, rng, count)]


def scene_references(scenes: SceneSet, per_scene: int = 5, seed: int = 0) -> list[list[str]]:
    """``per_scene`` references for every scene of ``scenes`` (a list per scene); deterministic given ``seed``."""
    if isinstance(per_scene, bool) or not isinstance(per_scene, (int, np.integer)) or not 1 <= per_scene <= len(GRAMMARS):
        raise ValueError(f"per_scene must be an int from 1 to {len(GRAMMARS)} (the number of grammars), got {per_scene!r}")
    rng = np.random.default_rng(seed)
    boxes, classes, counts = np.asarray(scenes.boxes), np.asarray(scenes.classes), np.asarray(scenes.counts)
    return [reference_captions(boxes[i, : counts[i]], classes[i, : counts[i]], rng, per_scene)
            for i in range(len(counts))]
