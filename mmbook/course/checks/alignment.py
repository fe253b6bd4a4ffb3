"""Checkers for the exercises of ch06, alignment (``ex-align-*``; InfoNCE and recall@k are in
:mod:`mmbook.alignment.checkers`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mmbook.exercises import _call, _tensor_close, check_choice


def check_confusion_matrix(function: Callable) -> None:
    """ex-align-confusion: ``function(labels (N,), predicted (N,), num_classes) -> (C, C)`` counts,
    rows the true class, columns the predicted one."""
    import torch

    labels = torch.tensor([0, 0, 1, 2, 2, 2, 1, 0])
    predicted = torch.tensor([0, 1, 1, 2, 0, 2, 2, 0])
    expected = torch.zeros(3, 3, dtype=torch.long)
    expected.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
    got = _call(function, "your confusion matrix", labels.clone(), predicted.clone(), 3)
    _tensor_close(got, expected, "the confusion matrix", exact=True,
                  hint="entry [i, j] counts the samples of true class i predicted as class j", hints=[
        (expected.T, "rows are the true classes, columns the predicted ones"),
        ((expected > 0).long(), "count every prediction: use index_put_ with accumulate=True (or bincount)")])


#: The choices offered for ex-align-cone.
CONE_CHOICES = ("the gap is there before training: each random tower maps into a cone of its own",
                "the contrastive loss creates the gap during training",
                "the gap comes from the difference between images and text")


def check_cone_conclusion(answer: Any) -> None:
    """ex-align-cone: what the gap between two random image towers shows (a choice)."""
    # The same hint for both wrong options: each one's refutation points straight at the answer.
    check_choice(answer, CONE_CHOICES[0], CONE_CHOICES, name="your conclusion",
                 hint="look again at how this experiment was set up: what kind of data each of the two clouds holds, "
                      "and what had happened to the towers that embedded them")
