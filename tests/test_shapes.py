"""Sort-of-CLEVR scenes: what is drawn is what the ground truth says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmbook.data.shapes import COLOUR_RGB, COLOURS, GAP, MAX_SIDE, MIN_SIDE, SHAPES, make_shape_scenes
from mmbook.reasoning.programs import shape_objects


@pytest.fixture(scope="module")
def scenes():
    return make_shape_scenes(400, seed=0)


def test_shapes_and_dtypes(scenes):
    assert scenes.images.dtype == torch.uint8 and scenes.images.shape == (400, 3, 64, 64)
    assert scenes.boxes.dtype == torch.float32 and scenes.boxes.shape == (400, 6, 4)
    assert scenes.shapes.dtype == torch.int64 and scenes.shapes.shape == (400, 6)
    assert scenes.colours.dtype == torch.int64 and scenes.colours.shape == (400, 6)
    assert len(scenes) == 400
    sides = scenes.boxes[..., 2] - scenes.boxes[..., 0]
    assert torch.equal(sides, scenes.boxes[..., 3] - scenes.boxes[..., 1])
    assert sides.min() >= MIN_SIDE and sides.max() <= MAX_SIDE
    assert scenes.boxes.min() >= 0 and scenes.boxes.max() <= 64
    assert scenes.shapes.min() >= 0 and scenes.shapes.max() < len(SHAPES)
    # Distinct colours in every scene (six objects: all six colours).
    assert all(sorted(row) == list(range(len(COLOURS))) for row in scenes.colours.tolist())


def test_every_box_centre_shows_its_colour(scenes):
    images, boxes, colours = scenes.images.numpy(), scenes.boxes.numpy().astype(int), scenes.colours.numpy()
    for i in range(len(scenes)):
        for j in range(6):
            x1, y1, x2, y2 = boxes[i, j]
            pixel = images[i, :, (y1 + y2) // 2, (x1 + x2) // 2]
            assert tuple(pixel) == COLOUR_RGB[COLOURS[colours[i, j]]]


def test_squares_fill_their_box_and_circles_leave_the_corners(scenes):
    images, boxes, shapes, colours = (scenes.images.numpy(), scenes.boxes.numpy().astype(int), scenes.shapes.numpy(),
                                      scenes.colours.numpy())
    for i in range(50):
        for j in range(6):
            x1, y1, x2, y2 = boxes[i, j]
            patch = images[i, :, y1:y2, x1:x2]
            coloured = (patch == np.array(COLOUR_RGB[COLOURS[colours[i, j]]]).reshape(3, 1, 1)).all(axis=0)
            corners = [coloured[0, 0], coloured[0, -1], coloured[-1, 0], coloured[-1, -1]]
            if SHAPES[shapes[i, j]] == "square":
                assert coloured.all()
            else:
                assert not any(corners)
                assert 0.70 < coloured.mean() < 0.85  # a disc covers pi/4 of its box
            # Nothing of the object's colour outside its box.
            outside = (images[i] == np.array(COLOUR_RGB[COLOURS[colours[i, j]]]).reshape(3, 1, 1)).all(axis=0)
            outside[y1:y2, x1:x2] = False
            assert not outside.any()


def test_the_background_is_grey_and_the_objects_do_not_overlap(scenes):
    images, boxes = scenes.images.numpy(), scenes.boxes.numpy()
    for i in range(len(scenes)):
        covered = np.zeros((64, 64), dtype=bool)
        for j in range(6):
            x1, y1, x2, y2 = boxes[i, j].astype(int)
            covered[y1:y2, x1:x2] = True
            for k in range(j):
                a, b = boxes[i, j], boxes[i, k]
                apart = (a[2] + GAP <= b[0]) or (b[2] + GAP <= a[0]) or (a[3] + GAP <= b[1]) or (b[3] + GAP <= a[1])
                assert apart, (i, j, k, a, b)
        background = images[i][:, ~covered]
        assert (background[0] == background[1]).all() and (background[1] == background[2]).all()
        assert background.min() >= 190


def test_circle_counts_are_spread_evenly_when_drawn_per_scene():
    scenes = make_shape_scenes(1400, seed=1, circles="per_scene")
    circles = np.bincount((scenes.shapes == SHAPES.index("circle")).sum(1).numpy(), minlength=7)
    shares = circles / circles.sum()
    assert len(shares) == 7 and shares.min() > 0.09 and shares.max() < 0.2, circles  # uniform: 1/7 each


def test_independent_shapes_follow_a_fair_coin():
    scenes = make_shape_scenes(2000, seed=1)
    circles = np.bincount((scenes.shapes == SHAPES.index("circle")).sum(1).numpy(), minlength=7)
    binomial = np.array([1, 6, 15, 20, 15, 6, 1]) / 64  # Binomial(6, 1/2)
    assert np.abs(circles / circles.sum() - binomial).max() < 0.03, circles
    # Independent: two objects of a scene agree on their shape half the time, not more.
    same = (scenes.shapes[:, 0] == scenes.shapes[:, 1]).float().mean().item()
    assert abs(same - 0.5) < 0.04


def test_unknown_circle_draw_is_a_clear_error():
    with pytest.raises(ValueError, match="circles must be one of independent, per_scene"):
        make_shape_scenes(3, circles="fair")


def test_deterministic_for_a_seed():
    a, b, c = make_shape_scenes(30, seed=3), make_shape_scenes(30, seed=3), make_shape_scenes(30, seed=4)
    for name in ("images", "boxes", "shapes", "colours"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.boxes, c.boxes)


@pytest.mark.parametrize("k", [1, 3, 6])
def test_fewer_objects(k):
    scenes = make_shape_scenes(20, seed=0, num_objects=k)
    assert scenes.boxes.shape == (20, k, 4)
    assert all(len(set(row)) == k for row in scenes.colours.tolist())


@pytest.mark.parametrize("args, message", [
    ((0,), "num_scenes must be a positive int"),
    ((5, 0, 7), "num_objects must be an int in 1..6"),
    ((5, 0, 0), "num_objects must be an int in 1..6"),
])
def test_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        make_shape_scenes(*args)


def test_shape_objects_match_the_tensors(scenes):
    objects = shape_objects(scenes)
    assert len(objects) == len(scenes) and all(len(o) == 6 for o in objects)
    for i in range(20):
        for j, obj in enumerate(objects[i]):
            box = scenes.boxes[i, j].tolist()
            assert obj.box == tuple(box)
            assert obj.attributes["shape"] == SHAPES[int(scenes.shapes[i, j])]
            assert obj.attributes["colour"] == COLOURS[int(scenes.colours[i, j])]
            assert obj.attributes["size"] == "small"
            assert obj.attributes["place"] == ("left" if (box[0] + box[2]) / 2 < 32 else "right")
            assert obj.attributes["row"] == ("top" if (box[1] + box[3]) / 2 < 32 else "bottom")


def test_subset(scenes):
    part = scenes.subset(torch.tensor([5, 2]))
    assert torch.equal(part.images[1], scenes.images[2]) and torch.equal(part.colours[0], scenes.colours[5])


@pytest.mark.parametrize("condition", ["A", "B"])
def test_a_compositional_condition_keeps_the_layout_and_makes_the_other_colours_circles(condition):
    from mmbook.data.shapes import CONDITIONS

    free = make_shape_scenes(300, seed=4)
    held = make_shape_scenes(300, seed=4, condition=condition)
    assert torch.equal(held.boxes, free.boxes) and torch.equal(held.colours, free.colours)
    may_be_square = torch.isin(held.colours, torch.tensor([COLOURS.index(c) for c in CONDITIONS[condition]]))
    assert (held.shapes[~may_be_square] == SHAPES.index("circle")).all()
    assert torch.equal(held.shapes[may_be_square], free.shapes[may_be_square])
    assert (held.shapes[may_be_square] == SHAPES.index("square")).float().mean() > 0.4  # squares stay common there
    # the two conditions' square colours are disjoint and together cover every colour
    assert set(CONDITIONS["A"]).isdisjoint(CONDITIONS["B"]) and set(CONDITIONS["A"]) | set(CONDITIONS["B"]) == set(COLOURS)


def test_unknown_condition_is_a_clear_error():
    with pytest.raises(ValueError, match="condition must be None or one of A, B"):
        make_shape_scenes(4, condition="C")
