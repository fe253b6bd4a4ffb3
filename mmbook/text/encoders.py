"""Text encoders: token ids ``(B, T)`` in, one feature vector ``(B, D)`` per text out.

One family, :class:`TextEncoder`, with four kinds:

- ``rnn``, ``lstm``, ``gru``: an embedding, a recurrent network read left to right
  (and right to left if ``bidirectional``), and the final hidden state;
- ``transformer``: an embedding, sinusoidal positions, a Transformer encoder whose
  self-attention ignores padded tokens, and the mean over the real tokens.

Padding is recognised by id 0 (``<pad>``) and must follow the tokens. The
recurrent encoders pack the sequence (``pack_padded_sequence``) and the
Transformer masks padded keys and pools over real tokens only, so for every
kind the features of a caption do not depend on how much padding follows it.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mmbook.text.vocab import PAD_ID

RECURRENT_KINDS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
TEXT_ENCODER_KINDS = ("rnn", "lstm", "gru", "transformer")


def lengths_from_padding(tokens: torch.Tensor, pad_id: int = PAD_ID, check: bool = True) -> torch.Tensor:
    """Lengths ``(B,)`` of right-padded token ids ``(B, T)``.

    Args:
        check: verify that the ids are right-padded (this reads a value back from the device).

    Raises:
        ValueError: if padding stands before a real token (the texts are left-padded
            or padding was inserted in the middle).
    """
    present = tokens != pad_id
    if check and present.shape[1] > 1 and bool((present[:, 1:] & ~present[:, :-1]).any()):
        raise ValueError(
            "token ids must be right-padded: found a real token after padding (id "
            f"{pad_id}). Pad at the end, as Vocabulary.encode_batch does."
        )
    return present.sum(dim=1)


def check_tokens(tokens: torch.Tensor, vocab_size: int, values: bool = True) -> None:
    """Raise a clear error unless ``tokens`` is an integer tensor ``(B, T)`` of ids below ``vocab_size``.

    ``values=False`` checks the type and shape only, which costs nothing; the id range needs a
    value read back from the device.
    """
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"expected token ids as a torch.Tensor of shape (B, T), got {type(tokens).__name__}")
    if tokens.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"expected integer token ids (torch.long), got dtype {tokens.dtype}")
    if tokens.ndim != 2:
        hint = " (add a batch dimension with tokens.unsqueeze(0))" if tokens.ndim == 1 else ""
        raise ValueError(f"expected token ids of shape (B, T), got {tuple(tokens.shape)}{hint}")
    if values and tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size):
        raise ValueError(
            f"token ids must lie in 0..{vocab_size - 1} (the vocabulary size is {vocab_size}); "
            f"got ids from {int(tokens.min())} to {int(tokens.max())}. Encode with the same vocabulary "
            f"that the model was built for."
        )


def _check_lengths(tokens: torch.Tensor, found: torch.Tensor, lengths: torch.Tensor, pad_id: int) -> None:
    """Check ``lengths`` ``(B,)`` against the token counts ``found`` ``(B,)`` before the padding in ``tokens``."""
    if not isinstance(lengths, torch.Tensor) or lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise TypeError("lengths must be an integer tensor of shape (B,), one token count per text")
    if lengths.shape != found.shape:
        raise ValueError(f"lengths must have shape (B,) = ({tokens.shape[0]},) to match the tokens "
                         f"{tuple(tokens.shape)}, got {tuple(lengths.shape)}")
    bad = (lengths.to(found.device) != found).nonzero().flatten()
    if bad.numel():
        row = int(bad[0])
        raise ValueError(
            f"lengths disagree with the padding in the token ids: text {row} has {int(found[row])} tokens "
            f"before the padding (id {pad_id}) but lengths[{row}] = {int(lengths[row])}. Pass the lengths "
            f"returned by Vocabulary.encode_batch, or leave lengths out (they are read from the padding)."
        )


class _ChecksFirstBatch:
    """Token encoders check ids and padding in full on their first batch only.

    The full checks read values back from the device, which stalls a GPU at every step; type
    and shape are checked on every batch. :meth:`recheck_inputs` checks the next batch in full
    again, e.g. before feeding data from another source.
    """

    _inputs_checked = False

    def recheck_inputs(self) -> None:
        """Check the next batch's ids and padding in full."""
        self._inputs_checked = False

    def _check_inputs(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Checked ``(B, T)`` long ids and their lengths ``(B,)``."""
        full = not self._inputs_checked
        check_tokens(tokens, self.vocab_size, values=full)
        tokens = tokens.long()
        lengths = lengths_from_padding(tokens, self.pad_id, check=full)
        self._inputs_checked = True
        return tokens, lengths


class PositionalEncoding(nn.Module):
    """Add the sinusoidal position code of :cite:`vaswani2017attention` to ``(B, T, D)`` embeddings.

    ``code[t, 2i] = sin(t / 10000^(2i/D))`` and ``code[t, 2i+1] = cos(t / 10000^(2i/D))``.

    Args:
        dim: the embedding size ``D``.
        max_len: the longest sequence accepted.
    """

    def __init__(self, dim: int, max_len: int = 512) -> None:
        super().__init__()
        position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)  # (max_len, 1)
        frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
        code = torch.zeros(max_len, dim)
        code[:, 0::2] = torch.sin(position * frequency)
        code[:, 1::2] = torch.cos(position * frequency[: dim // 2])
        self.register_buffer("code", code, persistent=False)  # (max_len, D)
        self.max_len = max_len

    def forward(self, embedded: torch.Tensor) -> torch.Tensor:
        """``(B, T, D)`` -> ``(B, T, D)``, the position code added."""
        steps = embedded.shape[1]
        if steps > self.max_len:
            raise ValueError(f"texts of {steps} tokens are longer than the {self.max_len} positions this encoder "
                             f"knows; truncate them (encode_batch(max_len=...)) or build it with a larger max_len")
        return embedded + self.code[:steps]


class TextEncoder(_ChecksFirstBatch, nn.Module):
    """A text encoder: embedding, then an RNN, LSTM, GRU or Transformer, then a linear layer.

    Shapes::

        tokens     (B, T)   int64 ids, right-padded with 0
        embedded   (B, T, embed_dim)
        recurrent: final hidden state per direction -> (B, hidden_size * directions)
        transformer: mean over real tokens of the encoder output -> (B, hidden_size)
        output     (B, out_features)

    Args:
        vocab_size: number of token ids.
        kind: ``"rnn"``, ``"lstm"``, ``"gru"`` or ``"transformer"``.
        embed_dim: size of the word embeddings.
        hidden_size: size of the recurrent state, or the Transformer's model width.
        out_features: size of the output feature; ``None`` returns the pooled state.
        bidirectional: also read the text right to left (recurrent kinds only).
        pad_id: the padding id.
        num_layers: stacked recurrent layers or Transformer encoder blocks.
        num_heads: attention heads (Transformer only; must divide ``hidden_size``).
        dropout: dropout inside the Transformer blocks.
        max_len: longest text the Transformer accepts (positions).
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
        num_layers: int = 1,
        num_heads: int = 4,
        dropout: float = 0.0,
        max_len: int = 512,
    ) -> None:
        super().__init__()
        if kind not in TEXT_ENCODER_KINDS:
            raise ValueError(f"unknown text encoder kind {kind!r}; expected one of {list(TEXT_ENCODER_KINDS)}")
        if not isinstance(vocab_size, int) or vocab_size < 2:
            raise ValueError(f"vocab_size must be an int >= 2 (<pad> and <unk> at least), got {vocab_size!r}")
        self.kind = kind
        self.vocab_size = vocab_size
        self.pad_id = pad_id
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        if kind == "transformer":
            if bidirectional:
                raise ValueError("bidirectional applies to the recurrent kinds (rnn, lstm, gru); a Transformer "
                                 "already sees the whole text at once. Leave bidirectional=False.")
            if hidden_size % num_heads:
                raise ValueError(f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})")
            self.input_proj = nn.Linear(embed_dim, hidden_size) if embed_dim != hidden_size else nn.Identity()
            self.positions = PositionalEncoding(hidden_size, max_len)
            layer = nn.TransformerEncoderLayer(hidden_size, num_heads, dim_feedforward=2 * hidden_size,
                                               dropout=dropout, batch_first=True, norm_first=True)
            self.transformer = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(hidden_size)
            state_size = hidden_size
        else:
            self.rnn = RECURRENT_KINDS[kind](embed_dim, hidden_size, num_layers=num_layers, batch_first=True,
                                             bidirectional=bidirectional)
            state_size = hidden_size * (2 if bidirectional else 1)
        self.proj = nn.Linear(state_size, out_features) if out_features is not None else nn.Identity()
        self.out_features = out_features if out_features is not None else state_size

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T)`` token ids -> ``(B, out_features)`` features.

        Args:
            tokens: ``(B, T)`` integer ids, right-padded with ``pad_id``.
            lengths: optional ``(B,)`` token counts; checked against the padding.
        """
        tokens, found = self._check_inputs(tokens)
        if lengths is not None:
            _check_lengths(tokens, found, lengths, self.pad_id)
        # An all-padding text is given length 1: it then reads one padding embedding (all zeros).
        found = found.clamp(min=1)
        embedded = self.embedding(tokens)  # (B, T, E)
        if self.kind == "transformer":
            x, real = self._transformer_input(embedded, found)
            x = self.norm(self.transformer(x, src_key_padding_mask=~real))  # padded keys get no attention
            weights = real.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
            return self.proj((x * weights).sum(dim=1) / weights.sum(dim=1))
        # Packing makes the RNN stop at each text's last real token.
        packed = pack_padded_sequence(embedded, found.cpu(), batch_first=True, enforce_sorted=False)
        _, hidden = self.rnn(packed)
        if isinstance(hidden, tuple):  # the LSTM returns (h, c)
            hidden = hidden[0]
        # hidden: (layers * directions, B, H); keep the last layer's directions.
        directions = 2 if self.rnn.bidirectional else 1
        return self.proj(torch.cat(list(hidden[-directions:]), dim=1))  # (B, H * directions) -> (B, out_features)

    def _transformer_input(self, embedded: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings ``(B, T, E)`` -> encoder input ``(B, T, D)``, and ``(B, T)`` True where ``t < lengths[b]``."""
        steps = torch.arange(embedded.shape[1], device=embedded.device)
        real = steps.unsqueeze(0) < lengths.to(embedded.device).unsqueeze(1)
        return self.positions(self.input_proj(embedded)), real

    @torch.no_grad()
    def attention_maps(self, tokens: torch.Tensor) -> torch.Tensor:
        """Self-attention weights of a ``transformer`` encoder, for plotting.

        Args:
            tokens: ``(B, T)`` right-padded ids.

        Returns:
            ``(num_layers, B, num_heads, T, T)``: row ``i`` of a map is how much token ``i``
            attends to each token; padded keys get weight 0.
        """
        if self.kind != "transformer":
            raise ValueError(f"attention maps exist only for kind='transformer', this encoder is {self.kind!r}")
        check_tokens(tokens, self.vocab_size)
        tokens = tokens.long()
        lengths = lengths_from_padding(tokens, self.pad_id).clamp(min=1)
        x, real = self._transformer_input(self.embedding(tokens), lengths)
        maps = []
        for layer in self.transformer.layers:
            query = layer.norm1(x) if layer.norm_first else x
            _, weights = layer.self_attn(query, query, query, key_padding_mask=~real, need_weights=True,
                                         average_attn_weights=False)
            maps.append(weights)  # (B, heads, T, T)
            x = layer(x, src_key_padding_mask=~real)
        return torch.stack(maps)


