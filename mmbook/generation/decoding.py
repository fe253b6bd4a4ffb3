"""Decoding: turning next-word probabilities into a caption (greedy, beam search, sampling).

A captioner gives ``p(w_t | image, w_1 .. w_{t-1})`` through ``start``/``step``
(:mod:`mmbook.generation.model`); a decoder chooses the words:

- :func:`greedy`: the most likely word at each step;
- :func:`beam_search`: keeps the ``width`` most likely prefixes, and at the end picks the finished caption
  with the best log-probability divided by ``length ** alpha`` (*length normalisation*: without it, the
  sum of log-probabilities favours short captions);
- :func:`sample`: draws each word, from probabilities sharpened or flattened by a ``temperature`` and
  cut to the smallest set of words whose probability reaches ``top_p`` (nucleus sampling, Holtzman et
  al., 2020).

Greedy decoding and beam search can also forbid a caption to repeat any ``no_repeat_ngram`` words in a row
that it has already written (*n-gram blocking*, as Paulus et al. 2018 blocked repeated trigrams in
summaries): at each step, every word that would complete an n-gram already in the caption gets
probability 0 (:func:`repeated_ngram_mask`).

Each returns one list of word ids per image, without ``<bos>`` and ``<eos>``. :func:`generate` runs one of
them over a whole set of images' region features in batches and returns strings.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mmbook.generation.references import BOS_ID, EOS_ID
from mmbook.runtime import evaluating
from mmbook.text.vocab import PAD_ID

DECODERS = ("greedy", "beam", "sample")


def _check_max_len(max_len: int) -> None:
    if not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be a positive number of words, got {max_len!r}")


def _check_beam(width: int, alpha: float, vocab_size: int) -> None:
    if not isinstance(width, int) or not 1 <= width <= vocab_size:
        raise ValueError(f"beam width must be an int from 1 to the vocabulary size {vocab_size}, got {width!r}")
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0 (0: no length normalisation), got {alpha}")


def _check_sampling(temperature: float, top_p: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 (towards 0 sampling becomes greedy), got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must lie in (0, 1], got {top_p}")


def _check_no_repeat(n: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"no_repeat_ngram must be an int >= 0 (0: no blocking; 3: no repeated three words), got {n!r}")


def repeated_ngram_mask(tokens: torch.Tensor, n: int, vocab_size: int) -> torch.Tensor:
    """Which next words would repeat an n-gram: ``tokens`` ``(B, t)`` written so far -> ``(B, V)`` bool.

    Word ``w`` is ``True`` for row ``b`` when the row's last ``n - 1`` words followed by ``w`` already occur
    as ``n`` consecutive words of the row. ``n = 1`` forbids every word already written; ``n = 0`` nothing.
    """
    _check_no_repeat(n)
    batch, written = tokens.shape
    mask = torch.zeros(batch, vocab_size, dtype=torch.bool, device=tokens.device)
    if n == 0 or written < n:  # no complete n-gram yet (n = 1 needs one written word)
        return mask
    grams = tokens.unfold(1, n, 1)  # (B, t - n + 1, n): every n-gram written
    if n > 1:
        context = tokens[:, written - n + 1 :]  # (B, n - 1): the words the next one would extend
        matches = (grams[:, :, :-1] == context.unsqueeze(1)).all(dim=2)  # (B, t - n + 1)
    else:
        matches = torch.ones(grams.shape[:2], dtype=torch.bool, device=tokens.device)
    rows = torch.arange(batch, device=tokens.device).unsqueeze(1).expand_as(matches)
    mask[rows[matches], grams[:, :, -1][matches]] = True
    return mask


def _trim(row: Sequence[int]) -> list[int]:
    """Word ids up to (not including) the first ``<eos>``, padding dropped."""
    words = []
    for word in row:
        if word == EOS_ID:
            break
        if word != PAD_ID:
            words.append(int(word))
    return words


@torch.no_grad()
def greedy(model, features: torch.Tensor, max_len: int = 30, return_attention: bool = False,
           no_repeat_ngram: int = 0):
    """The most likely next word at every step: region features ``(B, R, C)`` -> ``B`` lists of word ids.

    With ``return_attention=True`` (attention captioners) it also returns the attention weights
    ``(B, steps, R)`` of every generated word. ``no_repeat_ngram`` > 0: never repeat that many words in a row
    (:func:`repeated_ngram_mask`).
    """
    _check_max_len(max_len)
    _check_no_repeat(no_repeat_ngram)
    state = model.start(features)
    words = torch.full((features.shape[0],), BOS_ID, dtype=torch.long, device=features.device)
    done = torch.zeros_like(words, dtype=torch.bool)
    outputs, attention = [], []
    for _ in range(max_len):  # a caption that reaches max_len words is cut there
        log_probs, state = model.step(words, state)
        if no_repeat_ngram and outputs:
            log_probs = log_probs.masked_fill(
                repeated_ngram_mask(torch.stack(outputs, dim=1), no_repeat_ngram, log_probs.shape[-1]), float("-inf"))
        words = log_probs.argmax(dim=-1).masked_fill(done, PAD_ID)
        outputs.append(words)
        if return_attention and "attention" in state:
            attention.append(state["attention"])
        done = done | (words == EOS_ID)
        if bool(done.all()):
            break
    captions = [_trim(row) for row in torch.stack(outputs, dim=1).tolist()]
    if return_attention:
        if not attention:
            raise ValueError(f"{type(model).__name__} has no attention weights to return")
        return captions, torch.stack(attention, dim=1)
    return captions


@torch.no_grad()
def beam_search(model, features: torch.Tensor, width: int = 3, max_len: int = 30, alpha: float = 1.0,
                no_repeat_ngram: int = 0) -> list[list[int]]:
    """Beam search with length normalisation: region features ``(B, R, C)`` -> ``B`` lists of word ids.

    Every image keeps ``width`` prefixes (beams). At each step every beam is extended by every word, and
    the ``width`` extensions with the highest total log-probability survive; a beam that wrote ``<eos>``
    is finished and keeps its score. At the end the finished beam with the highest
    ``log p / length ** alpha`` wins (``length`` counts the words and the ``<eos>``; ``alpha=0``: no
    normalisation). ``width=1`` is greedy decoding. ``no_repeat_ngram`` > 0: no beam repeats that many words
    in a row (:func:`repeated_ngram_mask`).
    """
    _check_max_len(max_len)
    vocab_size = model.vocab_size
    _check_beam(width, alpha, vocab_size)
    _check_no_repeat(no_repeat_ngram)
    batch, device = features.shape[0], features.device
    state = {k: v.repeat_interleave(width, dim=0) for k, v in model.start(features).items()}
    scores = torch.full((batch, width), float("-inf"), device=device)
    scores[:, 0] = 0.0  # one live beam at first, so the first step does not pick the same word `width` times
    words = torch.full((batch * width,), BOS_ID, dtype=torch.long, device=device)
    tokens = torch.zeros(batch * width, 0, dtype=torch.long, device=device)
    lengths = torch.zeros(batch * width, device=device)
    done = torch.zeros(batch * width, dtype=torch.bool, device=device)
    for _ in range(max_len):
        log_probs, state = model.step(words, state)  # (B*K, V)
        if no_repeat_ngram:
            log_probs = log_probs.masked_fill(repeated_ngram_mask(tokens, no_repeat_ngram, vocab_size), float("-inf"))
        # A finished beam may only be continued by padding, at no cost: it keeps its score and its place.
        finished = torch.full_like(log_probs, float("-inf"))
        finished[:, PAD_ID] = 0.0
        log_probs = torch.where(done.unsqueeze(1), finished, log_probs)
        total = (scores.reshape(-1, 1) + log_probs).reshape(batch, width * vocab_size)
        scores, best = total.topk(width, dim=1)  # (B, K)
        beam = best // vocab_size + torch.arange(batch, device=device).unsqueeze(1) * width  # flat index of the parent
        beam, words = beam.reshape(-1), (best % vocab_size).reshape(-1)
        state = {k: v.index_select(0, beam) for k, v in state.items()}
        tokens = torch.cat([tokens.index_select(0, beam), words.unsqueeze(1)], dim=1)
        lengths = lengths.index_select(0, beam) + (~done.index_select(0, beam)).float()
        done = done.index_select(0, beam) | (words == EOS_ID)
        if bool(done.all()):
            break
    normalised = scores.reshape(-1) / lengths.clamp(min=1) ** alpha
    # Beams that never finished count only if no beam of their image did.
    normalised = torch.where(done, normalised, normalised - 1e9).reshape(batch, width)
    winner = normalised.argmax(dim=1) + torch.arange(batch, device=device) * width
    return [_trim(row) for row in tokens.index_select(0, winner).tolist()]


@torch.no_grad()
def sample(model, features: torch.Tensor, temperature: float = 1.0, top_p: float = 1.0, max_len: int = 30,
           generator: torch.Generator | None = None) -> list[list[int]]:
    """Draw every word: ``p ** (1 / temperature)``, renormalised, cut to the nucleus ``top_p``.

    ``temperature`` < 1 sharpens the distribution (towards greedy), > 1 flattens it; ``top_p`` keeps the
    most likely words until their probability reaches ``top_p`` (1: all words).
    """
    _check_max_len(max_len)
    _check_sampling(temperature, top_p)
    state = model.start(features)
    words = torch.full((features.shape[0],), BOS_ID, dtype=torch.long, device=features.device)
    done = torch.zeros_like(words, dtype=torch.bool)
    outputs = []
    for _ in range(max_len):
        log_probs, state = model.step(words, state)
        probs = (log_probs / temperature).softmax(dim=-1)
        if top_p < 1:
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            # keep a word if the words before it have not yet reached top_p (the most likely word is always kept)
            keep = (sorted_probs.cumsum(dim=-1) - sorted_probs) < top_p
            sorted_probs = sorted_probs * keep
            probs = torch.zeros_like(probs).scatter(1, order, sorted_probs)
        words = torch.multinomial(probs, 1, generator=generator).squeeze(1).masked_fill(done, PAD_ID)
        outputs.append(words)
        done = done | (words == EOS_ID)
        if bool(done.all()):
            break
    return [_trim(row) for row in torch.stack(outputs, dim=1).tolist()]


def check_decoding(method: str, vocab_size: int, options: dict | None = None) -> None:
    """Raise the error :func:`generate` would raise for ``method`` and ``options``, before anything is trained."""
    if method not in DECODERS:
        raise ValueError(f"unknown decoding method {method!r}; choose one of {', '.join(DECODERS)}")
    options = dict(options or {})
    _check_max_len(options.get("max_len", 30))
    if method == "beam":
        _check_beam(options.get("width", 3), options.get("alpha", 1.0), vocab_size)
    if method in ("greedy", "beam"):
        _check_no_repeat(options.get("no_repeat_ngram", 0))
    if method == "sample":
        if options.get("no_repeat_ngram"):
            raise ValueError("no_repeat_ngram applies to greedy decoding and beam search, not to sampling; "
                             "use method 'greedy' or 'beam', or leave no_repeat_ngram at 0")
        _check_sampling(options.get("temperature", 1.0), options.get("top_p", 1.0))


def generate(model, features: torch.Tensor, vocab, method: str = "greedy", batch_size: int = 250, seed: int = 0,
             **options) -> list[str]:
    """Captions of region features ``(N, R, C)`` (:func:`~mmbook.generation.encoder.region_features`) as strings.

    ``method`` is ``"greedy"`` (options ``max_len``, ``no_repeat_ngram``), ``"beam"`` (``width``, ``alpha``,
    ``max_len``, ``no_repeat_ngram``) or ``"sample"``
    (``temperature``, ``top_p``, ``max_len``; seeded by ``seed``). Decoded in batches of ``batch_size``.
    """
    check_decoding(method, len(vocab), options)
    if features.ndim != 3 or not features.is_floating_point():
        raise ValueError(f"expected float region features (N, R, C), got {features.dtype} {tuple(features.shape)}; "
                         f"compute them with mmbook.generation.encoder.region_features")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed) if method == "sample" else None
    captions: list[list[int]] = []
    with evaluating(model):
        for start in range(0, len(features), batch_size):
            batch = features[start : start + batch_size].to(device)
            if method == "greedy":
                captions += greedy(model, batch, **options)
            elif method == "beam":
                captions += beam_search(model, batch, **options)
            else:
                captions += sample(model, batch, generator=generator, **options)
    return [vocab.decode(words) for words in captions]
