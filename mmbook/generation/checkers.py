"""Exercise checkers of the Generation chapter: a reader's CHAIR, one step of beam search, and what a
prefix captioner over a frozen language model trains.

Each checker runs the reader's function on several cases, compares with the package's answer and, when
a case fails, names the usual mistake without giving the expected value away. It prints "All checks passed"
when every case agrees.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from mmbook.exercises import reader_call


def chair(mentioned: Sequence[set[str]], present: Sequence[set[str]]) -> tuple[float, float]:
    """CHAIR (Rohrbach et al., 2018) from the objects each caption mentions and the objects each scene holds.

    ``CHAIR_i = |mentioned objects not in the scene| / |mentioned objects|`` summed over captions (each
    caption's mentioned objects as a set); ``CHAIR_s`` = share of captions with at least one such object.
    Returns ``(chair_i, chair_s)``; ``chair_i`` is NaN when no caption mentions anything.
    """
    if len(mentioned) != len(present):
        raise ValueError(f"got {len(mentioned)} captions for {len(present)} scenes; give one set of each per caption")
    if not mentioned:
        raise ValueError("no captions to score")
    hallucinated = [set(m) - set(p) for m, p in zip(mentioned, present)]
    total = sum(len(set(m)) for m in mentioned)
    chair_i = sum(len(h) for h in hallucinated) / total if total else float("nan")
    chair_s = sum(bool(h) for h in hallucinated) / len(mentioned)
    return chair_i, chair_s


def check_chair(fn: Callable[[Sequence[set[str]], Sequence[set[str]]], tuple[float, float]]) -> None:
    """Check a reader's ``fn(mentioned, present) -> (chair_i, chair_s)`` against :func:`chair`."""
    if not callable(fn):
        raise TypeError(f"check_chair expects a function, got {type(fn).__name__}")
    cases = [
        ("one caption, one object of two made up", [{"cat", "dog"}], [{"cat", "truck"}]),
        ("two captions, one clean", [{"cat"}, {"ship", "frog"}], [{"cat"}, {"ship"}]),
        ("recall is not CHAIR: a scene with objects no caption names", [{"cat"}, {"deer"}],
         [{"cat", "dog", "truck"}, {"horse"}]),
        ("captions that mention several objects", [{"cat", "dog", "bird"}, {"ship"}], [{"cat"}, {"ship", "truck"}]),
    ]
    for name, mentioned, present in cases:
        expected = chair(mentioned, present)
        got = reader_call(fn, name, [set(m) for m in mentioned], [set(p) for p in present])
        if not isinstance(got, tuple) or len(got) != 2:
            raise AssertionError(f"{name}: expected a pair (chair_i, chair_s), got {got!r}")
        chair_i, chair_s = (float(v) for v in got)
        if abs(chair_i - expected[0]) > 1e-9:
            hallucinated = sum(len(m - p) for m, p in zip(mentioned, present))
            hint = ""
            if abs(chair_i - hallucinated / sum(len(p) for p in present)) < 1e-9:
                hint = ": you divided by the objects in the scenes; CHAIR_i divides by the objects the captions mention"
            elif abs(chair_i - expected[1]) < 1e-9:
                hint = ": that is CHAIR_s (captions with a made-up object); CHAIR_i counts objects"
            raise AssertionError(f"{name}: your CHAIR_i, {chair_i:.4f}, is not right{hint or ': count, over all captions, the distinct objects each caption names that its scene lacks, and divide by all distinct objects named'}")
        if abs(chair_s - expected[1]) > 1e-9:
            raise AssertionError(f"{name}: your CHAIR_s, {chair_s:.4f}, is not right: it is the share of captions "
                                 f"with at least one object that is not in the scene")
    print("All checks passed")


def beam_step(scores: torch.Tensor, log_probs: torch.Tensor, width: int
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of beam search for one image: ``scores (K,)`` of the live beams and their next-word
    ``log_probs (K, V)`` -> the ``width`` best extensions' ``(new_scores (width,), parent (width,), word (width,))``,
    best first."""
    total = (scores.unsqueeze(1) + log_probs).flatten()
    new_scores, best = total.topk(width)
    return new_scores, best // log_probs.shape[1], best % log_probs.shape[1]


def check_beam_step(fn: Callable[[torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
                    ) -> None:
    """Check a reader's ``fn(scores (K,), log_probs (K, V), width) -> (new_scores, parent, word)`` against :func:`beam_step`."""
    if not callable(fn):
        raise TypeError(f"check_beam_step expects a function, got {type(fn).__name__}")
    generator = torch.Generator().manual_seed(0)
    for beams, vocab, width in ((1, 5, 3), (3, 7, 3), (4, 6, 2), (2, 10, 5)):
        scores = -torch.rand(beams, generator=generator).sort(descending=True).values * 3
        log_probs = torch.randn(beams, vocab, generator=generator).log_softmax(dim=-1)
        expected = beam_step(scores, log_probs, width)
        name = f"{beams} beams, {vocab} words, width {width}"
        got = reader_call(fn, name, scores.clone(), log_probs.clone(), width)
        if not isinstance(got, tuple) or len(got) != 3:
            raise AssertionError(f"{name}: expected (new_scores, parent, word), got {type(got).__name__}")
        new_scores, parent, word = (torch.as_tensor(v) for v in got)
        if new_scores.shape != (width,):
            raise AssertionError(f"{name}: expected {width} new scores, got shape {tuple(new_scores.shape)}: keep the "
                                 f"{width} best extensions overall, which may all come from one beam")
        if not torch.allclose(new_scores.float(), expected[0], atol=1e-6):
            best_per_beam = (scores.unsqueeze(1) + log_probs).max(dim=1).values.sort(descending=True).values[:width]
            hint = ""
            if beams >= width and torch.allclose(new_scores.float(), best_per_beam, atol=1e-6):
                hint = ": you kept the best word of each beam; the best extensions may all come from one beam"
            elif torch.allclose(new_scores.float(), log_probs.flatten().topk(width).values, atol=1e-6):
                hint = ": add each beam's score so far to its words' log-probabilities"
            raise AssertionError(f"{name}: your new scores are not the {width} best extensions, best first"
                                 f"{hint or ': extend every beam by every word, add the log-probabilities, keep the top ones'}")
        if not (torch.equal(parent.long(), expected[1]) and torch.equal(word.long(), expected[2])):
            raise AssertionError(f"{name}: the scores are right but parent/word are not: a flat index i over the "
                                 f"(K, V) table is beam i // V, word i % V")
    print("All checks passed")


def prefix_trainable_parameters(features: int, dim: int) -> int:
    """Trainable parameters of a :class:`~mmbook.generation.prefix.PrefixCaptioner` over a frozen language
    model of width ``dim``, for region features of size ``features``: the linear projection's weights and bias."""
    return features * dim + dim


def check_prefix_parameters(fn: Callable[[int, int], int]) -> None:
    """Check a reader's ``fn(features, dim) -> int``, the trainable parameters of a prefix captioner whose
    language model is frozen, against the count of a built :class:`~mmbook.generation.prefix.PrefixCaptioner`."""
    from mmbook.generation.prefix import CaptionLM, PrefixCaptioner

    if not callable(fn):
        raise TypeError(f"check_prefix_parameters expects a function, got {type(fn).__name__}")
    for features, dim in ((64, 32), (16, 48), (100, 8)):
        model = PrefixCaptioner(CaptionLM(vocab_size=20, dim=dim, layers=1, heads=4 if dim % 4 == 0 else 1),
                                features=features, freeze_lm=True)
        expected = sum(p.numel() for p in model.parameters() if p.requires_grad)
        name = f"region features of {features}, a language model of width {dim}"
        got = reader_call(fn, name, features, dim)
        if not isinstance(got, int) or isinstance(got, bool):
            raise AssertionError(f"{name}: expected a whole number of parameters, got {type(got).__name__}")
        if got == expected:
            continue
        if got == features * dim:
            hint = ": the projection has a bias as well"
        elif got > 10 * expected:
            hint = ": count only what learns; the frozen language model's weights do not"
        elif got == features * features + features or got == dim * dim + dim:
            hint = ": the projection maps a region feature (its input size) to the language model's width"
        else:
            hint = ": one linear layer from a region feature to a word embedding, weights and bias"
        raise AssertionError(f"{name}: your count, {got}, is not the number of trainable parameters{hint}")
    print("All checks passed")
