"""The neuro-symbolic pipeline: a parsed scene graph, and programs executed on it."""

from __future__ import annotations

import math

import pytest
import torch

from mmbook.data.shapes import COLOURS, SHAPES, make_shape_scenes
from mmbook.reasoning.programs import families_for, generate_questions, shape_objects
from mmbook.reasoning.symbolic import (ShapeSceneParser, parsed_objects, parser_loss, parser_targets, program_answers,
                                       train_scene_parser)


@pytest.fixture(scope="module")
def scenes():
    return make_shape_scenes(40, seed=3)


def _perfect_output(targets):
    return {"shape": torch.nn.functional.one_hot(targets["shape"], len(SHAPES)).float() * 5, "centre": targets["centre"]}


def test_targets_are_the_ground_truth_ordered_by_colour(scenes):
    targets = parser_targets(scenes)
    assert targets["shape"].shape == (40, len(COLOURS)) and targets["centre"].shape == (40, len(COLOURS), 2)
    truth = shape_objects(scenes)
    for scene in (0, 17, 39):
        for obj in truth[scene]:
            colour = COLOURS.index(obj.attributes["colour"])
            assert SHAPES[targets["shape"][scene, colour]] == obj.attributes["shape"]
            x, y = obj.centre
            assert targets["centre"][scene, colour].tolist() == pytest.approx([x / 64, y / 64])


def test_executing_on_a_perfect_parse_answers_every_question(scenes):
    questions = generate_questions(shape_objects(scenes), families_for("shapes"), 10, seed=1)
    answers = program_answers(questions, parsed_objects(_perfect_output(parser_targets(scenes))))
    assert answers == questions.answers


def test_a_wrong_parse_gives_wrong_answers_not_a_crash(scenes):
    questions = generate_questions(shape_objects(scenes), families_for("shapes"), 10, seed=1)
    output = _perfect_output(parser_targets(scenes))
    output["shape"] = output["shape"].flip(-1)  # every shape swapped
    output["centre"] = torch.full_like(output["centre"], 0.5)  # every object at the centre: relations are ties
    answers = program_answers(questions, parsed_objects(output))
    shape_questions = [i for i, family in enumerate(questions.family) if family == "shape_of_colour"]
    assert shape_questions and all(answers[i] != questions.answers[i] for i in shape_questions)
    assert None in answers  # "the object closest to the red one" is ambiguous when every object is in one place


def test_the_parser_maps_images_to_shapes_and_centres(scenes):
    parser = ShapeSceneParser(width=8)
    output = parser({"image": scenes.images[:5]})
    assert output["shape"].shape == (5, len(COLOURS), len(SHAPES)) and output["centre"].shape == (5, len(COLOURS), 2)
    loss = parser_loss(output, {key: value[:5] for key, value in parser_targets(scenes).items()})
    loss.backward()
    assert math.isfinite(loss.item()) and parser.head.weight.grad is not None


def test_training_runs_and_reports_shape_accuracy():
    parser, history = train_scene_parser(make_shape_scenes(64, seed=0), epochs=1, batch_size=32, width=8,
                                         progress=False)
    assert 0.0 <= history.last["train_accuracy"] <= 1.0 and math.isfinite(history.last["train_loss"])
    assert isinstance(parser, ShapeSceneParser)


def test_scenes_without_every_colour_are_a_clear_error():
    with pytest.raises(ValueError, match="one object of each of the 6 colours"):
        parser_targets(make_shape_scenes(4, num_objects=4))


def test_questions_about_missing_scenes_are_a_clear_error(scenes):
    questions = generate_questions(shape_objects(scenes), families_for("shapes"), 2, seed=1)
    with pytest.raises(ValueError, match="only 5 scenes were given"):
        program_answers(questions, parsed_objects(_perfect_output(parser_targets(scenes.subset(torch.arange(5))))))
