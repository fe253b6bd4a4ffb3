"""Captioners and decoding: shapes, teacher forcing against step-by-step decoding, beam search against greedy."""

from __future__ import annotations

import math

import pytest
import torch

from mmbook.generation.decoding import beam_search, generate, greedy, repeated_ngram_mask, sample
from mmbook.generation.model import CAPTIONERS, build_captioner, caption_loss, next_word_accuracy
from mmbook.generation.references import BOS_ID, EOS_ID

A, B = 4, 5  # the toy model's two words (ids 0-3 are <pad>, <unk>, <bos>, <eos>)


class ToyChain(torch.nn.Module):
    """A fixed next-word distribution that depends on the last word only, so the best caption is known.

    After <bos>: "a" 0.6, "b" 0.4. After "a": <eos> 0.34, "a" 0.33, "b" 0.33. After "b": <eos> 0.99.
    Greedy writes "a" (p = 0.6 * 0.34 = 0.204); the best caption is "b" (p = 0.4 * 0.99 = 0.396).
    """

    vocab_size = 6

    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        table = torch.full((6, 6), 1e-9)
        table[BOS_ID, A], table[BOS_ID, B] = 0.6, 0.4
        table[A, EOS_ID], table[A, A], table[A, B] = 0.34, 0.33, 0.33
        table[B, EOS_ID], table[B, A] = 0.99, 0.01
        table[EOS_ID, EOS_ID] = table[0, 0] = table[1, EOS_ID] = 1.0
        self.register_buffer("table", (table / table.sum(1, keepdim=True)).log())

    def start(self, features):
        return {"steps": torch.zeros(features.shape[0], device=features.device)}

    def step(self, words, state, normalise=True):
        return self.table[words], {"steps": state["steps"] + 1}


def images(n: int = 2) -> torch.Tensor:
    """Region features of ``n`` images, as :func:`mmbook.generation.encoder.region_features` gives them."""
    return torch.randn(n, 16, 64)


def test_beam_search_finds_the_caption_greedy_misses():
    model = ToyChain()
    assert greedy(model, images()) == [[A], [A]]
    assert beam_search(model, images(), width=1, alpha=0.0) == [[A], [A]]
    assert beam_search(model, images(), width=2, alpha=0.0) == [[B], [B]]


def test_length_normalisation_changes_the_winner():
    """Without normalisation the short "a" wins (p 0.55 against 0.45); per token, "b b b" wins."""

    class Chain(ToyChain):
        def step(self, words, state, normalise=True):
            log_probs = torch.full((len(words), 6), -30.0)
            first = words == BOS_ID
            log_probs[first, A], log_probs[first, B] = math.log(0.55), math.log(0.45)
            log_probs[words == A, EOS_ID] = 0.0
            late = state["steps"] >= 3
            log_probs[(words == B) & ~late, B] = 0.0
            log_probs[(words == B) & late, EOS_ID] = 0.0
            log_probs[words == EOS_ID, EOS_ID] = 0.0
            return log_probs, {"steps": state["steps"] + 1}

    model = Chain()
    assert beam_search(model, images(1), width=2, alpha=0.0) == [[A]]  # log 0.55 > log 0.45
    assert beam_search(model, images(1), width=2, alpha=1.0) == [[B, B, B]]  # log 0.45 / 4 > log 0.55 / 2
    assert greedy(model, images(1)) == [[A]]


def test_sampling_at_low_temperature_or_small_nucleus_is_greedy():
    model = ToyChain()
    generator = torch.Generator().manual_seed(0)
    assert sample(model, images(8), temperature=1e-3, generator=generator) == [[A]] * 8
    assert sample(model, images(8), top_p=0.01, generator=generator) == [[A]] * 8
    drawn = sample(model, images(400), generator=torch.Generator().manual_seed(1))
    share_b = sum(caption[:1] == [B] for caption in drawn) / len(drawn)
    assert abs(share_b - 0.4) < 0.08  # p("b" first) = 0.4


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_repeated_ngram_mask_matches_a_loop(n):
    tokens = torch.randint(4, 7, (40, 12), generator=torch.Generator().manual_seed(n))  # 3 words: repeats are common
    mask = repeated_ngram_mask(tokens, n, 9)
    for row, words in zip(mask.tolist(), tokens.tolist()):
        written = {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}
        context = tuple(words[len(words) - n + 1 :]) if n > 1 else ()
        assert row == [context + (w,) in written for w in range(9)]
    assert mask.any(), "random rows of three words must repeat some n-gram"
    assert not repeated_ngram_mask(tokens, 0, 9).any()
    assert not repeated_ngram_mask(tokens[:, : n - 1], n, 9).any()  # fewer than n words: nothing to repeat


