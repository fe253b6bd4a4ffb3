"""Checkers for the objectives chapter's exercises: run the reader's function against the reference."""

from __future__ import annotations

import math

from collections.abc import Callable

import torch
from torchvision.ops import box_iou

from mmbook.exercises import reader_call
from mmbook.objectives.tagging import entity_scores


def check_iou(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check a reader's pairwise IoU ``fn(boxes_a (N, 4), boxes_b (M, 4)) -> (N, M)`` against ``torchvision.ops.box_iou``.

    Boxes are ``(x1, y1, x2, y2)``. Cases: identical boxes, disjoint boxes, boxes that only
    touch, one box inside another, and random boxes. Raises ``AssertionError`` with a
    description of the first failing case; prints "All checks passed" otherwise.
    """
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(20, 2, generator=generator) * 50
    sizes = torch.rand(20, 2, generator=generator) * 20 + 1
    random_boxes = torch.cat([corners, corners + sizes], dim=1)
    # The case names describe the boxes, not their IoU: the message must not give the expected value away.
    cases = {
        "identical boxes": (torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[0.0, 0, 10, 10]])),
        "disjoint boxes": (torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[20.0, 20, 30, 30]])),
        "boxes that touch along an edge": (torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[10.0, 0, 20, 10]])),
        "half of one box overlaps the other": (torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[5.0, 0, 15, 10]])),
        "a box inside another": (torch.tensor([[0.0, 0, 20, 20]]), torch.tensor([[5.0, 5, 15, 15]])),
        "random boxes, all pairs": (random_boxes, random_boxes.flip(0)),
    }
    for name, (a, b) in cases.items():
        expected = box_iou(a, b)
        got = reader_call(fn, name, a.clone(), b.clone())
        if not isinstance(got, torch.Tensor):
            raise AssertionError(f"{name}: expected a tensor of shape {tuple(expected.shape)} (N, M), "
                                 f"got {type(got).__name__}")
        if got.shape != expected.shape:
            raise AssertionError(f"{name}: expected shape {tuple(expected.shape)} (one IoU per pair, (N, M)), "
                                 f"got {tuple(got.shape)}")
        if not torch.allclose(got.float(), expected, atol=1e-5):
            worst = (got.float() - expected).abs().argmax()
            value = got.flatten()[worst].item()
            if value != value:  # NaN
                raise AssertionError(f"{name}: your IoU for one pair is nan{_iou_hint(a, b, got.float())}")
            raise AssertionError(f"{name}: your IoU for one pair is {value:.4f}, which is "
                                 f"{'too small' if value < expected.flatten()[worst] else 'too large'}"
                                 f"{_iou_hint(a, b, got.float())}")
    print("All checks passed")


def _iou_hint(a: torch.Tensor, b: torch.Tensor, got: torch.Tensor) -> str:
    """The usual IoU mistake that ``got`` matches, as a hint (never the expected value)."""
    top_left = torch.max(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.min(a[:, None, 2:], b[None, :, 2:])
    area_a, area_b = (a[:, 2:] - a[:, :2]).prod(dim=1), (b[:, 2:] - b[:, :2]).prod(dim=1)
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    pixels = (bottom_right - top_left + 1).clamp(min=0).prod(dim=2)
    mistakes = [
        ((bottom_right - top_left).prod(dim=2) / (area_a[:, None] + area_b[None, :] - (bottom_right - top_left).prod(dim=2)),
         "two disjoint boxes get a negative width and height, whose product is positive: clamp them at 0"),
        (inter / (area_a[:, None] + area_b[None, :]), "the union counts the intersection once: subtract it from the "
                                                       "sum of the two areas"),
        (inter / area_a[:, None].expand_as(inter), "divide by the union of the two boxes, not by one box's area"),
        (pixels / ((a[:, 2:] - a[:, :2] + 1).prod(dim=1)[:, None] + (b[:, 2:] - b[:, :2] + 1).prod(dim=1)[None, :]
                   - pixels), "the boxes are continuous (x1, y1, x2, y2): a box's width is x2 - x1, with no + 1"),
    ]
    if bool(got.isnan().any()):
        return " (hint: a division by zero gave NaN: is the union ever 0 in your code?)"
    for wrong, hint in mistakes:
        if wrong.shape == got.shape and torch.allclose(got, wrong.float(), atol=1e-5):
            return f" (hint: {hint})"
    return " (hint: intersection = the overlap's width times height, each clamped at 0; union = area_a + area_b - intersection)"


def _span_f1(true_spans: set, predicted_spans: set) -> float:
    correct = len(true_spans & predicted_spans)
    precision = correct / len(predicted_spans) if predicted_spans else 0.0
    recall = correct / len(true_spans) if true_spans else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _spans_after_b(tags: list[str]) -> set[tuple[str, int, int]]:
    """Spans when only a B- tag may start an entity (the mistake: seqeval starts one at a stray I- too)."""
    spans, kind, start = set(), None, 0
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, tag_kind = tag.partition("-")
        if kind is not None and not (prefix == "I" and tag_kind == kind):
            spans.add((kind, start, i))
            kind = None
        if prefix == "B":
            kind, start = tag_kind, i
    return spans


def _f1_hint(truth: list[list[str]], guess: list[list[str]], got: float) -> str:
    """The usual entity-F1 mistake that ``got`` matches, as a hint (never the expected value)."""
    from mmbook.objectives.tagging import bio_spans

    def pooled(spans_of: Callable, typed: bool = True) -> tuple[set, set]:
        def collect(sentences: list[list[str]]) -> set:
            return {(n, *(span if typed else span[1:])) for n, tags in enumerate(sentences) for span in spans_of(tags)}
        return collect(truth), collect(guess)

    pairs = [(a, b) for t, g in zip(truth, guess) for a, b in zip(t, g) if a != "O" or b != "O"]
    true_tokens = {(n, i, tag) for n, tags in enumerate(truth) for i, tag in enumerate(tags) if tag != "O"}
    guess_tokens = {(n, i, tag) for n, tags in enumerate(guess) for i, tag in enumerate(tags) if tag != "O"}
    per_sentence = [_span_f1(set(bio_spans(t)), set(bio_spans(g))) for t, g in zip(truth, guess)]
    # The specific mistakes first: each gives the right F1 unless the case holds what it gets wrong.
    mistakes = [
        (_span_f1(*pooled(bio_spans, typed=False)), "an entity counts only if its type matches too, not only its "
                                                    "start and end"),
        (_span_f1(*pooled(_spans_after_b)), "an I- tag without a B- before it starts an entity, as in seqeval"),
        (sum(per_sentence) / len(per_sentence), "micro-average: pool the entities of all sentences, then compute "
                                                "precision and recall once"),
        (sum(a == b for a, b in pairs) / max(len(pairs), 1), "that is a token-level score; F1 counts whole "
                                                                "entities, each matched exactly"),
        (_span_f1(true_tokens, guess_tokens), "that is F1 over tagged words; F1 counts whole entities, each matched "
                                              "exactly"),
    ]
    for value, hint in mistakes:
        if abs(got - value) <= 1e-6:
            return f" (hint: {hint})"
    return (" (hint: collect each sentence's entities (type, start, end) from the BIO tags, count the exact matches, "
            "and compute F1 from precision and recall over all sentences)")


def check_entity_f1(fn: Callable[[list[list[str]], list[list[str]]], float]) -> None:
    """Check a reader's entity-level F1 ``fn(true_tags, predicted_tags) -> float`` (seqeval-style, micro-averaged).

    Raises ``AssertionError`` naming the first failing case; prints "All checks passed" otherwise.
    """
    cases = {
        "a perfect prediction": ([["B-LEFT", "I-LEFT", "O", "B-REL"]], [["B-LEFT", "I-LEFT", "O", "B-REL"]]),
        "a span one word too short is wrong": ([["B-LEFT", "I-LEFT", "O"]], [["B-LEFT", "O", "O"]]),
        "the right span with the wrong type is wrong": ([["O", "B-LEFT", "O"]], [["O", "B-RIGHT", "O"]]),
        "an I- tag without a B- starts an entity": ([["O", "B-ABSENT", "O"]], [["O", "I-ABSENT", "O"]]),
        "nothing predicted": ([["B-LOC", "I-LOC"]], [["O", "O"]]),
        "two sentences, micro-averaged": ([["B-LEFT", "O", "B-RIGHT"], ["B-ABSENT", "I-ABSENT", "B-REL"]],
                                          [["B-LEFT", "O", "B-LEFT"], ["B-ABSENT", "I-ABSENT", "O"]]),
    }
    for name, (truth, guess) in cases.items():
        expected = entity_scores(truth, guess)["f1"]
        got = reader_call(fn, name, truth, guess)
        try:
            value = float(got)
        except (TypeError, ValueError):
            raise AssertionError(f"{name}: your function should return a number (the F1), got {type(got).__name__}") from None
        if not math.isfinite(value):
            raise AssertionError(f"{name}: true {truth}, predicted {guess}: your F1 is {value}; an F1 is a number "
                                 "in [0, 1] (when there are no entities at all, decide what 0/0 should give)")
        if abs(value - expected) > 1e-6:
            raise AssertionError(f"{name}: true {truth}, predicted {guess}: your F1, {value:.4f}, is "
                                 f"{'lower' if value < expected else 'higher'} than the expected F1"
                                 f"{_f1_hint(truth, guess, value)}")
    print("All checks passed")
