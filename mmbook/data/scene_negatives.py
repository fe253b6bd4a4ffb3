"""Hard negatives for scene captions: the same words, composed wrongly.

A contrastive model can match a caption to its scene by the *bag* of words it contains ("cat",
"truck", "left") without reading how they are put together. ARO (Yuksekgonul et al. 2023) and
Winoground (Thrush et al. 2022) test this with captions whose words are swapped. The scene
generator knows every object's class, size and place and every relation, so here a swapped caption
is built from the facts and checked to be false, never guessed:

- ``class``: two objects of the list trade names ("a small cat on the left and a big truck on the right" ->
  "a small truck on the left and a big cat on the right"; the relation clause stays);
- ``size``: two objects trade sizes;
- ``place``: two objects trade places;
- ``relation``: the two objects of the relation trade roles ("where the cat is left of the truck" ->
  "where the truck is left of the cat").

:func:`swap_benchmark` gives, for every test scene where a swap is possible, its true caption and the
swapped one; a model passes an item when it scores the image closer to the true caption, so chance is
0.5. :func:`hard_negative_captions` gives one false caption per training caption, made from that
caption's own choices, for NegCLIP-style training (:func:`mmbook.alignment.negclip_loss`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmbook.data.cifar10 import CIFAR10_CLASSES
from mmbook.data.scene_captions import (
    _compose,
    caption_choices,
    place_phrase,
    size_word,
    true_captions,
)
from mmbook.data.scenes import SceneSet

SWAPS = ("class", "size", "place", "relation")


def swapped_caption(boxes: np.ndarray, names: Sequence[str], with_layout: bool, pair: tuple[int, int] | None,
                    swap: str, rng: np.random.Generator) -> str | None:
    """The caption of these choices (see :func:`~mmbook.data.scene_captions.caption_choices`) with one swap,
    or ``None`` where the swap cannot change the caption (one object, equal words, no sizes and places)."""
    if swap not in SWAPS:
        raise ValueError(f"swap must be one of {SWAPS}, got {swap!r}")
    k = len(names)
    if k < 2:
        return None
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    sizes = [size_word(side) for side in boxes[:, 2] - boxes[:, 0]]
    places = [place_phrase(*centre) for centre in centres]
    if swap == "relation":
        if pair is None or names[pair[0]] == names[pair[1]]:
            return None
        return _compose(boxes, names, with_layout, pair, reverse_relation=True)
    words = {"class": list(names), "size": sizes, "place": places}[swap]
    if swap != "class" and not with_layout:
        return None
    candidates = [(a, b) for a in range(k) for b in range(a + 1, k) if words[a] != words[b]]
    if not candidates:
        return None
    a, b = candidates[int(rng.integers(len(candidates)))]
    words[a], words[b] = words[b], words[a]
    if swap == "class":  # the list of objects trades names; the relation clause stays as it was
        full = _compose(boxes, names, with_layout, pair)
        relation_clause = full[len(_compose(boxes, names, with_layout, None)):]
        return _compose(boxes, words, with_layout, None) + relation_clause
    return _compose(boxes, names, with_layout, pair, **{f"{swap}s": words})


def swap_benchmark(scenes: SceneSet, seed: int = 0) -> dict[str, dict[str, list]]:
    """For each swap type, the scenes where it applies with their true and swapped captions.

    Captions are complete (every object by its class, with size and place, and one relation), so each
    item differs from its negative by the swap alone. A swapped caption that happens to be true of the
    scene (two objects that are alike in the swapped respect) is left out.

    Returns:
        ``{swap: {"scene": [i, ...], "positive": [str, ...], "negative": [str, ...]}}`` for every swap of :data:`SWAPS`.
    """
    rng = np.random.default_rng(seed)
    boxes, classes, counts = scenes.boxes.numpy(), scenes.classes.numpy(), scenes.counts.numpy()
    items: dict[str, dict[str, list]] = {swap: {"scene": [], "positive": [], "negative": []} for swap in SWAPS}
    for i in range(len(scenes)):
        scene_boxes, scene_classes = boxes[i, : counts[i]], classes[i, : counts[i]]
        names, with_layout, pair = caption_choices(scene_classes, rng, kind_probability=0.0, layout_dropout=0.0)
        true = None
        for swap in SWAPS:
            negative = swapped_caption(scene_boxes, names, with_layout, pair, swap, rng)
            if negative is None:
                continue
            true = true_captions(scene_boxes, scene_classes) if true is None else true
            if negative in true:
                continue
            items[swap]["scene"].append(i)
            items[swap]["positive"].append(_compose(scene_boxes, names, with_layout, pair))
            items[swap]["negative"].append(negative)
    return items


def hard_negative_captions(scenes: SceneSet, seed: int = 0, kind_probability: float = 0.2,
                           layout_dropout: float = 0.0) -> tuple[list[str], list[str]]:
    """Captions as :func:`~mmbook.data.scene_captions.describe_scenes` writes them (the same strings for the
    same arguments), and one false caption for each, for NegCLIP-style training.

    Each negative is the caption itself with one swap of a random applicable type; for a scene with one
    object, where nothing can be swapped, the object's name is replaced by another class's name.
    """
    captions_rng = np.random.default_rng(seed)
    swap_rng = np.random.default_rng([seed, 1])
    boxes, classes, counts = scenes.boxes.numpy(), scenes.classes.numpy(), scenes.counts.numpy()
    captions, negatives = [], []
    for i in range(len(scenes)):
        scene_boxes, scene_classes = boxes[i, : counts[i]], classes[i, : counts[i]]
        names, with_layout, pair = caption_choices(scene_classes, captions_rng, kind_probability, layout_dropout)
        captions.append(_compose(scene_boxes, names, with_layout, pair))
        true = true_captions(scene_boxes, scene_classes)
        negative = None
        for swap in swap_rng.permutation(SWAPS):
            candidate = swapped_caption(scene_boxes, names, with_layout, pair, str(swap), swap_rng)
            if candidate is not None and candidate not in true:
                negative = candidate
                break
        if negative is None:  # one object, or nothing that a swap can change: name another class
            others = [c for c in range(len(CIFAR10_CLASSES)) if c not in scene_classes.tolist()]
            replaced = list(names)
            j = int(swap_rng.integers(len(names)))
            replaced[j] = CIFAR10_CLASSES[others[int(swap_rng.integers(len(others)))]]
            negative = _compose(scene_boxes, replaced, with_layout, pair)
        negatives.append(negative)
    return captions, negatives
