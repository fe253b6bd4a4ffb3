"""Synthetic multimodal scenes: CIFAR-10 objects pasted on a canvas, with boxes, a referring expression and a tagged caption.

A scene is a 64x64 canvas holding 1 to 4 real CIFAR-10 images, each resized to a
random side of 18..30 pixels and pasted at a random position so that no two overlap.
The objects of one scene have distinct classes. Every scene comes with:

- ``boxes`` ``(4, 4)`` float ``(x1, y1, x2, y2)`` in pixels (x2, y2 exclusive) and ``classes``
  ``(4,)`` CIFAR-10 labels, padded with ``-1`` beyond ``count`` objects;
- a referring expression that names one object, the ``target``, by its class
  ("the cat"), its kind ("the vehicle"), a spatial relation to another object
  ("the dog left of the truck") or its place in the scene ("the leftmost object",
  "the biggest object"). Every expression picks out exactly one object;
- a caption that mentions two classes, with one BIO role tag per word::

      in  this  scene  a  small  cat    beside  the  truck
      B-LOC I-LOC I-LOC O B-LEFT I-LEFT B-REL   O    B-ABSENT

  ``REL`` (the relation words) and ``LOC`` (the location phrase) can be read off the
  text. The type of a mentioned object cannot: it is ``LEFT`` if the object is in the
  left half of the canvas (centre x < 32), ``RIGHT`` if it is in the right half, and
  ``ABSENT`` if no object of that class is in the scene. The size word ("small",
  "big") is true for objects in the scene and drawn from the same distribution for
  absent ones, so it does not give the answer away either.

Scenes are deterministic: the same ``(split, count, seed, quick)`` gives the same scenes.
Train scenes use CIFAR-10 training images and test scenes test images, so test
objects are never seen in training.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from mmbook.data.cache import cached
from mmbook.data.cifar10 import CIFAR10_CLASSES, cache_dir, load_cifar10
from mmbook.text.vocab import Vocabulary

CANVAS = 64
MAX_OBJECTS = 4
MIN_SIZE, MAX_SIZE = 18, 30
SMALL_MAX, BIG_MIN = 22, 27  # size words: side <= 22 is "small", side >= 27 is "big"
ANIMALS = ("bird", "cat", "deer", "dog", "frog", "horse")
KIND_OF = {name: ("animal" if name in ANIMALS else "vehicle") for name in CIFAR10_CLASSES}
RELATION_WORDS = {"left": "left of", "right": "right of", "above": "above", "below": "below"}
CAPTION_RELATIONS = ("and", "beside", "next to", "together with", "as well as", "near")
LOCATION_PHRASES = ("in the picture", "in this scene", "on the canvas", "here")
TAG_TYPES = ("LEFT", "RIGHT", "ABSENT", "REL", "LOC")
IMAGE_TAG_TYPES = ("LEFT", "RIGHT", "ABSENT")
TAGS: tuple[str, ...] = ("O",) + tuple(f"{p}-{t}" for t in TAG_TYPES for p in ("B", "I"))
TAG_PAD = -100  # padding in tag tensors: ignored by cross_entropy
_CACHE_FORMAT = 2  # bump whenever the generator's output changes, so old caches are rebuilt


def scene_vocabulary() -> Vocabulary:
    """The fixed vocabulary of all referring expressions and captions (independent of the data)."""
    words: list[str] = ["the", "a", "of", "object", "animal", "vehicle", "small", "big", "leftmost", "rightmost",
                        "top", "bottom", "biggest", "smallest", "left", "right", "above", "below"]
    words += list(CIFAR10_CLASSES) + [w for phrase in CAPTION_RELATIONS + LOCATION_PHRASES for w in phrase.split()]
    return Vocabulary(list(dict.fromkeys(words)))


# The fields of a SceneSet that the cache stores (all but the vocabulary, which is rebuilt).
SCENE_FIELDS = ("images", "boxes", "classes", "counts", "target", "expressions", "expression_tokens", "captions",
                "caption_tokens", "caption_tags")


@dataclass
class SceneSet:
    """Scenes and their annotations, all as tensors (plus the raw strings).

    Attributes:
        images: uint8 ``(N, 3, 64, 64)``.
        boxes: float ``(N, 4, 4)`` ``(x1, y1, x2, y2)`` in pixels; rows beyond ``counts`` are 0.
        classes: int64 ``(N, 4)`` CIFAR-10 labels, ``-1`` beyond ``counts``.
        counts: int64 ``(N,)`` number of objects, 1..4.
        target: int64 ``(N,)`` index (into ``boxes``) of the object the referring expression names.
        expressions: ``N`` referring expressions; ``expression_tokens`` int64 ``(N, Te)`` right-padded ids.
        captions: ``N`` captions; ``caption_tokens`` int64 ``(N, Tc)``; ``caption_tags`` int64 ``(N, Tc)``
            tag ids into :data:`TAGS`, padded with :data:`TAG_PAD`.
        vocab: the :func:`scene_vocabulary`.
    """

    images: torch.Tensor
    boxes: torch.Tensor
    classes: torch.Tensor
    counts: torch.Tensor
    target: torch.Tensor
    expressions: list[str]
    expression_tokens: torch.Tensor
    captions: list[str]
    caption_tokens: torch.Tensor
    caption_tags: torch.Tensor
    vocab: Vocabulary

    def __len__(self) -> int:
        return int(self.counts.shape[0])

    def subset(self, index: torch.Tensor) -> "SceneSet":
        """The scenes at ``index`` (a long or bool tensor), as a new :class:`SceneSet`."""
        if index.dtype == torch.bool:
            index = torch.nonzero(index).flatten()
        fields = {name: getattr(self, name) for name in SCENE_FIELDS}
        return SceneSet(vocab=self.vocab, **{name: [value[i] for i in index.tolist()] if isinstance(value, list)
                                             else value[index] for name, value in fields.items()})

    def tensors(self) -> dict[str, torch.Tensor]:
        """The batch-dict form for :class:`mmbook.data.DeviceLoader`.

        Keys: ``image`` uint8 ``(N, 3, 64, 64)``, ``boxes`` ``(N, 4, 4)``, ``classes`` ``(N, 4)``,
        ``target_box`` ``(N, 4)``, ``expression`` ``(N, Te)``, ``text`` (the caption) ``(N, Tc)``,
        ``tags`` ``(N, Tc)`` and ``label`` (the target's class) ``(N,)``.
        """
        rows = torch.arange(len(self))
        return {
            "image": self.images, "boxes": self.boxes, "classes": self.classes,
            "target_box": self.boxes[rows, self.target], "expression": self.expression_tokens,
            "text": self.caption_tokens, "tags": self.caption_tags, "label": self.classes[rows, self.target],
        }


def make_scenes(
    num_scenes: int,
    source_images: torch.Tensor,
    source_labels: torch.Tensor,
    seed: int = 0,
    min_objects: int = 1,
) -> SceneSet:
    """Generate ``num_scenes`` scenes from the given CIFAR-10 images (no caching; see :func:`load_scenes`).

    Args:
        num_scenes: how many scenes.
        source_images: uint8 ``(M, 3, 32, 32)`` images to paste.
        source_labels: int64 ``(M,)`` their labels (0..9); every class must occur.
        seed: the seed; the same arguments always give the same scenes.
        min_objects: the fewest objects per scene (1..4). The number asked for is uniform in
            ``min_objects..4``; when the last object finds no room, the scene keeps one fewer (never
            fewer than ``min_objects``), so 4-object scenes are a little rarer than the others.
    """
    if not isinstance(num_scenes, int) or num_scenes <= 0:
        raise ValueError(f"num_scenes must be a positive int, got {num_scenes!r}")
    if not 1 <= min_objects <= MAX_OBJECTS:
        raise ValueError(f"min_objects must be in 1..{MAX_OBJECTS}, got {min_objects}")
    if source_images.dtype != torch.uint8 or source_images.ndim != 4 or tuple(source_images.shape[1:]) != (3, 32, 32):
        raise ValueError(f"source_images must be uint8 (M, 3, 32, 32), got {source_images.dtype} {tuple(source_images.shape)}")
    num_classes = len(CIFAR10_CLASSES)
    by_class = [np.flatnonzero(source_labels.numpy() == k) for k in range(num_classes)]
    missing = [CIFAR10_CLASSES[k] for k, idx in enumerate(by_class) if len(idx) == 0]
    if missing:
        raise ValueError(f"source_labels lack classes {missing}; every CIFAR-10 class needs at least one image")
    rng = np.random.default_rng(seed)

    boxes = np.zeros((num_scenes, MAX_OBJECTS, 4), dtype=np.float32)
    classes = np.full((num_scenes, MAX_OBJECTS), -1, dtype=np.int64)
    counts = np.zeros(num_scenes, dtype=np.int64)
    sources = np.zeros((num_scenes, MAX_OBJECTS), dtype=np.int64)
    targets = np.zeros(num_scenes, dtype=np.int64)
    expressions: list[str] = []
    captions: list[list[tuple[str, str]]] = []

    for i in range(num_scenes):
        wanted = int(rng.integers(min_objects, MAX_OBJECTS + 1))
        placed = _place_boxes(rng, wanted)
        while len(placed) < min_objects:  # a big first object can leave no room: lay the scene out again
            placed = _place_boxes(rng, wanted)
        counts[i] = k = len(placed)
        scene_classes = rng.choice(num_classes, size=k, replace=False)
        for j, (x, y, s) in enumerate(placed):
            boxes[i, j] = (x, y, x + s, y + s)
            classes[i, j] = scene_classes[j]
            pool = by_class[scene_classes[j]]
            sources[i, j] = pool[rng.integers(len(pool))]
        targets[i] = target = int(rng.integers(k))
        expressions.append(_referring_expression(rng, boxes[i, :k], classes[i, :k], target))
        captions.append(_tagged_caption(rng, boxes[i, :k], classes[i, :k]))

    images = _paint(rng, source_images, boxes, counts, sources)
    vocab = scene_vocabulary()
    expression_tokens, _ = vocab.encode_batch(expressions)
    caption_texts = [" ".join(w for w, _ in caption) for caption in captions]
    caption_tokens, _ = vocab.encode_batch(caption_texts)
    caption_tags = torch.full(caption_tokens.shape, TAG_PAD, dtype=torch.int64)
    for i, caption in enumerate(captions):
        caption_tags[i, : len(caption)] = torch.tensor([TAGS.index(t) for _, t in caption])
    return SceneSet(images, torch.from_numpy(boxes), torch.from_numpy(classes), torch.from_numpy(counts),
                    torch.from_numpy(targets), expressions, expression_tokens, caption_texts, caption_tokens,
                    caption_tags, vocab)


def _place_boxes(rng: np.random.Generator, wanted: int) -> list[tuple[int, int, int]]:
    """Up to ``wanted`` non-overlapping squares ``(x, y, side)``; up to 8 tries of 32 candidates per square."""
    placed: list[tuple[int, int, int]] = []
    for _ in range(wanted):
        for _ in range(8):
            side = rng.integers(MIN_SIZE, MAX_SIZE + 1, size=32)
            x = (rng.random(32) * (CANVAS - side + 1)).astype(np.int64)
            y = (rng.random(32) * (CANVAS - side + 1)).astype(np.int64)
            ok = np.ones(32, dtype=bool)
            for px, py, ps in placed:  # no overlap: separated along x or along y
                ok &= (x + side <= px) | (px + ps <= x) | (y + side <= py) | (py + ps <= y)
            if ok.any():
                n = int(np.argmax(ok))
                placed.append((int(x[n]), int(y[n]), int(side[n])))
                break
    return placed


def _size_word(side: float, rng: np.random.Generator) -> str:
    """Half the time, "small" or "big" for a side that is clearly one of them; otherwise no word."""
    word = "small" if side <= SMALL_MAX else "big" if side >= BIG_MIN else ""
    return word if word and rng.random() < 0.5 else ""


def _referring_expression(rng: np.random.Generator, boxes: np.ndarray, classes: np.ndarray, target: int) -> str:
    """An expression that names object ``target`` and no other object of the scene."""
    k = len(classes)
    names = [CIFAR10_CLASSES[c] for c in classes]
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    sides = boxes[:, 2] - boxes[:, 0]
    kinds = [KIND_OF[n] for n in names]
    options: list[str] = [f"the {names[target]}"]
    if kinds.count(kinds[target]) == 1:
        options.append(f"the {kinds[target]}")
    if k >= 2:
        rest = [j for j in range(k) if j != target]
        other = int(rng.choice(rest))
        dx, dy = centres[target] - centres[other]
        relation = ("left" if dx < 0 else "right") if abs(dx) >= abs(dy) else ("above" if dy < 0 else "below")
        subject = names[target] if kinds.count(kinds[target]) > 1 or rng.random() < 0.5 else kinds[target]
        options.append(f"the {subject} {RELATION_WORDS[relation]} the {names[other]}")
        for word, values, sign in (("leftmost", centres[:, 0], -1), ("rightmost", centres[:, 0], 1),
                                   ("top", centres[:, 1], -1), ("bottom", centres[:, 1], 1),
                                   ("biggest", sides, 1), ("smallest", sides, -1)):
            if all(sign * (values[target] - values[j]) >= 4.0 for j in rest):  # a margin of 4 pixels
                options.append(f"the {word} object")
    return str(options[int(rng.integers(len(options)))])


def _tagged_caption(rng: np.random.Generator, boxes: np.ndarray, classes: np.ndarray) -> list[tuple[str, str]]:
    """A caption mentioning two classes, as ``(word, BIO tag)`` pairs."""
    k = len(classes)
    absent = [c for c in range(len(CIFAR10_CLASSES)) if c not in set(classes.tolist())]
    if k >= 2 and rng.random() < 0.6:  # both mentioned classes are present
        mentions = [(int(classes[j]), boxes[j]) for j in rng.choice(k, size=2, replace=False)]
    else:
        j = int(rng.integers(k))
        mentions = [(int(classes[j]), boxes[j]), (int(rng.choice(absent)), None)]
        if rng.random() < 0.5:
            mentions.reverse()

    def tagged(span: list[str], kind: str) -> list[tuple[str, str]]:
        return [(w, ("B-" if n == 0 else "I-") + kind) for n, w in enumerate(span)]

    words: list[tuple[str, str]] = []
    location = tagged(LOCATION_PHRASES[int(rng.integers(len(LOCATION_PHRASES)))].split(), "LOC")
    location_first = rng.random() < 0.5
    if location_first:
        words += location
    for m, (label, box) in enumerate(mentions):
        if m == 1:
            words += tagged(CAPTION_RELATIONS[int(rng.integers(len(CAPTION_RELATIONS)))].split(), "REL")
        words.append(("a" if rng.random() < 0.5 else "the", "O"))
        if box is None:
            kind = "ABSENT"
            side = float(rng.integers(MIN_SIZE, MAX_SIZE + 1))  # a made-up size: same distribution
        else:
            kind = "LEFT" if (box[0] + box[2]) / 2 < CANVAS / 2 else "RIGHT"
            side = float(box[2] - box[0])
        words += tagged([w for w in (_size_word(side, rng), CIFAR10_CLASSES[label]) if w], kind)
    if not location_first:
        words += location
    return words


def noisy_background(n: int, side: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` plain canvases ``(n, 3, side, side)`` uint8: one random colour each, with grey noise on top."""
    background = torch.randint(40, 200, (n, 3, 1, 1), generator=generator, dtype=torch.int16)
    noise = torch.randint(-12, 13, (n, 1, side, side), generator=generator, dtype=torch.int16)
    return (background + noise).clamp(0, 255).to(torch.uint8)


def _paint(rng: np.random.Generator, source_images: torch.Tensor, boxes: np.ndarray, counts: np.ndarray,
           sources: np.ndarray) -> torch.Tensor:
    """Canvases ``(N, 3, 64, 64)`` uint8: a plain noisy background, then each object resized and pasted."""
    n = len(counts)
    generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
    canvas = noisy_background(n, CANVAS, generator)
    sides = (boxes[:, :, 2] - boxes[:, :, 0]).astype(np.int64)
    valid = np.arange(MAX_OBJECTS)[None, :] < counts[:, None]
    for side in np.unique(sides[valid]):
        scene_idx, slot_idx = np.nonzero(valid & (sides == side))
        # One batched resize per object size (antialiased when shrinking).
        resized = F.interpolate(source_images[torch.from_numpy(sources[scene_idx, slot_idx])].float(),
                                size=(int(side), int(side)), mode="bilinear", antialias=True, align_corners=False)
        resized = resized.round().clamp(0, 255).to(torch.uint8)
        for r, (i, j) in enumerate(zip(scene_idx.tolist(), slot_idx.tolist())):
            x, y = int(boxes[i, j, 0]), int(boxes[i, j, 1])
            canvas[i, :, y : y + side, x : x + side] = resized[r]
    return canvas


def load_scenes(
    split: str,
    num_scenes: int,
    *,
    seed: int = 0,
    quick: bool = False,
    min_objects: int = 1,
    root: Path | str | None = None,
    download: bool = False,
    progress: bool = False,
) -> SceneSet:
    """Scenes built from CIFAR-10 ``split`` images, cached in :func:`mmbook.data.cache_dir`.

    Args:
        split: ``"train"`` or ``"test"``: which CIFAR-10 images are pasted.
        num_scenes: how many scenes.
        seed: the scene seed (the test split adds 1 to it, so test layouts differ from train layouts).
        quick: paste only from the quick-mode CIFAR-10 subset.
        min_objects: fewest objects per scene.
        root, download, progress: as in :func:`mmbook.data.load_cifar10`.
    """
    source = load_cifar10(split, quick=quick, root=root, download=download, progress=progress)
    scene_seed = seed + (1 if split == "test" else 0)
    key = hashlib.sha256(f"{_CACHE_FORMAT}:{split}:{num_scenes}:{scene_seed}:{quick}:{min_objects}:{len(source)}".encode()).hexdigest()[:16]
    path = cache_dir() / f"scenes-{split}-{num_scenes}-{key}.pt"

    def build() -> dict[str, torch.Tensor | list]:
        scenes = make_scenes(num_scenes, source.images, source.labels, seed=scene_seed, min_objects=min_objects)
        return {name: getattr(scenes, name) for name in SCENE_FIELDS}

    return SceneSet(vocab=scene_vocabulary(), **cached(path, key, build))
