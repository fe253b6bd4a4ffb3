"""Checkers for the exercises of ch05, fusion (``ex-fusion-*``; ``ex-fusion-gmu`` is in :mod:`mmbook.fusion.checks`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mmbook.exercises import _call, _fail, check_choice, check_shape, check_value


def check_concat_head_parameters(function: Callable) -> None:
    """ex-fusion-concat-cost: ``function(modalities, size) -> int``, concatenation + ``ClassifierHead`` parameters."""
    from mmbook.fusion import ConcatFusion
    from mmbook.multimodal import ClassifierHead

    for modalities, size in ((2, 64), (3, 64), (4, 10)):
        fusion = ConcatFusion([size] * modalities)
        expected = sum(p.numel() for p in fusion.parameters()) + sum(
            p.numel() for p in ClassifierHead(modalities * size).parameters())
        check_value(_call(function, f"your formula for M={modalities}, D={size}", modalities, size), expected, tol=0.5,
                    name=f"the count for M={modalities}, D={size}",
                    hint="concatenation has no parameters; add the weights and biases of the head's two Linear layers",
                    wrong={modalities * size * 128 + 128 * 10: "count the biases, one per output unit in both layers",
                           size * 128 + 128 + 128 * 10 + 10: "the head's input is all M features concatenated: M * D",
                           modalities * size * 10 + 10: "ClassifierHead has a hidden layer of 128 units before the "
                                                        "10 outputs"})


def check_pareto_front(function: Callable) -> None:
    """ex-fusion-accuracy-per-parameter: ``function({name: (parameters, accuracy)}) -> names on the Pareto front``."""
    runs = {"a": (100, 0.60), "b": (1_000, 0.70), "c": (5_000, 0.65), "d": (50, 0.55), "e": (20_000, 0.72)}
    expected = {n for n, (p, a) in runs.items()
                if not any(po <= p and ao > a for o, (po, ao) in runs.items() if o != n)}
    got = _call(function, "your Pareto front", dict(runs))
    if isinstance(got, str) or not hasattr(got, "__iter__"):
        _fail(f"return the names on the front (a list or set), got {type(got).__name__}", None)
    got = set(got)
    if got == expected:
        return
    hint = None
    if got == {n for n, (p, a) in runs.items() if not any(po >= p and ao > a for o, (po, ao) in runs.items() if o != n)}:
        hint = "smaller is better for parameters: a method is dominated by one that is both smaller and more accurate"
    elif got == set(runs):
        hint = "leave out every method that another one beats with fewer parameters and higher accuracy"
    elif got - set(runs):
        hint = f"return names of the given runs, got {sorted(map(str, got - set(runs)))!r:.60}"
    # Say what kind of error, not which names: the names are the answer.
    problems = []
    if got - expected:
        problems.append("it includes a method that another one beats (fewer parameters and higher accuracy)")
    if expected - got:
        problems.append("it leaves out a method that no other method beats")
    _fail(f"your front {sorted(map(str, got))} is not right: {' and '.join(problems)}", hint or
          "keep a method unless some other method has at most as many parameters and a higher accuracy")


def check_layernorm_answer(answer: Any) -> None:
    """ex-fusion-weights-layernorm: does the fusion's output change when the text projection is scaled by 10?"""
    import torch

    from mmbook.fusion import GlobalWeightFusion

    torch.manual_seed(0)
    fusion = GlobalWeightFusion([10, 10])
    x = [torch.randn(8, 10), torch.randn(8, 10)]
    with torch.no_grad():
        before = fusion(x)
        fusion.projections[1].weight.mul_(10)
        fusion.projections[1].bias.mul_(10)
        changes = not torch.allclose(before, fusion(x), atol=1e-4)
    # Two options: any explanation after a wrong guess is the answer, so the hint only says where to look.
    check_choice(answer, changes, [True, False], name="your answer (does the output change?)",
                 hint="look at what GlobalWeightFusion does to each projection before weighting it, and what that "
                      "step does to an input multiplied by a constant; or run the experiment and compare the outputs "
                      "with torch.allclose")


def check_drop_words(function: Callable) -> None:
    """ex-fusion-word-dropout: ``function(tokens (N, T), level) -> (N, T)``, each real token -> <unk> (1) with
    probability ``level``; padding (0) untouched."""
    import torch

    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(2, 50, (400, 12), generator=generator)
    tokens[:, 8:] = 0  # padding
    for level in (0.0, 1.0, 0.5):
        got = _call(function, f"your function at level {level}", tokens.clone(), level)
        check_shape(got, tuple(tokens.shape), name=f"the output at level {level}")
        if bool((got[:, 8:] != 0).any()):
            _fail(f"at level {level} padding was changed", "replace only real tokens (id != 0) by <unk>")
        real = got[:, :8]
        changed = real != tokens[:, :8]
        if bool((changed & (real != 1)).any()):
            _fail(f"at level {level} some tokens were changed to something other than <unk> (id 1)", None)
        share = changed.float().mean().item()
        if level == 0.5 and float(changed.all(dim=1).float().mean() + (~changed).all(dim=1).float().mean()) > 0.9:
            _fail("at level 0.5 whole captions were replaced", "decide for each *word* separately")
        if abs(share - level) > 0.05:
            _fail(f"at level {level} {share:.0%} of the real tokens became <unk>, {'too few' if share < level else 'too many'}",
                  "level is the probability that each real token is replaced (compare torch.rand with level)")


def check_modulation_factor(function: Callable) -> None:
    """ex-fusion-ogm: ``function(s_mine, s_other) -> float``, the factor on this branch's gradients."""
    import math

    for mine, other in ((0.6, 0.3), (0.3, 0.6), (0.5, 0.5), (0.9, 0.2)):
        expected = 1 - math.tanh(mine / other - 1) if mine > other else 1.0
        check_value(_call(function, f"factor({mine}, {other})", mine, other), expected, tol=1e-6,
                    name=f"factor({mine}, {other})",
                    hint="follow the chapter's formula: only the dominant branch is slowed, by an amount that "
                         "grows with the ratio s_mine / s_other",
                    wrong={1 - math.tanh(mine / other - 1): "only the dominant branch (s_mine > s_other) is slowed; "
                                                            "the other's gradients are left as they are",
                           math.tanh(mine / other - 1): "the factor is 1 - tanh(...), so it shrinks as the lead grows",
                           1 - math.tanh(mine / other): "the tanh is of the ratio minus one, so that equal scores give "
                                                        "no slowing"})
