"""Generated text descriptions for CIFAR-10 images.

Each image gets one caption built from its label. The captions are designed to be
*partly* informative, so that neither modality solves the task on its own:

- A caption names attributes, never the class. Attributes are shared: "wings"
  fits an airplane and a bird, "wheels" an automobile and a truck, "four legs"
  a cat, a dog, a deer and a horse. So the text narrows the answer to a group of
  two or four classes, and the image has to separate the classes in the group.
- The wording varies (several templates and several phrasings of each attribute).
- With probability ``noise`` a caption describes a class drawn uniformly at random
  instead of the true one, so text can be made unreliable on purpose.

The groups of classes that no caption can tell apart are those with the same
:data:`CLASS_ATTRIBUTES`. :func:`text_only_ceiling` counts, from these tables, the best
accuracy that any classifier reading only the caption can reach.

Captions are deterministic: caption ``i`` depends only on ``(seed, i, label)``,
not on the order in which captions are made.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from itertools import combinations

from mmbook.data.cifar10 import CIFAR10_CLASSES

# Attribute -> ways of saying it.
ATTRIBUTE_PHRASES: dict[str, tuple[str, ...]] = {
    "wings": ("wings", "a pair of wings", "spread wings"),
    "sky": ("the sky", "the clouds", "the open air"),
    "wheels": ("wheels", "four wheels", "round tyres"),
    "road": ("a road", "the street", "a parking lot"),
    "fur": ("fur", "soft fur", "a furry coat"),
    "pet": ("a home", "a sofa", "a garden"),
    "four_legs": ("four legs", "four feet", "long legs"),
    "hooves": ("hooves", "a long neck", "a tail"),
    "field": ("a field", "the grass", "a meadow"),
    "water": ("water", "a lake", "the waves"),
}

# Class -> the attributes a caption of that class may mention.
# Classes in one group share exactly the same attributes.
CLASS_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "airplane": ("wings", "sky"),
    "bird": ("wings", "sky"),
    "automobile": ("wheels", "road"),
    "truck": ("wheels", "road"),
    "cat": ("fur", "pet", "four_legs"),
    "dog": ("fur", "pet", "four_legs"),
    "deer": ("hooves", "field", "four_legs"),
    "horse": ("hooves", "field", "four_legs"),
    "frog": ("water",),
    "ship": ("water",),
}

# Templates take one or two attribute phrases.
ONE_ATTRIBUTE_TEMPLATES: tuple[str, ...] = (
    "a photo of something with {a}",
    "there is {a} in this picture",
    "an image showing {a}",
    "you can see {a} here",
    "a small picture with {a}",
)
TWO_ATTRIBUTE_TEMPLATES: tuple[str, ...] = (
    "a photo of something with {a} and {b}",
    "there is {a} near {b} in this picture",
    "an image showing {a} and {b}",
    "you can see {a} and also {b}",
)


# Probability that a caption of a class with two or more attributes uses a two-attribute template.
TWO_ATTRIBUTE_PROBABILITY = 0.5


class CaptionGenerator:
    """Make one caption per image from its label.

    Args:
        noise: probability in ``[0, 1]`` that a caption describes a random class
            (drawn uniformly from all classes) instead of the true one.
        seed: the seed; the same ``(seed, index, label)`` always gives the same caption.
        classes: class names, indexed by label.

    Example:
        >>> CaptionGenerator(noise=0.0, seed=0).caption(label=0, index=7)  # airplane
        'an image showing a pair of wings and the clouds'
    """

    def __init__(self, noise: float = 0.1, seed: int = 0, classes: Sequence[str] = CIFAR10_CLASSES) -> None:
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"caption noise must be a probability in [0, 1], got {noise}")
        unknown = [name for name in classes if name not in CLASS_ATTRIBUTES]
        if unknown:
            raise ValueError(f"no caption attributes defined for classes {unknown}")
        self.noise = noise
        self.seed = seed
        self.classes = tuple(classes)

    def _rng(self, index: int) -> random.Random:
        # A private generator per caption: captions do not depend on generation order.
        return random.Random(f"{self.seed}:{index}")

    def described_label(self, label: int, index: int) -> int:
        """The label whose attributes caption ``index`` describes (``label`` unless noised)."""
        rng = self._rng(index)
        if rng.random() < self.noise:
            return rng.randrange(len(self.classes))
        return label

    def caption(self, label: int, index: int) -> str:
        """The caption of image ``index``, whose true class is ``label``."""
        if not 0 <= label < len(self.classes):
            raise ValueError(f"label must be in 0..{len(self.classes) - 1}, got {label}")
        described = self.described_label(label, index)
        rng = self._rng(index)
        rng.random()  # the draw described_label used for the noise decision
        if described != label:
            rng.randrange(len(self.classes))
        attributes = list(CLASS_ATTRIBUTES[self.classes[described]])
        rng.shuffle(attributes)
        phrases = [rng.choice(ATTRIBUTE_PHRASES[name]) for name in attributes]
        if len(phrases) >= 2 and rng.random() < TWO_ATTRIBUTE_PROBABILITY:
            return rng.choice(TWO_ATTRIBUTE_TEMPLATES).format(a=phrases[0], b=phrases[1])
        return rng.choice(ONE_ATTRIBUTE_TEMPLATES).format(a=phrases[0])

    def captions(self, labels: Sequence[int]) -> list[str]:
        """Captions for a whole split: caption ``i`` describes ``labels[i]``."""
        return [self.caption(int(label), index) for index, label in enumerate(labels)]


def caption_groups(classes: Sequence[str] = CIFAR10_CLASSES) -> list[tuple[str, ...]]:
    """Groups of classes whose captions draw on exactly the same attributes."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for name in classes:
        groups.setdefault(tuple(sorted(CLASS_ATTRIBUTES[name])), []).append(name)
    return [tuple(members) for members in groups.values()]


