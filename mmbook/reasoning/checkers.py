"""Exercise checkers of the Reasoning chapter: the relation network's pairs.

Each checker runs the reader's function on several cases, compares with the package's answer and, when a
case fails, names the usual mistake without giving the expected value away. It prints "All checks passed"
when every case agrees.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mmbook.reasoning.models import RelationNetwork


def check_relation_pairs(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check a reader's ``fn(objects (B, N, D), question (B, Q)) -> (B, N*N, 2D + Q)``: row ``i*N + j`` of
    each scene is ``[o_i; o_j; q]``, as :meth:`~mmbook.reasoning.models.RelationNetwork.pairs` builds it."""
    if not callable(fn):
        raise TypeError(f"check_relation_pairs expects a function, got {type(fn).__name__}")
    generator = torch.Generator().manual_seed(0)
    for b, n, d, q in ((1, 2, 3, 2), (2, 3, 4, 5), (3, 4, 2, 3)):
        objects = torch.randn(b, n, d, generator=generator)
        question = torch.randn(b, q, generator=generator)
        expected = RelationNetwork.pairs(objects, question)
        name = f"{b} scene(s) of {n} objects with {d} features, a question vector of {q}"
        try:
            got = fn(objects.clone(), question.clone())
        except Exception as error:
            raise AssertionError(f"{name}: your function raised {error.__class__.__name__}: {error}") from error
        if not isinstance(got, torch.Tensor):
            raise AssertionError(f"{name}: expected a tensor, got {type(got).__name__}")
        if got.shape != expected.shape:
            hint = ""
            if got.ndim == 3 and got.shape[1] == n * (n - 1) // 2:
                hint = ": you kept each unordered pair once; the relation network sees every ordered pair, i = j too"
            elif got.ndim == 3 and got.shape[1] == n * (n - 1):
                hint = ": keep the pairs of an object with itself (i = j) as well"
            elif got.ndim == 3 and got.shape[2] == 2 * d:
                hint = ": append the question to every pair"
            raise AssertionError(f"{name}: your pairs have shape {tuple(got.shape)}; expected (B, N*N, 2*D + Q) "
                                 f"for objects (B, N, D) and a question (B, Q){hint}")
        if torch.allclose(got, expected):
            continue
        swapped = RelationNetwork.pairs(objects, question).reshape(b, n, n, -1).transpose(1, 2).reshape(b, n * n, -1)
        if torch.allclose(got, swapped):
            raise AssertionError(f"{name}: row i*N + j holds [o_j; o_i; q]; it must be [o_i; o_j; q], the object of "
                                 f"the outer index first")
        if torch.allclose(got[:, :, : 2 * d], expected[:, :, : 2 * d]):
            raise AssertionError(f"{name}: the object pairs are right but the question part is not: every pair of "
                                 f"scene b ends with that scene's question")
        raise AssertionError(f"{name}: your pairs differ from [o_i; o_j; q] in row i*N + j; build them with "
                             f"unsqueeze/expand on the objects and cat along the last dimension")
    print("All checks passed")
