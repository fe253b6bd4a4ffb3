"""Checkers for the exercises of ch09, objectives (``ex-obj-*``; IoU and entity F1 are in
:mod:`mmbook.objectives.checks`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mmbook.exercises import _call, _fail, check_choice, check_value


def check_ece_by_hand(answer: Any) -> None:
    """ex-obj-ece-blind-spot: the ECE of the exercise's six predictions with 2 bins."""
    import torch

    from mmbook.objectives.calibration import expected_calibration_error

    confidences = torch.tensor([0.95, 0.9, 0.9, 0.6, 0.55, 0.52])
    right = torch.tensor([1, 1, 0, 1, 0, 0])
    probabilities = torch.stack([confidences, 1 - confidences], dim=1)
    labels = torch.where(right.bool(), 0, 1)
    expected = expected_calibration_error(probabilities, labels, bins=2)
    check_value(answer, expected, tol=1e-3, name="your ECE",
                hint="put each prediction in its confidence bin, take |accuracy - mean confidence| in each bin, and "
                     "weight each bin by its share of the predictions",
                wrong={right.float().mean().item(): "that is the accuracy; ECE is |accuracy - mean confidence| per bin, "
                                                    "weighted",
                       confidences.mean().item(): "that is the mean confidence; subtract it from the accuracy of the bin",
                       -expected: "ECE takes the absolute gap between accuracy and confidence: it is never negative",
                       expected / 2: "weight each bin by its share of the predictions (an empty bin adds nothing); "
                                     "do not average the bins"})


def check_nms(function: Callable) -> None:
    """ex-obj-nms: ``function(boxes (N, 4), scores (N,), iou_threshold) -> kept indices, best first``."""
    import torch
    from torchvision.ops import nms

    generator = torch.Generator().manual_seed(1)
    corners = torch.rand(60, 2, generator=generator) * 50
    boxes = torch.cat([corners, corners + torch.rand(60, 2, generator=generator) * 20 + 1], dim=1)
    scores = torch.rand(60, generator=generator)
    for threshold in (0.5, 0.3):
        expected = nms(boxes, scores, threshold)
        got = _call(function, f"your NMS at threshold {threshold}", boxes.clone(), scores.clone(), threshold)
        try:
            got = torch.as_tensor(got).long().flatten()
        except (TypeError, ValueError, RuntimeError):
            _fail(f"at threshold {threshold} your NMS returned {type(got).__name__}",
                  "return the indices of the kept boxes (a tensor or a list of ints), best first")
        if torch.equal(got, expected):
            continue
        if set(got.tolist()) == set(expected.tolist()):
            _fail(f"at threshold {threshold} the right boxes are kept but in the wrong order",
                  "return them best (highest score) first")
        if len(got) > len(expected):
            _fail(f"at threshold {threshold} you keep {len(got)} box{'es' * (len(got) != 1)}, too many",
                  "after keeping the best box, drop every remaining box whose IoU with it is above the threshold")
        if len(got) < len(expected):
            _fail(f"at threshold {threshold} you keep {len(got)} box{'es' * (len(got) != 1)}, too few",
                  "compare IoU with the kept box only (not with every box), drop a box only when its IoU is above "
                  "the threshold, and visit boxes by decreasing score")
        _fail(f"at threshold {threshold} you keep the right number of boxes, but not the right ones",
              "visit the boxes by decreasing score and compare each only with the boxes kept so far")


#: The choices offered for ex-obj-shuffled-expressions.
SHUFFLED_EXPRESSION_CHOICES = ("about the fused model's accuracy", "about the image-only model's accuracy", "zero")


def check_shuffled_expectation(answer: Any) -> None:
    """ex-obj-shuffled-expressions: the accuracy to expect with another scene's expression (a choice)."""
    # The same hint for both wrong options: their explanations, read together, give the answer.
    check_choice(answer, SHUFFLED_EXPRESSION_CHOICES[1], SHUFFLED_EXPRESSION_CHOICES, name="your expectation",
                 hint="ask what the fused model can still use when the expression belongs to another scene, and what "
                      "it can no longer use; then which model that leaves it comparable to")
