"""Turning captions into token ids: a tokenizer and a vocabulary; and class labels into ids: a label vocabulary.

Id 0 is ``<pad>`` and id 1 is ``<unk>`` in every text vocabulary, so padding can be
recognised without the vocabulary at hand.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import torch

PAD_TOKEN, UNK_TOKEN = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
_WORD = re.compile(r"[a-z0-9']+")


def tokenize(text: str) -> list[str]:
    """Lower-case ``text`` and split it into words: ``"A red car!"`` -> ``["a", "red", "car"]``."""
    if not isinstance(text, str):
        raise TypeError(f"expected a string to tokenize, got {type(text).__name__}")
    return _WORD.findall(text.lower())


class Vocabulary:
    """A mapping between words and integer ids.

    Args:
        words: the words, in id order, *after* the two special tokens.
    """

    def __init__(self, words: Sequence[str] = ()) -> None:
        self.itos: list[str] = [PAD_TOKEN, UNK_TOKEN]
        for word in words:
            if word not in (PAD_TOKEN, UNK_TOKEN):
                self.itos.append(word)
        self.stoi: dict[str, int] = {word: i for i, word in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary words must be unique")

    @classmethod
    def build(cls, texts: Iterable[str], min_freq: int = 1) -> "Vocabulary":
        """Build a vocabulary from ``texts``; words seen fewer than ``min_freq`` times become ``<unk>``.

        Words are ordered by frequency (then alphabetically), so ids are deterministic.
        """
        counts = Counter(word for text in texts for word in tokenize(text))
        words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        return cls(words)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, word: str) -> bool:
        return word in self.stoi

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; unknown words map to ``<unk>`` (id 1)."""
        return [self.stoi.get(word, UNK_ID) for word in tokenize(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Words of ``ids``, padding dropped."""
        return " ".join(self.itos[int(i)] for i in ids if int(i) != PAD_ID)

    def encode_batch(self, texts: Sequence[str], max_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode and right-pad a batch.

        Args:
            texts: ``N`` strings.
            max_len: truncate to this many tokens; default the longest text.

        Returns:
            ``ids`` of shape ``(N, T)`` (``int64``, padded with 0) and ``lengths`` of
            shape ``(N,)``. An empty text gets length 0 (all padding).
        """
        encoded = [self.encode(text) for text in texts]
        longest = max((len(ids) for ids in encoded), default=0)
        width = max(1, longest if max_len is None else min(max_len, longest))
        ids = torch.full((len(encoded), width), PAD_ID, dtype=torch.int64)
        lengths = torch.zeros(len(encoded), dtype=torch.int64)
        for row, tokens in enumerate(encoded):
            tokens = tokens[:width]
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.int64)
            lengths[row] = len(tokens)
        return ids, lengths

    def to_dict(self) -> dict:
        """A JSON-friendly form, for checkpoints."""
        return {"itos": list(self.itos)}

    @classmethod
    def from_dict(cls, state: dict) -> "Vocabulary":
        """Inverse of :meth:`to_dict`."""
        itos = list(state["itos"])
        if itos[:2] != [PAD_TOKEN, UNK_TOKEN]:
            raise ValueError("not a mmbook vocabulary: ids 0 and 1 must be <pad> and <unk>")
        return cls(itos[2:])


class LabelVocabulary:
    """A mapping between class labels and ids ``0 .. C-1``, with no special tokens.

    A text :class:`Vocabulary` reserves ``<pad>`` and ``<unk>``; labels need neither: every
    label is a class, and a label never seen in training is an error, not ``<unk>``.
    Labels are kept as strings (``3`` and ``"3"`` are the same class), so labels read from
    a CSV file and from JSON agree.

    Args:
        classes: the class names, in id order; ``classes[k]`` is the name of id ``k``.
    """

    def __init__(self, classes: Sequence[object]) -> None:
        self.classes: list[str] = [str(label) for label in classes]
        if not self.classes:
            raise ValueError("a label vocabulary needs at least one class")
        self.index: dict[str, int] = {label: i for i, label in enumerate(self.classes)}
        if len(self.index) != len(self.classes):
            raise ValueError(f"class labels must be unique, got {self.classes}")

    @classmethod
    def build(cls, labels: Iterable[object]) -> "LabelVocabulary":
        """The classes of ``labels``, sorted (numbers numerically when all labels are integers), so ids are deterministic."""
        names = {str(label) for label in labels}
        if not names:
            raise ValueError("cannot build a label vocabulary from no labels")
        if all(re.fullmatch(r"-?\d+", name) for name in names):
            return cls(sorted(names, key=int))
        return cls(sorted(names))

    def __len__(self) -> int:
        return len(self.classes)

    def __contains__(self, label: object) -> bool:
        return str(label) in self.index

    def __repr__(self) -> str:
        return f"LabelVocabulary({self.classes!r})"

    def encode(self, label: object) -> int:
        """The id of ``label``.

        Raises:
            KeyError: for a label that is not one of :attr:`classes`.
        """
        try:
            return self.index[str(label)]
        except KeyError:
            shown = ", ".join(self.classes[:20]) + (", ..." if len(self.classes) > 20 else "")
            raise KeyError(f"unknown label {label!r}: the classes are {shown} (from the training data); "
                           f"drop or relabel samples whose class the model was not trained on") from None

    def encode_many(self, labels: Iterable[object]) -> torch.Tensor:
        """Ids of ``labels`` as an int64 tensor ``(N,)``."""
        return torch.tensor([self.encode(label) for label in labels], dtype=torch.int64)

    def decode(self, ids: Iterable[int] | int) -> list[str] | str:
        """The class name of one id, or the list of names of several."""
        if isinstance(ids, int) or (isinstance(ids, torch.Tensor) and ids.ndim == 0):
            return self.classes[int(ids)]
        return [self.classes[int(i)] for i in ids]

    def to_dict(self) -> dict:
        """A JSON-friendly form, for checkpoints."""
        return {"classes": list(self.classes)}

    @classmethod
    def from_dict(cls, state: dict) -> "LabelVocabulary":
        """Inverse of :meth:`to_dict`."""
        return cls(state["classes"])