def mentioned_attributes(class_name: str) -> dict[frozenset[str], float]:
    """The sets of attributes a caption of ``class_name`` mentions, with their probabilities.

    A caption mentions the first one or two of its class's attributes after a uniform
    shuffle: one with probability ``1 - TWO_ATTRIBUTE_PROBABILITY`` (always, for a class
    with a single attribute), two otherwise. Which phrase and template express them is
    drawn independently of the class, so this set is all that a caption says about it.
    """
    if class_name not in CLASS_ATTRIBUTES:
        raise ValueError(f"no caption attributes defined for class {class_name!r}; known: {sorted(CLASS_ATTRIBUTES)}")
    attributes = CLASS_ATTRIBUTES[class_name]
    pairs = list(combinations(attributes, 2))
    one = (1.0 - TWO_ATTRIBUTE_PROBABILITY if pairs else 1.0) / len(attributes)
    return {frozenset([name]): one for name in attributes} | {
        frozenset(pair): TWO_ATTRIBUTE_PROBABILITY / len(pairs) for pair in pairs}


def text_only_ceiling(noise: float, classes: Sequence[str] = CIFAR10_CLASSES) -> float:
    """The best test accuracy any caption-only classifier can reach, for balanced classes.

    Computed from the generator's tables: a caption of true class ``y`` describes class
    ``d`` with probability ``(1 - noise) [d = y] + noise / C``, and mentions an attribute set
    ``S`` with the probability given by :func:`mentioned_attributes`. The Bayes classifier
    picks, for each ``S``, the class with the largest joint probability, so the ceiling is
    ``sum over S of max over y of P(y, S)``, with ``P(y) = 1 / C``.

    Example:
        >>> round(text_only_ceiling(0.0), 4)  # three two-class groups, two groups sharing "four legs"
        0.4833
    """
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"caption noise must be a probability in [0, 1], got {noise}")
    classes = tuple(classes)
    if not classes:
        raise ValueError("classes must name at least one class")
    described = [mentioned_attributes(name) for name in classes]
    joint: dict[frozenset[str], list[float]] = {}
    count = len(classes)
    for y in range(count):
        for d, sets in enumerate(described):
            p_described = (1.0 - noise) * (d == y) + noise / count
            for mention, p_mention in sets.items():
                joint.setdefault(mention, [0.0] * count)[y] += p_described * p_mention / count
    return sum(max(row) for row in joint.values())