class Looping(ToyChain):
    """After "a": "b" 0.6, <eos> 0.3, "a" 0.1; after "b": "a" 0.6, <eos> 0.4. Greedy loops "a b a b ..."."""

    def __init__(self) -> None:
        super().__init__()
        table = torch.full((6, 6), 1e-9)
        table[BOS_ID, A] = 1.0
        table[A, B], table[A, EOS_ID], table[A, A] = 0.6, 0.3, 0.1
        table[B, A], table[B, EOS_ID] = 0.6, 0.4
        table[EOS_ID, EOS_ID] = table[0, 0] = table[1, EOS_ID] = 1.0
        self.table = (table / table.sum(1, keepdim=True)).log()


def test_ngram_blocking_stops_a_loop():
    model = Looping()
    assert greedy(model, images(1), max_len=8) == [[A, B] * 4]
    # "a b a", then "b" would write "a b" again: the next best word after "a" is <eos>
    assert greedy(model, images(2), max_len=8, no_repeat_ngram=2) == [[A, B, A]] * 2
    assert greedy(model, images(1), max_len=8, no_repeat_ngram=3) == [[A, B, A, B]]
    for caption in beam_search(model, images(2), width=3, max_len=8, no_repeat_ngram=2):
        bigrams = list(zip(caption, caption[1:]))
        assert len(bigrams) == len(set(bigrams)) and caption
    assert beam_search(model, images(1), width=1, max_len=8, no_repeat_ngram=2) == [[A, B, A]]


@pytest.mark.parametrize("call, message", [
    (lambda m: greedy(m, images(), no_repeat_ngram=-1), "no_repeat_ngram"),
    (lambda m: beam_search(m, images(), no_repeat_ngram=1.5), "no_repeat_ngram"),
    (lambda m: beam_search(m, images(), width=0), "beam width"),
    (lambda m: beam_search(m, images(), width=7), "beam width"),
    (lambda m: sample(m, images(), top_p=0.0), "top_p"),
    (lambda m: sample(m, images(), top_p=1.5), "top_p"),
    (lambda m: sample(m, images(), temperature=0.0), "temperature"),
    (lambda m: greedy(m, images(), max_len=0), "max_len"),
    (lambda m: beam_search(m, images(), max_len=0), "max_len"),
])
def test_bad_decoding_settings_are_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call(ToyChain())


def test_generate_checks_the_features_and_method():
    from mmbook.generation.references import generation_vocabulary

    model = build_captioner("global", len(generation_vocabulary()))
    with pytest.raises(ValueError, match="region features"):
        generate(model, torch.zeros(2, 3, 64, 64, dtype=torch.uint8), generation_vocabulary())
    with pytest.raises(ValueError, match="decoding method"):
        generate(model, images(2), generation_vocabulary(), method="nucleus")
    with pytest.raises(ValueError, match="region features"):
        model({"features": torch.randn(2, 64, 64), "text": torch.ones(2, 5, dtype=torch.long)})
    captions = generate(model, images(3), generation_vocabulary(), method="beam", width=2, max_len=5)
    assert len(captions) == 3 and all(len(c.split()) <= 5 for c in captions)


def _batch(vocab_size: int, batch: int = 3, length: int = 7) -> dict[str, torch.Tensor]:
    text = torch.randint(4, vocab_size, (batch, length))
    text[:, 0] = BOS_ID
    text[0, 4] = EOS_ID
    text[0, 5:] = 0
    return {"features": images(batch), "text": text}


@pytest.mark.parametrize("kind", CAPTIONERS)
def test_teacher_forcing_matches_step_by_step_decoding(kind):
    """``forward`` (all positions, shorter captions dropped from later steps) and ``step`` (one word at a time)
    give the same next-word distributions wherever there is a word to predict."""
    torch.manual_seed(0)
    model = build_captioner(kind, 20).eval()
    batch = _batch(20)
    with torch.no_grad():
        logits = model(batch)
        assert logits.shape == (3, 6, 20)
        state = model.start(batch["features"])
        for t in range(6):
            log_probs, state = model.step(batch["text"][:, t], state)
            real = batch["text"][:, t + 1] != 0  # positions that predict padding are left at 0 (the loss ignores them)
            torch.testing.assert_close(log_probs[real], logits[real, t].log_softmax(-1), atol=1e-5, rtol=1e-4)


def test_the_blind_model_ignores_the_image_and_the_others_do_not():
    torch.manual_seed(0)
    batch = _batch(20)
    other = dict(batch, features=images(3))
    for kind in CAPTIONERS:
        model = build_captioner(kind, 20).eval()
        with torch.no_grad():
            same = torch.allclose(model(batch), model(other))
        assert same == (kind == "blind"), kind


def test_caption_loss_ignores_padding_and_counts_only_real_words():
    batch = _batch(20)
    logits = torch.randn(3, 6, 20)
    padded = logits.clone()
    padded[0, 4:] = 100.0  # positions predicting padding: must not matter
    assert torch.isclose(caption_loss(logits, batch), caption_loss(padded, batch))
    correct, counted = next_word_accuracy(logits, batch)
    assert counted == 3 * 6 - 2 and 0 <= int(correct) <= counted
    assert math.isfinite(float(caption_loss(logits, batch)))


def test_unknown_captioner_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown captioner"):
        build_captioner("lstm", 10)
