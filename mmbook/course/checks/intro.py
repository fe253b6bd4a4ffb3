"""Checkers for the exercises of the Foundations chapters: ch01 (What is multimodal?, ``ex-intro-*``) and
ch02 (Core concepts, ``ex-concepts-*``)."""

from __future__ import annotations

from collections.abc import Callable

from mmbook.exercises import _call, _fail, _tensor_close, check_value
from mmbook.results import t_975  # indexed by the number of values (seeds), as in the chapter


def check_confidence_interval(function: Callable) -> None:
    """ex-intro-seeds: ``function(differences (n,)) -> (low, high)``, the 95% t-interval of the mean."""
    import torch

    for values in ([0.012, -0.004, 0.020], [0.01, 0.03, -0.02, 0.00, 0.015]):
        differences = torch.tensor(values, dtype=torch.float64)
        n = len(values)
        mean, std = differences.mean().item(), differences.std().item()  # std: sample (n - 1)
        half = t_975(n) * std / n ** 0.5
        got = _call(function, f"your function on {values}", differences.clone())
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            _fail(f"your function should return (low, high), got {got!r:.60}", None)
        mistakes = {1.96 * std / n ** 0.5: "use Student's t with n - 1 degrees of freedom, not 1.96",
                    t_975(n) * differences.std(unbiased=False).item() / n ** 0.5:
                        "the sample standard deviation divides by n - 1 (torch's default, unbiased=True)",
                    t_975(n) * std: "divide the standard deviation by sqrt(n): the interval is for the mean",
                    t_975(n + 1) * std / n ** 0.5: "the t quantile has n - 1 degrees of freedom, not n"}
        hint = "the interval is mean -/+ t(0.975, n - 1) * std / sqrt(n), with the sample standard deviation"
        check_value(got[0], mean - half, tol=1e-3, name=f"low for {values}", hint=hint,
                    wrong={mean - width: why for width, why in mistakes.items()})
        check_value(got[1], mean + half, tol=1e-3, name=f"high for {values}", hint=hint,
                    wrong={mean + width: why for width, why in mistakes.items()})


def check_head_parameters(function: Callable) -> None:
    """ex-concepts-head-params: ``function(in_features) -> int``, the parameters of ``ClassifierHead(in_features)``."""
    from mmbook.multimodal import ClassifierHead

    for size in (20, 128, 4096):
        expected = sum(p.numel() for p in ClassifierHead(size).parameters())
        check_value(_call(function, f"head_parameters({size})", size), expected, tol=0.5,
                    name=f"head_parameters({size})",
                    hint="add the weights (inputs times outputs) and the biases (one per output) of both Linear layers",
                    wrong={size * 128 + 128 * 10: "count the biases: one per output unit, in both layers",
                           size * 128 + 128: "count the second layer too, Linear(128, 10), with its biases",
                           size * 128 + 128 * 10 + 10: "count the first layer's biases too",
                           size * 128 + 128 + 128 * 10: "count the second layer's biases too"})


def check_bag_of_words(function: Callable) -> None:
    """ex-concepts-bag-of-words: ``function(token_ids (B, T), vocab_size) -> (B, V)`` word counts, padding (0) not counted."""
    import torch

    ids = torch.tensor([[2, 3, 2, 0, 0], [4, 4, 4, 5, 0], [1, 2, 3, 4, 5]])
    expected = torch.zeros(3, 6)
    expected.scatter_add_(1, ids, torch.ones(ids.shape))
    with_padding = expected.clone()
    expected[:, 0] = 0
    got = _call(function, "bag_of_words(ids, 6)", ids.clone(), 6)
    _tensor_close(got, expected, "bag_of_words(ids, 6)",
                  hint="count, in each row, how often each id occurs (one column per id), and leave padding out",
                  hints=
                  [(with_padding, "padding (id 0) must not be counted"),
                   ((expected > 0).float(), "count every occurrence: a word seen twice counts 2")])
