"""A text task where memory matters: the informative word comes first, then distractors.

Each example is a caption whose *first few* words name a CIFAR-10 class and
whose remaining words are filler that says nothing about the class::

    "a photo of a frog taken on a grey morning while people walked past ..."
     ^^^^^^^^^^^^^^^^^  informative        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ distractors

The label is the class named at the start. A model that reads left to right and
summarises the caption by its final state must carry the class word across all
the distractors: easy for an LSTM or GRU, hard for a vanilla RNN whose gradient
vanishes over long gaps :cite:`bengio1994learning`. A Transformer attends to the
class word directly, whatever its distance.

Examples are deterministic: example ``i`` depends only on ``(seed, i)``, not on
how many examples are made or in which order.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mmbook.data.cifar10 import CIFAR10_CLASSES
from mmbook.text.vocab import Vocabulary

# The informative part: a short opening that names the class ({w}).
MEMORY_OPENINGS: tuple[str, ...] = (
    "a photo of a {w}",
    "this is a {w}",
    "the picture shows a {w}",
    "a {w}",
    "look at this {w}",
)

# Filler phrases: none of them says anything about the class.
DISTRACTOR_PHRASES: tuple[str, ...] = (
    "taken on a grey morning",
    "while people walked past",
    "and the light was soft",
    "somewhere near the old town",
    "the camera moved a little",
    "as music played in the distance",
    "on a quiet day in autumn",
    "with a slightly blurry corner",
    "before the rain started",
    "from a window on the second floor",
    "at the end of a long trip",
    "and nobody noticed at first",
    "under a pale and cloudy light",
    "just after lunch",
    "in a colour that faded over time",
    "then the shutter clicked again",
)

TEST_OFFSET = 1_000_000  # test examples use indices from here, so they never repeat training ones


@dataclass
class MemoryTask:
    """A split of the memory task.

    Attributes:
        texts: ``N`` captions.
        labels: ``(N,)`` int64 class ids (the class named at the start).
        tokens: ``(N, T)`` int64 ids, right-padded with 0.
        lengths: ``(N,)`` int64 number of words of each caption.
        key_positions: ``(N,)`` int64 position of the class word.
        classes: class names.
    """

    texts: list[str]
    labels: torch.Tensor
    tokens: torch.Tensor
    lengths: torch.Tensor
    key_positions: torch.Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.texts)

    def tensors(self) -> dict[str, torch.Tensor]:
        """``{"text": (N, T), "label": (N,)}``, as :class:`mmbook.data.DeviceLoader` and ``fit`` expect."""
        return {"text": self.tokens, "label": self.labels}


class MemoryTaskGenerator:
    """Make captions whose class word sits at the start, followed by distractors.

    Args:
        min_words: shortest caption, in words (at least 6, so the opening fits).
        max_words: longest caption, in words; lengths are uniform in ``[min_words, max_words]``.
        seed: the same ``(seed, index)`` always gives the same example.
        classes: class names, indexed by label.

    Example:
        >>> MemoryTaskGenerator(8, 8, seed=0).example(0)[0].split()[:2]
        ['a', 'photo']
    """

    def __init__(self, min_words: int = 8, max_words: int = 64, seed: int = 0,
                 classes: Sequence[str] = CIFAR10_CLASSES) -> None:
        if not isinstance(min_words, int) or not isinstance(max_words, int):
            raise TypeError("min_words and max_words must be whole numbers")
        if min_words < 6 or max_words < min_words:
            raise ValueError(f"need 6 <= min_words <= max_words (the opening takes up to 5 words), "
                             f"got min_words={min_words}, max_words={max_words}")
        if len(set(classes)) != len(classes) or not classes:
            raise ValueError("classes must be a non-empty list of distinct names")
        self.min_words, self.max_words, self.seed = min_words, max_words, seed
        self.classes = tuple(classes)

    def example(self, index: int) -> tuple[str, int, int]:
        """Example ``index``: ``(caption, label, position of the class word)``."""
        rng = random.Random(f"memory:{self.seed}:{index}")
        label = rng.randrange(len(self.classes))
        length = rng.randint(self.min_words, self.max_words)
        words = rng.choice(MEMORY_OPENINGS).format(w=self.classes[label]).split()
        key_position = words.index(self.classes[label])
        while len(words) < length:
            words += rng.choice(DISTRACTOR_PHRASES).split()
        return " ".join(words[:length]), label, key_position

    def vocabulary(self) -> Vocabulary:
        """The fixed vocabulary of every word the generator can write (ids do not depend on the data)."""
        texts = (*MEMORY_OPENINGS, *DISTRACTOR_PHRASES, *self.classes)
        return Vocabulary(list(dict.fromkeys(word for text in texts for word in text.replace("{w}", "").split())))

    def make(self, n: int, start: int = 0, vocab: Vocabulary | None = None) -> MemoryTask:
        """Examples ``start .. start + n - 1`` as a :class:`MemoryTask`."""
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        vocab = vocab or self.vocabulary()
        texts, labels, keys = zip(*(self.example(index) for index in range(start, start + n)))
        tokens, lengths = vocab.encode_batch(texts)
        return MemoryTask(list(texts), torch.tensor(labels, dtype=torch.int64), tokens, lengths,
                          torch.tensor(keys, dtype=torch.int64), self.classes)


def make_memory_task(n_train: int, n_test: int, min_words: int = 8, max_words: int = 64,
                     seed: int = 0) -> tuple[MemoryTask, MemoryTask, Vocabulary]:
    """Train and test splits of the memory task, and their shared vocabulary.

    The test split uses example indices from ``TEST_OFFSET`` on, so it is disjoint from
    training by construction; both are deterministic for a given seed.
    """
    generator = MemoryTaskGenerator(min_words, max_words, seed)
    vocab = generator.vocabulary()
    return generator.make(n_train, 0, vocab), generator.make(n_test, TEST_OFFSET, vocab), vocab