class TokenEncoder(_ChecksFirstBatch, nn.Module):
    """A recurrent encoder that returns one vector per token: ``(B, T)`` -> ``(B, T, out_features)``.

    Embedding, then an RNN/LSTM/GRU run over the packed sequence, then a linear
    layer at every step. Padding positions come out as exactly zero vectors, so a
    fusion can rebuild the mask with ``features.abs().sum(-1) > 0``.

    Args:
        vocab_size: number of token ids.
        kind: ``"rnn"``, ``"lstm"`` or ``"gru"``.
        embed_dim: word-embedding size.
        hidden_size: recurrent state size.
        out_features: size of each token vector.
    """

    returns_sequences = True  # for MultimodalModel's check: a sequence fusion may follow

    def __init__(self, vocab_size: int, kind: str = "rnn", embed_dim: int = 32, hidden_size: int = 64,
                 out_features: int = 16, pad_id: int = PAD_ID) -> None:
        super().__init__()
        if kind not in RECURRENT_KINDS:
            raise ValueError(f"unknown text encoder kind {kind!r}; expected one of {sorted(RECURRENT_KINDS)}")
        self.vocab_size = vocab_size
        self.pad_id = pad_id
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.rnn = RECURRENT_KINDS[kind](embed_dim, hidden_size, batch_first=True)
        self.proj = nn.Linear(hidden_size, out_features)
        self.out_features = out_features

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` right-padded ids -> ``(B, T, out_features)``, zeros at padding."""
        tokens, lengths = self._check_inputs(tokens)
        packed = pack_padded_sequence(self.embedding(tokens), lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        outputs, _ = self.rnn(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=tokens.shape[1])  # (B, T, H)
        mask = (tokens != self.pad_id).unsqueeze(2)
        return self.proj(outputs) * mask
