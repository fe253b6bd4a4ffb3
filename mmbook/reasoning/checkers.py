"""Exercise checkers of the Reasoning chapter: the relation network's pairs and a vision transformer's tokens.

Each checker runs the reader's function on several cases, compares with the package's answer and, when a
case fails, names the usual mistake without giving the expected value away. It prints "All checks passed"
when every case agrees.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mmbook.exercises import reader_call
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
        got = reader_call(fn, name, objects.clone(), question.clone())
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


def check_token_count(fn: Callable[[int, int], int]) -> None:
    """Check a reader's ``fn(image_size, patch_size) -> int``: the length of the sequence a
    :class:`~mmbook.reasoning.vit.VisionTransformer` encodes (its patches and its class token), counted from a
    built model. A patch size that does not tile the image must raise ``ValueError``."""
    from mmbook.reasoning.vit import VisionTransformer

    if not callable(fn):
        raise TypeError(f"check_token_count expects a function, got {type(fn).__name__}")
    for image_size, patch_size in ((32, 4), (32, 8), (64, 16), (30, 3)):
        model = VisionTransformer(image_size=image_size, patch_size=patch_size, dim=8, depth=1, heads=2)
        expected = model.tokens(torch.zeros(1, 3, image_size, image_size)).shape[1]
        name = f"{image_size}x{image_size} images, {patch_size}x{patch_size} patches"
        got = reader_call(fn, name, image_size, patch_size)
        if not isinstance(got, int) or isinstance(got, bool):
            raise AssertionError(f"{name}: expected a whole number of tokens, got {type(got).__name__}")
        if got == expected:
            continue
        side = image_size // patch_size
        if got == expected - 1:
            hint = ": add the class token, which the encoder reads as well"
        elif got in (side + 1, side):
            hint = ": the patches form a grid in both directions"
        else:
            hint = ": count the patches of the grid, then the class token"
        raise AssertionError(f"{name}: {got} is not the encoder's sequence length{hint}")
    try:
        result = fn(32, 5)
    except ValueError:
        pass
    except Exception as error:
        raise AssertionError(f"32x32 images, 5x5 patches: raise ValueError (the patches do not tile the image), not "
                             f"{error.__class__.__name__}") from error
    else:
        raise AssertionError(f"32x32 images, 5x5 patches: your function returned {result!r}; raise ValueError, since "
                             f"5 does not divide 32 and the patches would not tile the image")
    print("All checks passed")


def closest_colour(objects, colour: str) -> str:
    """The colour of the object whose centre is nearest to the centre of the object of ``colour`` (itself
    excluded): the ``closest`` step of the Sort-of-CLEVR programs, on one scene's :class:`SceneObject` list."""
    (anchor,) = [obj for obj in objects if obj.attributes["colour"] == colour]
    ax, ay = anchor.centre
    others = [obj for obj in objects if obj is not anchor]
    nearest = min(others, key=lambda obj: (obj.centre[0] - ax) ** 2 + (obj.centre[1] - ay) ** 2)
    return nearest.attributes["colour"]


def check_closest_colour(fn: Callable[[list, str], str]) -> None:
    """Check a reader's ``fn(objects, colour) -> colour``: on one Sort-of-CLEVR scene given as
    :class:`~mmbook.reasoning.programs.SceneObject` list, the colour of the object closest (centre to centre)
    to the object of ``colour``, which is not its own closest object. Scenes with a near tie are skipped."""
    from mmbook.data.shapes import make_shape_scenes
    from mmbook.reasoning.programs import shape_objects

    if not callable(fn):
        raise TypeError(f"check_closest_colour expects a function, got {type(fn).__name__}")
    checked = 0
    for scene in shape_objects(make_shape_scenes(12, seed=21)):
        for anchor in scene:
            colour = anchor.attributes["colour"]
            ax, ay = anchor.centre
            distances = sorted(((obj.centre[0] - ax) ** 2 + (obj.centre[1] - ay) ** 2) ** 0.5
                               for obj in scene if obj is not anchor)
            if distances[1] - distances[0] < 1.0:
                continue  # a near tie: the programs refuse these questions
            expected = closest_colour(scene, colour)
            name = f"case {checked + 1} (the object closest to object {scene.index(anchor)} of its scene)"
            got = reader_call(fn, name, [obj for obj in scene], colour)
            checked += 1
            if got == expected:
                continue
            if got == colour:
                hint = ": that is the object itself (distance 0); leave it out of the candidates"
            elif not isinstance(got, str):
                hint = f": return the colour's name (a str), not {type(got).__name__}"
            elif got == max((obj for obj in scene if obj is not anchor), key=lambda obj: (obj.centre[0] - ax) ** 2
                            + (obj.centre[1] - ay) ** 2).attributes["colour"]:
                hint = ": that is the farthest object; take the smallest distance"
            else:
                hint = ": measure from centre to centre (SceneObject.centre), in both x and y"
            raise AssertionError(f"{name}: your answer is not the closest object's colour{hint}")
    print("All checks passed")
