"""Turning captions into token ids: a tokenizer and a vocabulary.

Id 0 is ``<pad>`` and id 1 is ``<unk>`` in every vocabulary, so padding can be
recognised without the vocabulary at hand. (torchtext, which used to provide
this, is retired; the whole thing is a few lines.)
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
