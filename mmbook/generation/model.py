"""Captioning models: an image encoder that gives regions, and decoders that write one word at a time.

Every captioner is trained the same way, by *teacher forcing*: given the image and the true words
``w_1 .. w_{t-1}`` it predicts ``w_t``; the loss is the cross-entropy of every next word
(:func:`caption_loss`). Every captioner also decodes the same way, through two methods that
:mod:`mmbook.generation.decoding` calls (greedy, beam search, sampling)::

    state = model.start(features)                # read the images' region features once
    log_probs, state = model.step(words, state)  # (B,) last words -> (B, V) next-word log-probabilities

``state`` is a dict of tensors with the batch along dim 0, so beam search can reorder and repeat it.

Decoders (``build_captioner(kind)``):

- ``"blind"``: a GRU language model that never sees the image: how far the language prior alone goes.
- ``"global"``: Show and Tell (Vinyals et al., 2015): the image's pooled feature starts the GRU's state.
- ``"attention"``: Show, Attend and Tell (Xu et al., 2015): at every word the GRU attends over the
  4x4 grid of image regions and reads a context vector.
- ``"transformer"``: a Transformer decoder whose every layer cross-attends to the regions (the form of
  today's encoder-decoder captioners).

The papers used LSTMs; a GRU has one state vector instead of two and trains as well at this size.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn import functional as F

CAPTIONERS = ("blind", "global", "attention", "transformer")


class RegionEncoder(nn.Module):
    """Region features of a frozen image encoder to the decoder's size: ``(B, R, C)`` -> ``(B, R, d)``.

    The features come from :func:`~mmbook.generation.encoder.region_features` (a 4x4 grid of a
    pretrained backbone's features, ``R = 16``). Each region is projected to ``d`` and gets a learned position
    embedding, so that a decoder can tell *where* a region is (captions say "at the top left").
    """

    def __init__(self, features: int = 64, dim: int = 64, regions: int = 16) -> None:
        super().__init__()
        self.regions = regions
        self.project = nn.Linear(features, dim)
        self.position = nn.Parameter(torch.zeros(1, regions, dim))
        nn.init.normal_(self.position, std=0.02)
        self.dim = dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, R, C)`` -> ``(B, R, d)``."""
        if features.ndim != 3 or features.shape[1] != self.regions or features.shape[2] != self.project.in_features:
            raise ValueError(f"expected region features (B, {self.regions}, {self.project.in_features}), got "
                             f"{tuple(features.shape)}; compute them with mmbook.generation.encoder.region_features")
        return F.relu(self.project(features)) + self.position


class RegionAttention(nn.Module):
    """Soft attention over image regions: ``a_i = softmax_i((W r_i) . (U h) / sqrt(A))``, context ``sum_i a_i r_i``.

    ``(B, R, d)`` regions and ``(B, H)`` decoder state -> context ``(B, d)`` and weights ``(B, R)`` (summing
    to 1). Show, Attend and Tell scored regions with a small MLP, ``v . tanh(W r_i + U h)`` (additive
    attention); this is the multiplicative form of Luong et al. (2015), which plays the same role with one
    batched matrix product per word instead of a ``tanh`` over every region.
    """

    def __init__(self, dim: int, hidden: int, attention: int = 64) -> None:
        super().__init__()
        self.regions = nn.Linear(dim, attention)
        self.state = nn.Linear(hidden, attention)
        self.scale = attention ** -0.5

    def forward(self, regions: torch.Tensor, state: torch.Tensor,
                projected: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        projected = self.regions(regions) if projected is None else projected  # (B, R, A)
        scores = torch.bmm(projected, self.state(state).unsqueeze(2)).squeeze(2) * self.scale  # (B, R)
        weights = scores.softmax(dim=-1)
        return torch.bmm(weights.unsqueeze(1), regions).squeeze(1), weights


class Captioner(nn.Module):
    """A base for the captioners: the loss interface ``forward(batch) -> (B, T-1, V)`` and ``start``/``step``.

    ``batch["features"]`` ``(B, R, C)`` region features and ``batch["text"]`` ``(B, T)`` token ids
    ``<bos> w_1 .. w_n <eos>``, right-padded with 0 (or ``(B, K, T)``: ``K`` references per image).
    ``forward`` returns the logits of the next word at
    every position but the last: ``logits[:, t]`` predicts ``text[:, t + 1]``.
    """

    vocab_size: int

    def start(self, features: torch.Tensor) -> dict[str, torch.Tensor]:  # pragma: no cover - overridden
        raise NotImplementedError

    def step(self, words: torch.Tensor, state: dict[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # pragma: no cover - overridden
        raise NotImplementedError

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Teacher forcing: ``(B, T)`` or ``(B, K, T)`` references -> next-word logits ``(B * K, T-1, V)``.

        With ``K`` references per image, each image's regions are read once and its state repeated ``K`` times.
        """
        text = batch["text"]
        state = self.start(batch["features"])
        if text.ndim == 3:
            state = {name: value.repeat_interleave(text.shape[1], dim=0) for name, value in state.items()}
            text = text.flatten(0, 1)
        return self.teacher_forced(text, state)

    def teacher_forced(self, text: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(N, T)`` words and the images' state -> logits ``(N, T-1, V)``, one word at a time through :meth:`step`.

        Captions differ in length, so the rows are sorted longest first and step ``t`` runs only the rows
        that still have a word to predict (what ``pack_padded_sequence`` does for ``nn.GRU``); the logits
        of padding positions are 0 (the loss ignores them). Subclasses that read all positions at once
        (the Transformer) override it.
        """
        lengths = (text != 0).sum(dim=1)  # <bos> .. <eos>
        lengths, order = lengths.sort(descending=True)
        text = text[order]
        state = {name: value[order] for name, value in state.items()}
        steps = int(lengths[0]) - 1 if len(lengths) else 0
        logits = []
        for t in range(steps):
            active = int((lengths > t + 1).sum())  # rows with a word to predict at t + 1
            state = {name: value[:active] for name, value in state.items()}
            step_logits, state = self.step(text[:active, t], state, normalise=False)
            logits.append(F.pad(step_logits, (0, 0, 0, len(text) - active)))
        out = torch.stack(logits, dim=1) if logits else text.new_zeros(len(text), 0, self.vocab_size).float()
        out = F.pad(out, (0, 0, 0, text.shape[1] - 1 - steps))  # (N, T-1, V)
        return out[order.argsort()]


class GRUCaptioner(Captioner):
    """A GRU decoder: ``blind`` (no image), ``global`` (Show and Tell) or ``attention`` (Show, Attend and Tell).

    Per word::

        embed(w_{t-1})                       (B, e)
        attention: context c_t over regions  (B, d), from the previous state h_{t-1}
        h_t = GRU([embed, c_t], h_{t-1})     (B, H)
        logits = W [h_t, c_t, embed]         (B, V)   (the paper's "deep output", linear here)

    ``global`` starts ``h_0`` from the mean of the regions and uses no context; ``blind`` starts from zeros.
    """

    def __init__(self, vocab_size: int, kind: str = "attention", features: int = 64, dim: int = 64, hidden: int = 128,
                 embed: int = 32, dropout: float = 0.0) -> None:
        super().__init__()
        if kind not in ("blind", "global", "attention"):
            raise ValueError(f"kind must be 'blind', 'global' or 'attention', got {kind!r}")
        self.kind, self.vocab_size, self.hidden = kind, vocab_size, hidden
        self.encoder = None if kind == "blind" else RegionEncoder(features, dim)
        self.embed = nn.Embedding(vocab_size, embed, padding_idx=0)
        self.init_state = None if kind == "blind" else nn.Linear(dim, hidden)
        self.attention = RegionAttention(dim, hidden) if kind == "attention" else None
        context = dim if kind == "attention" else 0
        self.cell = nn.GRUCell(embed + context, hidden)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden + context + embed, vocab_size)

    def start(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Read ``(B, R, C)`` region features: ``{"hidden": (B, H)}`` plus ``"regions"`` ``(B, R, d)`` for attention."""
        batch = features.shape[0]
        if self.encoder is None:
            return {"hidden": features.new_zeros(batch, self.hidden)}
        regions = self.encoder(features)
        state = {"hidden": torch.tanh(self.init_state(regions.mean(dim=1)))}
        if self.attention is not None:
            state["regions"] = regions
            state["projected"] = self.attention.regions(regions)
        return state

    def step(self, words: torch.Tensor, state: dict[str, torch.Tensor], normalise: bool = True
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(B,)`` previous words -> ``(B, V)`` next-word log-probabilities (logits if not ``normalise``), new state."""
        embedded = self.dropout(self.embed(words))
        parts, new_state = [embedded], dict(state)
        if self.attention is not None:
            context, weights = self.attention(state["regions"], state["hidden"], state["projected"])
            parts.append(context)
            new_state["attention"] = weights
        hidden = self.cell(torch.cat(parts, dim=-1), state["hidden"])
        new_state["hidden"] = hidden
        out = [self.dropout(hidden)] + parts[1:] + [embedded]
        logits = self.output(torch.cat(out, dim=-1))
        return (logits.log_softmax(dim=-1) if normalise else logits), new_state


class TransformerCaptioner(Captioner):
    """A Transformer decoder with cross-attention to the image regions (pre-norm, causal self-attention).

    ``(B, T)`` words -> embeddings + positions ``(B, T, d)`` -> ``layers`` x [causal self-attention,
    cross-attention to regions ``(B, R, d)``, MLP] -> logits ``(B, T, V)``. Decoding re-reads the prefix at
    every step (no key-value cache: captions are short).
    """

    def __init__(self, vocab_size: int, features: int = 64, dim: int = 64, layers: int = 2, heads: int = 4,
                 max_len: int = 40, dropout: float = 0.0) -> None:
        super().__init__()
        self.vocab_size, self.max_len = vocab_size, max_len
        self.encoder = RegionEncoder(features, dim)
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.position = nn.Parameter(torch.zeros(1, max_len, dim))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerDecoderLayer(dim, heads, 4 * dim, dropout, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.norm = nn.LayerNorm(dim)
        self.output = nn.Linear(dim, vocab_size)

    def _logits(self, words: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        length = words.shape[1]
        if length > self.max_len:
            raise ValueError(f"captions of at most {self.max_len} tokens, got {length}; build with a larger max_len")
        x = self.embed(words) + self.position[:, :length]
        causal = nn.Transformer.generate_square_subsequent_mask(length, device=words.device, dtype=x.dtype)
        x = self.decoder(x, regions, tgt_mask=causal, tgt_is_causal=True)
        return self.output(self.norm(x))

    def teacher_forced(self, text: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """All positions at once under a causal mask: ``(N, T)`` -> ``(N, T-1, V)``."""
        longest = int((text != 0).sum(dim=1).max())  # positions beyond every caption's end only predict padding
        logits = self._logits(text[:, : longest - 1], state["regions"])
        return F.pad(logits, (0, 0, 0, text.shape[1] - longest))

    def start(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        regions = self.encoder(features)
        return {"regions": regions, "prefix": torch.zeros(features.shape[0], 0, dtype=torch.long, device=features.device)}

    def step(self, words: torch.Tensor, state: dict[str, torch.Tensor], normalise: bool = True
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        prefix = torch.cat([state["prefix"], words.unsqueeze(1)], dim=1)
        logits = self._logits(prefix, state["regions"])[:, -1]
        return (logits.log_softmax(dim=-1) if normalise else logits), {"regions": state["regions"], "prefix": prefix}


def build_captioner(kind: str, vocab_size: int, **options) -> Captioner:
    """One of :data:`CAPTIONERS`: ``"blind"``, ``"global"``, ``"attention"`` or ``"transformer"``."""
    if kind not in CAPTIONERS:
        raise ValueError(f"unknown captioner {kind!r}; choose one of {', '.join(CAPTIONERS)}")
    if kind == "transformer":
        return TransformerCaptioner(vocab_size, **options)
    return GRUCaptioner(vocab_size, kind=kind, **options)


def _flat(text: torch.Tensor) -> torch.Tensor:
    """``(B, K, T)`` references (``K`` per image) -> ``(B * K, T)``; ``(B, T)`` unchanged."""
    return text.flatten(0, 1) if text.ndim == 3 else text


def caption_loss(logits: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Teacher-forced cross-entropy of every next word, padding ignored: logits ``(N, T-1, V)``, ``batch["text"]`` ``(N, T)``
    or ``(B, K, T)`` with ``N = B * K``."""
    targets = _flat(batch["text"])[:, 1:]
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=0)


def next_word_accuracy(logits: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Teacher-forced next-word accuracy over non-padding positions: ``(correct, counted)``."""
    targets = _flat(batch["text"])[:, 1:]
    mask = targets != 0
    return ((logits.argmax(dim=-1) == targets) & mask).sum(), int(mask.sum())
