"""Text encoders: token ids ``(B, T)`` in, one feature vector ``(B, D)`` per text out.

Padding is recognised by id 0 (``<pad>``) and must follow the tokens. The
recurrent encoders pack the sequence (``pack_padded_sequence``), so the
features of a caption do not depend on how much padding follows it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from mmbook.text.vocab import PAD_ID

RECURRENT_KINDS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def lengths_from_padding(tokens: torch.Tensor, pad_id: int = PAD_ID) -> torch.Tensor:
    """Lengths ``(B,)`` of right-padded token ids ``(B, T)``.

    Raises:
        ValueError: if padding stands before a real token (the texts are left-padded
            or padding was inserted in the middle).
    """
    present = tokens != pad_id
    if present.shape[1] > 1 and bool((present[:, 1:] & ~present[:, :-1]).any()):
        raise ValueError(
            "token ids must be right-padded: found a real token after padding (id "
            f"{pad_id}). Pad at the end, as Vocabulary.encode_batch does."
        )
    return present.sum(dim=1)


def check_tokens(tokens: torch.Tensor, vocab_size: int) -> None:
    """Raise a clear error unless ``tokens`` is an integer tensor ``(B, T)`` of ids below ``vocab_size``."""
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"expected token ids as a torch.Tensor of shape (B, T), got {type(tokens).__name__}")
    if tokens.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"expected integer token ids (torch.long), got dtype {tokens.dtype}")
    if tokens.ndim != 2:
        hint = " (add a batch dimension with tokens.unsqueeze(0))" if tokens.ndim == 1 else ""
        raise ValueError(f"expected token ids of shape (B, T), got {tuple(tokens.shape)}{hint}")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size):
        raise ValueError(
            f"token ids must lie in 0..{vocab_size - 1} (the vocabulary size is {vocab_size}); "
            f"got ids from {int(tokens.min())} to {int(tokens.max())}. Encode with the same vocabulary "
            f"that the model was built for."
        )


class TextEncoder(nn.Module):
    """A recurrent text encoder: embedding, then an RNN, LSTM or GRU, then a linear layer.

    Shapes::

        tokens     (B, T)   int64 ids, right-padded with 0
        embedded   (B, T, embed_dim)
        final hidden state per direction -> (B, hidden_size * directions)
        output     (B, out_features)

    Args:
        vocab_size: number of token ids.
        kind: ``"rnn"``, ``"lstm"`` or ``"gru"``.
        embed_dim: size of the word embeddings.
        hidden_size: size of the recurrent state.
        out_features: size of the output feature; ``None`` returns the hidden state.
        bidirectional: also read the text right to left.
        pad_id: the padding id.
    """

    def __init__(
        self,
        vocab_size: int,
        kind: str = "rnn",
        embed_dim: int = 32,
        hidden_size: int = 64,
        out_features: int | None = 10,
        bidirectional: bool = False,
        pad_id: int = PAD_ID,
    ) -> None:
        super().__init__()
        if kind not in RECURRENT_KINDS:
            raise ValueError(f"unknown text encoder kind {kind!r}; expected one of {sorted(RECURRENT_KINDS)}")
        self.kind = kind
        self.vocab_size = vocab_size
        self.pad_id = pad_id
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        # batch_first=True: our tensors are (B, T, E). The source sketch forgot this,
        # so the RNN read the batch as time and failed with a hidden-size error.
        self.rnn = RECURRENT_KINDS[kind](embed_dim, hidden_size, batch_first=True, bidirectional=bidirectional)
        state_size = hidden_size * (2 if bidirectional else 1)
        self.proj = nn.Linear(state_size, out_features) if out_features is not None else nn.Identity()
        self.out_features = out_features if out_features is not None else state_size

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` token ids -> ``(B, out_features)`` features."""
        check_tokens(tokens, self.vocab_size)
        tokens = tokens.long()
        lengths = lengths_from_padding(tokens, self.pad_id)
        embedded = self.embedding(tokens)  # (B, T, E)
        # Packing makes the RNN stop at each text's last real token. An all-padding
        # text is given length 1: it then reads one padding embedding (all zeros).
        packed = pack_padded_sequence(embedded, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        _, hidden = self.rnn(packed)
        if isinstance(hidden, tuple):  # the LSTM returns (h, c)
            hidden = hidden[0]
        # hidden: (layers * directions, B, H); keep the last layer's directions.
        directions = 2 if self.rnn.bidirectional else 1
        final = torch.cat(list(hidden[-directions:]), dim=1)  # (B, H * directions)
        return self.proj(final)


def text_encoder(vocab_size: int, kind: str = "rnn", out_features: int | None = 10, **kwargs) -> TextEncoder:
    """Build a text encoder of the given ``kind`` (``rnn``, ``lstm`` or ``gru``)."""
    return TextEncoder(vocab_size, kind=kind, out_features=out_features, **kwargs)
