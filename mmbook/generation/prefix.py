"""A vision-language model in miniature: image features as prefix tokens of a caption language model.

ClipCap (Mokady et al., 2021) and LLaVA (Liu et al., 2023) caption with a language model that was first
trained on text alone: an image encoder's features are projected into a few vectors of the language
model's word-embedding space and put in front of the words, as a *prefix*; the language model then
continues the prefix with a caption. ClipCap maps one CLIP embedding to a prefix of ``k`` vectors with an
MLP; LLaVA projects every visual token with a linear layer (later an MLP). Either may keep the language
model frozen (only the projection learns) or tune it as well.

Here:

- :class:`CaptionLM` is a decoder-only Transformer over caption words (causal self-attention, no
  cross-attention). Trained on the training references alone (:func:`pretrain_caption_lm`), it is a
  *blind* language model; as a :class:`~mmbook.generation.model.Captioner` it ignores the image.
- :class:`PrefixCaptioner` projects each of the 16 region features into the language model's embedding
  space (LLaVA's linear projector) and runs the language model over ``[regions; <bos> w_1 .. w_t]``::

      regions (B, 16, C) -> linear -> (B, 16, d) --+
      words   (B, T)     -> LM embeddings (B, T, d) +-> concatenated (B, 16 + T, d) -> LM -> logits of the words

  ``freeze_lm=True`` trains the projection only; ``False`` tunes the language model too.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from mmbook.generation.model import Captioner, caption_loss, next_word_accuracy


class _PrefixedLM(Captioner):
    """Captioning with a decoder-only language model over ``[prefix; <bos> w_1 .. w_t]``: the shared part of
    :class:`CaptionLM` (empty prefix) and :class:`PrefixCaptioner` (the image as prefix)."""

    dim: int

    @property
    def language_model(self) -> "CaptionLM":  # pragma: no cover - overridden
        raise NotImplementedError

    def prefix(self, features: torch.Tensor) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def teacher_forced(self, text: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(N, T)`` words after the state's prefix ``(N, P, d)`` -> logits of every next word ``(N, T-1, V)``."""
        lm, prefix = self.language_model, state["prefix"]
        longest = int((text != 0).sum(dim=1).max())
        inputs = torch.cat([prefix, lm.embed(text[:, : longest - 1])], dim=1)
        logits = lm.logits_of(inputs)[:, prefix.shape[1]:]
        return F.pad(logits, (0, 0, 0, text.shape[1] - longest))

    def start(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(B, R, C)`` region features -> ``{"prefix": (B, P, d), "words": (B, 0)}``."""
        return {"prefix": self.prefix(features),
                "words": torch.zeros(features.shape[0], 0, dtype=torch.long, device=features.device)}

    def step(self, words: torch.Tensor, state: dict[str, torch.Tensor], normalise: bool = True
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(B,)`` last words -> next-word log-probabilities ``(B, V)`` (re-reading the whole sequence)."""
        lm = self.language_model
        written = torch.cat([state["words"], words.unsqueeze(1)], dim=1)
        logits = lm.logits_of(torch.cat([state["prefix"], lm.embed(written)], dim=1))[:, -1]
        return (logits.log_softmax(dim=-1) if normalise else logits), {"prefix": state["prefix"], "words": written}


class CaptionLM(_PrefixedLM):
    """A decoder-only Transformer language model of captions: ``(B, L, d)`` embeddings -> ``(B, L, V)`` logits.

    Pre-norm layers of causal self-attention and an MLP over learned token and position embeddings. As a
    captioner (``start``/``step``) it reads no image: its prefix is empty.

    Args:
        vocab_size: size of the caption vocabulary.
        dim, layers, heads: the Transformer's width, depth and attention heads.
        max_len: the longest sequence, prefix included.
    """

    def __init__(self, vocab_size: int, dim: int = 64, layers: int = 2, heads: int = 4, max_len: int = 64,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.vocab_size, self.dim, self.max_len = vocab_size, dim, max_len
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.position = nn.Parameter(torch.zeros(1, max_len, dim))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.output = nn.Linear(dim, vocab_size)

    @property
    def language_model(self) -> "CaptionLM":
        return self

    def logits_of(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Causal language model over ``(B, L, d)`` input embeddings (prefix and words) -> ``(B, L, V)``."""
        length = embeddings.shape[1]
        if length > self.max_len:
            raise ValueError(f"sequences of at most {self.max_len} positions (prefix included), got {length}; "
                             f"build the language model with a larger max_len")
        x = embeddings + self.position[:, :length]
        causal = nn.Transformer.generate_square_subsequent_mask(length, device=x.device, dtype=x.dtype)
        return self.output(self.norm(self.layers(x, mask=causal, is_causal=True)))

    def prefix(self, features: torch.Tensor) -> torch.Tensor:
        """No prefix: ``(B, 0, d)``."""
        return features.new_zeros(features.shape[0], 0, self.dim)


class PrefixCaptioner(_PrefixedLM):
    """A :class:`CaptionLM` that reads the image as a prefix: each region feature projected into its embedding space.

    Args:
        lm: the (pretrained) language model; copied, so the original stays as it is.
        features: the size ``C`` of a region feature.
        freeze_lm: keep the language model's weights fixed (only the projection learns), as ClipCap's and
            LLaVA's first stage do.
    """

    def __init__(self, lm: CaptionLM, features: int = 64, freeze_lm: bool = True) -> None:
        super().__init__()
        self.vocab_size, self.dim = lm.vocab_size, lm.dim
        self.lm = copy.deepcopy(lm).requires_grad_(not freeze_lm)
        self.freeze_lm = freeze_lm
        self.project = nn.Linear(features, lm.dim)

    @property
    def language_model(self) -> CaptionLM:
        return self.lm

    def train(self, mode: bool = True) -> "PrefixCaptioner":
        super().train(mode)
        if self.freeze_lm:
            self.lm.eval()  # a frozen language model keeps its dropout off as well
        return self

    def prefix(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, R, C)`` region features -> ``(B, R, d)`` prefix embeddings."""
        if features.ndim != 3 or features.shape[2] != self.project.in_features:
            raise ValueError(f"expected region features (B, R, {self.project.in_features}), got "
                             f"{tuple(features.shape)}; compute them with mmbook.generation.encoder.region_features")
        return self.project(features)


def pretrain_caption_lm(texts: torch.Tensor, vocab_size: int, *, epochs: int = 5, batch_size: int = 64,
                        lr: float = 3e-3, seed: int = 0, device: torch.device | str | None = None,
                        progress: bool = False, **options: Any) -> tuple[CaptionLM, dict[str, float]]:
    """Train a :class:`CaptionLM` on caption text alone: ``texts`` ``(N, K, T)`` or ``(N, T)`` token ids.

    Returns the model and ``{"lm_train_loss", "lm_seconds"}``. Runs through :func:`mmbook.training.fit`; the
    loader gives the model a dummy ``"features"`` entry of size 0 (a blind model reads no image).
    """
    from mmbook.data import DeviceLoader
    from mmbook.runtime import pick_device, seed_everything
    from mmbook.training import fit

    device = pick_device(device)
    seed_everything(seed)
    model = CaptionLM(vocab_size, **options)
    loader = DeviceLoader({"features": torch.zeros(len(texts), 1, 1), "text": texts}, batch_size, shuffle=True,
                          drop_last=True, device=device, seed=seed)
    started = time.perf_counter()
    history = fit(model, loader, epochs=epochs, lr=lr, device=device, loss_fn=caption_loss,
                  accuracy_fn=next_word_accuracy, max_grad_norm=1.0, progress=progress,
                  description="caption language model")
    return model, {"lm_train_loss": history.last["train_loss"], "lm_seconds": time.perf_counter() - started}
