"""Tests of the hallucination measures (mmbook.generation.hallucination), on scenes of random source images and
hand-built scenes: no data files."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import random_scenes
from mmbook.data.cifar10 import CIFAR10_CLASSES
from mmbook.data.scene_captions import describe_scenes, place_phrase, size_word
from mmbook.generation.hallucination import (
    REPORT_KEYS, Mention, check_caption, cooccurrence_split, hallucination_report, mention_rate, parse_mentions,
    parse_relations, per_caption_hallucinations, scenes_with,
)
from mmbook.generation.references import GRAMMARS, scene_references

# A small cat at the top left (centre (12, 12)) and a big truck on the right (centre (50, 32)).
CAT_TRUCK = (np.array([[2, 2, 22, 22], [36, 18, 64, 46]], dtype=np.float32), np.array([3, 9]))


def scenes_of(*scenes: tuple[np.ndarray, np.ndarray]) -> SimpleNamespace:
    """A SceneSet-like object (boxes, classes, counts padded to 4 objects) of hand-built scenes."""
    boxes = torch.zeros(len(scenes), 4, 4)
    classes = torch.full((len(scenes), 4), -1, dtype=torch.int64)
    for i, (b, c) in enumerate(scenes):
        boxes[i, : len(c)] = torch.as_tensor(b)
        classes[i, : len(c)] = torch.as_tensor(c)
    return SimpleNamespace(boxes=boxes, classes=classes, counts=torch.tensor([len(c) for _, c in scenes]))


@pytest.fixture(scope="module")
def scene_set():
    return random_scenes(300, per_class=5, seed=3)


def one_scene(scene_set, i: int) -> tuple[np.ndarray, np.ndarray]:
    k = int(scene_set.counts[i])
    return scene_set.boxes[i, :k].numpy(), scene_set.classes[i, :k].numpy()


def test_references_never_hallucinate(scene_set):
    references = scene_references(scene_set, per_scene=5, seed=0)
    flat = [caption for refs in references for caption in refs]
    repeated = scene_set.subset(torch.arange(len(scene_set)).repeat_interleave(5))
    report = hallucination_report(flat, repeated)
    assert tuple(report) == REPORT_KEYS and all(isinstance(v, float) for v in report.values())
    assert report["chair_i"] == report["chair_s"] == 0.0 and report["object_precision"] == 1.0
    assert report["wrong_size"] == report["wrong_place"] == report["wrong_relation"] == 0.0
    assert report["kind_errors"] == 0.0
    assert 0.5 < report["object_recall"] < 1.0  # salient, counting-by-objects ... leave objects out
    assert report["mentions_per_caption"] > 1.0


@pytest.mark.parametrize("grammar", [name for name, _ in GRAMMARS])
def test_every_grammar_is_true_and_fully_checked(scene_set, grammar):
    write = dict(GRAMMARS)[grammar]
    rng = np.random.default_rng(1)
    sizes = places = relations = 0
    for i in range(len(scene_set)):
        boxes, classes = one_scene(scene_set, i)
        caption = write(boxes, classes, rng)
        check = check_caption(caption, boxes, classes)
        assert check.hallucinated == [] and check.mentioned, caption
        assert check.wrong_sizes == check.wrong_places == check.wrong_relations == check.wrong_kinds == 0, caption
        sizes, places, relations = sizes + check.sizes, places + check.places, relations + check.relations
        if grammar in ("listing", "places", "short", "biggest"):
            assert check.recalled == check.present, caption  # these name every object
    # The parser finds the statements the grammar makes.
    assert (sizes > 0) == (grammar in ("listing", "salient", "relation", "biggest"))
    assert (places > 0) == (grammar in ("listing", "salient", "places"))
    assert (relations > 0) == (grammar == "relation")


def test_parse_mentions_recovers_the_listing(scene_set):
    write = dict(GRAMMARS)["listing"]
    for i in range(100):
        boxes, classes = one_scene(scene_set, i)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        truth = {(int(c), size_word(b[2] - b[0]), place_phrase(*m)) for b, c, m in zip(boxes, classes, centres)}
        caption = write(boxes, classes, np.random.default_rng(i))
        found = {(CIFAR10_CLASSES.index(m.name), m.size, m.place) for m in parse_mentions(caption)}
        assert found == truth


def test_scene_captions_are_true_too(scene_set):
    captions = describe_scenes(scene_set, seed=2, kind_probability=0.3)
    report = hallucination_report(captions, scene_set)
    assert report["chair_i"] == report["wrong_size"] == report["wrong_place"] == report["wrong_relation"] == 0.0
    assert report["kind_errors"] == 0.0
    assert sum(len(parse_relations(c)) for c in captions) > 100  # "where the cat is left of the truck" is read


def test_a_caption_with_an_absent_class_hallucinates():
    boxes, classes = CAT_TRUCK
    assert per_caption_hallucinations("a cat and a dog", boxes, classes) == ["dog"]
    assert per_caption_hallucinations("a puppy and a boat and a cat and a puppy", boxes, classes) == ["dog", "ship"]
    assert per_caption_hallucinations("a cat and a truck", boxes, classes) == []
    report = hallucination_report(["a cat and a dog", "a truck"], scenes_of(CAT_TRUCK, CAT_TRUCK))
    assert report["chair_i"] == pytest.approx(1 / 3) and report["chair_s"] == 0.5
    assert report["object_precision"] == pytest.approx(2 / 3)
    assert report["object_recall"] == pytest.approx(2 / 4) and report["mentions_per_caption"] == 1.5


def test_chair_counts_each_class_once_per_caption():
    report = hallucination_report(["a dog and a dog and a puppy and a cat"], scenes_of(CAT_TRUCK))
    assert report["chair_i"] == 0.5 and report["mentions_per_caption"] == 2.0


def test_synonyms_map_to_classes():
    assert parse_mentions("a large car") == [Mention("automobile", "vehicle", "big", None)]
    assert [m.name for m in parse_mentions("a plane a boat a lorry a kitten a puppy")] == \
        ["airplane", "ship", "truck", "cat", "dog"]
    car_scene = (np.array([[0, 0, 20, 20]], dtype=np.float32), np.array([1]))  # a small automobile
    report = hallucination_report(["a little car at the top left"], scenes_of(car_scene))
    assert report["chair_i"] == 0.0 and report["object_recall"] == 1.0
    assert report["wrong_size"] == 0.0 and report["wrong_place"] == 0.0


def test_kind_words_do_not_recall_and_can_be_wrong():
    assert parse_mentions("two animals") == [Mention(None, "animal")]
    report = hallucination_report(["an animal and a vehicle and three objects"], scenes_of(CAT_TRUCK))
    assert report["object_recall"] == 0.0 and report["kind_errors"] == 0.0
    assert math.isnan(report["chair_i"]) and report["chair_s"] == 0.0
    truck_only = (np.array([[36, 18, 64, 46]], dtype=np.float32), np.array([9]))
    assert hallucination_report(["an animal and a truck"], scenes_of(truck_only))["kind_errors"] == 1.0


def test_wrong_size_place_and_relation_are_detected():
    scenes = scenes_of(CAT_TRUCK)
    assert hallucination_report(["a big cat and a big truck"], scenes)["wrong_size"] == 0.5
    assert hallucination_report(["a cat at the bottom right"], scenes)["wrong_place"] == 1.0
    assert hallucination_report(["a cat at the top left and a truck on the right"], scenes)["wrong_place"] == 0.0
    assert hallucination_report(["a truck to the left of a cat"], scenes)["wrong_relation"] == 1.0
    assert hallucination_report(["the truck is right of the cat"], scenes)["wrong_relation"] == 0.0
    # dx = -38 and dy = -20: "above" is far from the larger offset, so it is false.
    assert hallucination_report(["a cat above a truck"], scenes)["wrong_relation"] == 1.0
    assert hallucination_report(["a cat to the left of a cat"], scenes)["wrong_relation"] == 1.0
    # Relations with an absent class are not judged (that class is a hallucination already).
    report = hallucination_report(["a dog to the left of a cat"], scenes)
    assert math.isnan(report["wrong_relation"]) and report["chair_i"] == 0.5


def test_near_the_diagonal_both_relations_are_accepted():
    # Centres (10, 11) and (30, 29): dx = -20, dy = -18, within the 4-pixel margin.
    scene = (np.array([[0, 2, 20, 20], [20, 20, 40, 38]], dtype=np.float32), np.array([3, 5]))
    for caption in ("a cat to the left of a dog", "a cat above a dog", "a dog below a cat", "a dog right of a cat"):
        assert hallucination_report([caption], scenes_of(scene))["wrong_relation"] == 0.0, caption
    for caption in ("a cat below a dog", "a cat to the right of a dog"):
        assert hallucination_report([caption], scenes_of(scene))["wrong_relation"] == 1.0, caption


def test_parse_relations():
    assert parse_relations("a small cat at the top left where the cat is left of the truck") == [("cat", "left", "truck")]
    assert parse_relations("a kitten above a big lorry and a dog to the right of the lorry") == \
        [("cat", "above", "truck"), ("dog", "right", "truck")]
    assert parse_relations("where the animal is left of the truck") == []  # kinds are not judged
    mentions = parse_mentions("a cat on the left of a truck")
    assert mentions[0].place is None and parse_relations("a cat on the left of a truck") == [("cat", "left", "truck")]
    assert parse_mentions("a cat on the left and a dog")[0].place == "on the left"
    assert parse_mentions("a cat at the top left")[0].place == "at the top left"


@pytest.mark.parametrize("garbage", [
    "", "   ", "!!!", "<bos> <unk> <eos>", "of of left of", "left of a cat", "a cat left of", "above below",
    "a a a the the the", "cat cat cat cat cat", "a small cat at the top left and a big tru", "at the top left of",
    "🐱 кот ünïcode", "the " * 500, "A BIG CAT, at the TOP-LEFT!", "a big", "on the", "left",
])
def test_garbage_never_raises(garbage):
    parse_mentions(garbage)
    parse_relations(garbage)
    boxes, classes = CAT_TRUCK
    per_caption_hallucinations(garbage, boxes, classes)
    report = hallucination_report([garbage], scenes_of(CAT_TRUCK))
    assert set(report) == set(REPORT_KEYS)


def test_truncated_and_repeated_model_output():
    mentions = parse_mentions("a small small cat at the top left and a big tru")
    assert mentions == [Mention("cat", "animal", "small", "at the top left")]
    assert parse_mentions("A BIG CAT, at the TOP-LEFT!")[0] == Mention("cat", "animal", "big", "at the top left")


def test_empty_statements_give_nan():
    report = hallucination_report([""], scenes_of(CAT_TRUCK))
    assert math.isnan(report["chair_i"]) and math.isnan(report["object_precision"])
    assert math.isnan(report["wrong_size"]) and math.isnan(report["wrong_place"])
    assert math.isnan(report["wrong_relation"]) and math.isnan(report["kind_errors"])
    assert report["chair_s"] == 0.0 and report["object_recall"] == 0.0 and report["mentions_per_caption"] == 0.0


def test_mismatched_inputs_raise(scene_set):
    with pytest.raises(ValueError, match="2 captions for 1 scenes"):
        hallucination_report(["a cat", "a dog"], scenes_of(CAT_TRUCK))
    with pytest.raises(ValueError, match="one caption per scene"):
        hallucination_report(["a cat"] * 3, scene_set)
    with pytest.raises(TypeError, match="single string"):
        hallucination_report("a cat", scenes_of(CAT_TRUCK))
    with pytest.raises(TypeError):
        hallucination_report([None], scenes_of(CAT_TRUCK))


def test_cooccurrence_split_never_leaves_the_class_alone_and_matches_the_control_in_size(scene_set):
    classes = scene_set.classes.numpy()
    horse, truck = CIFAR10_CLASSES.index("horse"), CIFAR10_CLASSES.index("truck")
    biased, control = cooccurrence_split(classes, "horse", "truck", seed=0)
    assert len(biased) == len(control) and len(set(control.tolist())) == len(control)
    has = lambda rows, c: (classes[rows] == c).any(axis=1)
    assert not (has(biased, horse) & ~has(biased, truck)).any()  # a horse always comes with a truck
    alone = has(np.arange(len(classes)), horse) & ~has(np.arange(len(classes)), truck)
    assert alone.any() and set(biased.tolist()) == set(np.flatnonzero(~alone).tolist())
    assert (has(control, horse) & ~has(control, truck)).any()  # the control keeps such scenes
    assert set(np.flatnonzero(has(np.arange(len(classes)), truck)).tolist()) <= set(control.tolist())  # and every truck
    again, _ = cooccurrence_split(classes, "horse", "truck", seed=0)
    assert np.array_equal(again, biased) and not np.array_equal(cooccurrence_split(classes, "horse", "truck", seed=1)[1], control)


def test_scenes_with_and_mention_rate():
    classes = np.array([[7, 9, -1, -1], [7, -1, -1, -1], [9, 3, -1, -1], [0, 1, 2, -1]])
    assert scenes_with(classes, "horse").tolist() == [0, 1]
    assert scenes_with(classes, "horse", without="truck").tolist() == [1]
    assert mention_rate(["a horse and a car", "a big truck", "a cat", "a dog"], "automobile") == 0.25  # "car" is an automobile
    assert math.isnan(mention_rate([], "truck"))


@pytest.mark.parametrize("call, message", [
    (lambda: cooccurrence_split(np.array([[7, -1, -1, -1]]), "horse", "horse"), "two different classes"),
    (lambda: cooccurrence_split(np.array([[7, -1, -1, -1]]), "horse", "truck"), "nothing is left"),
    (lambda: cooccurrence_split(np.array([[7, -1, -1, -1]]), "unicorn", "truck"), "unknown class 'unicorn'"),
    (lambda: mention_rate("a horse", "horse"), "not a single string"),
    (lambda: scenes_with(np.array([[7, -1, -1, -1]]), "pony"), "unknown class 'pony'"),
])
def test_cooccurrence_helpers_refuse_bad_input(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()
