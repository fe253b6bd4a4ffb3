"""Checkers for the exercises of ch10, the worked example (``ex-worked-*``), and ch11, your own data (``ex-own-*``)."""

from __future__ import annotations

from collections.abc import Callable

from mmbook.exercises import _call, check_value


def check_concat_head_cost(function: Callable) -> None:
    """ex-worked-concat-cost: ``function(sizes) -> int``, the parameters of ``ClassifierHead(sum(sizes))``."""
    from mmbook.multimodal import ClassifierHead

    for sizes in ([10, 10], [84, 84], [512, 512, 512]):
        expected = sum(p.numel() for p in ClassifierHead(sum(sizes)).parameters())
        check_value(_call(function, f"your function for {sizes}", list(sizes)), expected, tol=0.5,
                    name=f"the head's parameters for {sizes}",
                    hint="add the weights and biases of Linear(sum(sizes), 128) and Linear(128, 10)",
                    wrong={sum(sizes) * 128 + 128 * 10: "count the biases, one per output unit in both layers",
                           sizes[0] * 128 + 128 + 128 * 10 + 10: "the head takes all the features: sum(sizes) inputs"})


def check_majority_baseline(function: Callable) -> None:
    """ex-own-majority: ``function(train_labels (N,), test_labels (M,)) -> float``, the test accuracy of
    always answering the most common *training* label."""
    import torch

    train = torch.tensor([2, 2, 2, 0, 1, 1])
    test = torch.tensor([0, 1, 1, 1, 2, 0, 0, 2])
    expected = float((test == 2).float().mean())
    got = _call(function, "your majority baseline", train.clone(), test.clone())
    check_value(got, expected, tol=1e-6, name="the majority baseline on a small example", wrong={
        float((test == 0).float().mean()): "take the most common label of the *training* labels; the test labels "
                                             "are what the baseline is scored on, not what it may look at",
        float((test == 1).float().mean()): "take the most common label of the *training* labels; the test labels "
                                             "are what the baseline is scored on, not what it may look at",
        float((train == 2).float().mean()): "score the constant answer on the test labels, not on the training "
                                              "labels",
        float((test == 2).sum()): "return the share of test labels that match (a mean), not their number"})
