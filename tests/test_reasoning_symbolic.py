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


# Detected scenes: the Objectives chapter's detector as the seeing half, on the CIFAR-10 scenes ----------------


def _detections_of(scene_set, spurious_score=0.2):
    """The ground truth of ``scene_set`` as detections scoring 0.9, plus one spurious truck scoring ``spurious_score``."""
    detections = []
    for boxes, classes, count in zip(scene_set.boxes, scene_set.classes, scene_set.counts.tolist()):
        extra_box = torch.tensor([[0.0, 0.0, 8.0, 8.0]])
        detections.append({"boxes": torch.cat([boxes[:count].float(), extra_box]),
                           "scores": torch.tensor([0.9] * count + [spurious_score]),
                           "labels": torch.cat([classes[:count], torch.tensor([9])])})
    return detections


def test_detections_above_the_threshold_are_the_scene_graph_the_programs_read():
    from conftest import random_scenes
    from mmbook.reasoning.programs import scene_objects
    from mmbook.reasoning.symbolic import detected_objects

    scene_set = random_scenes(12, 2, seed=1)
    truth = scene_objects(scene_set)
    detected = detected_objects(_detections_of(scene_set), score_threshold=0.5)
    assert [[(o.box, o.attributes) for o in scene] for scene in detected] == \
        [[(tuple(float(v) for v in o.box), o.attributes) for o in scene] for scene in truth]
    questions = generate_questions(truth, families_for("scenes"), 4, seed=0)
    assert program_answers(questions, detected) == questions.answers
    # A threshold below the spurious truck's score adds it to every scene.
    low = detected_objects(_detections_of(scene_set), score_threshold=0.1)
    assert [len(s) for s in low] == [len(s) + 1 for s in truth]
    assert all(scene[-1].attributes["class"] == "truck" and scene[-1].attributes["kind"] == "vehicle" for scene in low)


def test_detected_objects_bad_input():
    from mmbook.reasoning.symbolic import detected_objects

    with pytest.raises(ValueError, match="score_threshold must be in"):
        detected_objects([], score_threshold=1.5)
    bad = [{"boxes": torch.zeros(1, 4), "scores": torch.ones(1), "labels": torch.tensor([12])}]
    with pytest.raises(ValueError, match="not a CIFAR-10 class"):
        detected_objects(bad)


def test_detect_scenes_runs_the_detector_and_keeps_what_scores_above_the_threshold():
    from mmbook.objectives.tasks import build_scene_task
    from mmbook.reasoning.symbolic import detect_scenes

    torch.manual_seed(0)
    detector = build_scene_task("scene-detection", "image").model
    images = torch.randint(0, 256, (5, 3, 64, 64), dtype=torch.uint8)
    everything = detect_scenes(detector, images, score_threshold=0.0, batch_size=2)
    assert len(everything) == 5 and sum(len(scene) for scene in everything) > 0
    assert all(set(o.attributes) == {"class", "kind", "size", "place", "row"} for scene in everything for o in scene)
    confident = detect_scenes(detector, images, score_threshold=1.0)
    assert len(confident) == 5 and all(len(scene) <= len(all_) for scene, all_ in zip(confident, everything))
    with pytest.raises(ValueError, match="uint8 scenes"):
        detect_scenes(detector, images.float())


def test_program_accuracy_counts_unrunnable_programs_and_unknown_answers_as_wrong():
    from conftest import random_scenes
    from mmbook.reasoning import answer_vocabulary
    from mmbook.reasoning.programs import scene_objects
    from mmbook.reasoning.symbolic import detected_objects, program_accuracy

    scene_set = random_scenes(12, 2, seed=1)
    truth = scene_objects(scene_set)
    questions = generate_questions(truth, families_for("scenes"), 4, seed=0)
    vocabulary = answer_vocabulary("scenes")
    on_truth = program_accuracy(questions, truth, vocabulary)
    assert on_truth["overall"] == 1.0 and on_truth["unrunnable"] == 0.0
    # Every scene holds five more trucks: "how many vehicles" answers beyond the vocabulary, "the truck" is ambiguous.
    crowded = []
    for detection in _detections_of(scene_set, spurious_score=0.9):
        extra = {"boxes": detection["boxes"][-1:].repeat(5, 1), "scores": torch.full((5,), 0.9),
                 "labels": torch.full((5,), 9)}
        crowded.append({key: torch.cat([detection[key], extra[key]]) for key in detection})
    report = program_accuracy(questions, detected_objects(crowded), vocabulary)
    assert 0.0 <= report["overall"] < 1.0 and set(report) >= {"relational", "non_relational", "overall"}
    # the programs that name a truck or a vehicle find six and cannot run; they are among the wrong answers
    assert 0.0 < report["unrunnable"] <= 1.0 - report["overall"]
