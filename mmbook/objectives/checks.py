"""Checkers for the objectives chapter's exercises: run the reader's function against the reference."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchvision.ops import box_iou

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
    cases = {
        "identical boxes (IoU 1)": (torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[0.0, 0, 10, 10]])),
        "disjoint boxes (IoU 0)": (torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[20.0, 20, 30, 30]])),
        "boxes that touch along an edge (IoU 0)": (torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[10.0, 0, 20, 10]])),
        "half overlap (IoU 1/3)": (torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[5.0, 0, 15, 10]])),
        "a box inside another (IoU 1/4)": (torch.tensor([[0.0, 0, 20, 20]]), torch.tensor([[5.0, 5, 15, 15]])),
        "random boxes, all pairs (20 x 20)": (random_boxes, random_boxes.flip(0)),
    }
    for name, (a, b) in cases.items():
        expected = box_iou(a, b)
        try:
            got = fn(a.clone(), b.clone())
        except Exception as error:  # report the case that crashed
            raise AssertionError(f"{name}: your function raised {error.__class__.__name__}: {error}") from error
        if not isinstance(got, torch.Tensor):
            raise AssertionError(f"{name}: expected a tensor of shape {tuple(expected.shape)}, got {type(got).__name__}")
        if got.shape != expected.shape:
            raise AssertionError(f"{name}: expected shape {tuple(expected.shape)} (one IoU per pair), got {tuple(got.shape)}")
        if not torch.allclose(got.float(), expected, atol=1e-5):
            worst = (got.float() - expected).abs().argmax()
            raise AssertionError(f"{name}: expected {expected.flatten()[worst]:.4f}, got {got.flatten()[worst].item():.4f} "
                                 f"(hint: clamp the intersection's width and height at 0)")
    print("All checks passed")


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
        try:
            got = fn(truth, guess)
        except Exception as error:
            raise AssertionError(f"{name}: your function raised {error.__class__.__name__}: {error}") from error
        if abs(float(got) - expected) > 1e-6:
            raise AssertionError(f"{name}: true {truth}, predicted {guess}: expected F1 {expected:.4f}, got {float(got):.4f}")
    print("All checks passed")
