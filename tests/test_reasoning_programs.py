"""Question programs: the executor on hand-built scenes, families, balancing, vocabularies, the blind baseline."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest
import torch

from conftest import random_scenes
from mmbook.data.scene_captions import RELATIONS, relation_phrase
from mmbook.data.scenes import KIND_OF
from mmbook.data.shapes import make_shape_scenes
from mmbook.reasoning.programs import shape_objects
from mmbook.reasoning import (
    FAMILIES,
    ProgramError,
    QuestionSet,
    SceneObject,
    answer_vocabulary,
    execute,
    families_for,
    generate_questions,
    question_prior_accuracy,
    question_vocabulary,
    scene_objects,
)
from mmbook.reasoning.programs import BALANCE_SLACK, object_attributes
from mmbook.text.vocab import UNK_ID


def cifar_object(box: tuple[float, float, float, float], name: str) -> SceneObject:
    return SceneObject(box, {"class": name, "kind": KIND_OF[name], **object_attributes(box)})


def shape_object(box: tuple[float, float, float, float], shape: str, colour: str) -> SceneObject:
    return SceneObject(box, {"shape": shape, "colour": colour, **object_attributes(box)})


# A small cat at the top left (centre 12, 12), a big truck at the top right (48, 18) and a medium dog at the
# bottom left (16, 48). The cat is left of the truck, the dog below the cat and left of the truck (|dx| 32 >= |dy| 30).
# Distances: cat-truck 36.5, cat-dog 36.2 (a near tie), truck-dog 43.9.
CAT, TRUCK, DOG = cifar_object((2, 2, 22, 22), "cat"), cifar_object((34, 4, 62, 32), "truck"), \
    cifar_object((4, 36, 28, 60), "dog")
SCENE = [CAT, TRUCK, DOG]


def the(name: str) -> list[list[str]]:
    return [["scene"], ["filter", "class", name], ["unique"]]


def test_hand_built_objects_have_the_expected_attributes():
    assert CAT.attributes == {"class": "cat", "kind": "animal", "size": "small", "place": "left", "row": "top"}
    assert TRUCK.attributes == {"class": "truck", "kind": "vehicle", "size": "big", "place": "right", "row": "top"}
    assert DOG.attributes == {"class": "dog", "kind": "animal", "size": "medium", "place": "left", "row": "bottom"}


@pytest.mark.parametrize("program, answer", [
    ([["scene"], ["count"]], "3"),
    ([["scene"], ["filter", "kind", "animal"], ["count"]], "2"),
    ([["scene"], ["filter", "kind", "animal"], ["filter", "place", "right"], ["count"]], "0"),
    ([["scene"], ["filter", "class", "horse"], ["exist"]], "no"),
    ([["scene"], ["filter", "size", "big"], ["exist"]], "yes"),
    ([["scene"], ["filter", "kind", "vehicle"], ["unique"], ["query", "class"]], "truck"),
    (the("cat") + [["query", "size"]], "small"),
    (the("dog") + [["query", "size"]], "medium"),
    (the("truck") + [["query", "place"]], "right"),
    (the("dog") + [["query", "row"]], "bottom"),
    (the("cat") + [["relate", "below"], ["unique"], ["query", "class"]], "dog"),
    (the("cat") + [["relate", "right"], ["unique"], ["query", "class"]], "truck"),
    (the("dog") + [["relate", "above"], ["unique"], ["query", "class"]], "cat"),
    (the("truck") + [["relate", "left"], ["count"]], "2"),
    (the("truck") + [["relate", "left"], ["filter", "row", "bottom"], ["unique"], ["query", "class"]], "dog"),
    (the("truck") + [["relate", "above"], ["exist"]], "no"),
    (the("truck") + [["closest"], ["unique"], ["query", "class"]], "cat"),
    (the("truck") + [["farthest"], ["unique"], ["query", "class"]], "dog"),
    (the("dog") + [["closest"], ["unique"], ["query", "class"]], "cat"),
    (the("cat") + [["closest"], ["count"]], "2"),  # 36.2 and 36.5: a tie within TIE_MARGIN
    (the("cat") + [["same", "kind"], ["unique"], ["query", "class"]], "dog"),
    (the("truck") + [["same", "kind"], ["count"]], "0"),
    (the("dog") + [["same", "place"], ["count"]], "1"),
    (the("cat") + [["query", "size"]] + the("dog") + [["query", "size"], ["equal_attr"]], "no"),
    (the("cat") + [["query", "place"]] + the("dog") + [["query", "place"], ["equal_attr"]], "yes"),
    ([["scene"], ["filter", "kind", "animal"], ["count"], ["scene"], ["filter", "kind", "vehicle"], ["count"],
      ["greater"]], "yes"),
    ([["scene"], ["filter", "kind", "animal"], ["count"], ["scene"], ["filter", "kind", "vehicle"], ["count"],
      ["less"]], "no"),
    ([["scene"], ["filter", "kind", "vehicle"], ["count"], ["scene"], ["filter", "kind", "animal"], ["count"],
      ["less"]], "yes"),
    ([["scene"], ["filter", "kind", "animal"], ["count"], ["scene"], ["filter", "place", "left"], ["count"],
      ["equal_integer"]], "yes"),
    ([["scene"], ["filter", "kind", "animal"], ["count"], ["scene"], ["count"], ["equal_integer"]], "no"),
])
def test_execute_gives_the_known_answer(program, answer):
    assert execute(program, SCENE) == answer
    assert execute(json.loads(json.dumps(program)), SCENE) == answer  # programs are JSON-able


def test_execute_on_hand_built_shapes():
    # red square at (5, 5), blue circle at (15, 5) (distance 10), green circle at (55, 55), yellow square at (5, 45).
    objects = [shape_object((0, 0, 10, 10), "square", "red"), shape_object((10, 0, 20, 10), "circle", "blue"),
               shape_object((50, 50, 60, 60), "circle", "green"), shape_object((0, 40, 10, 50), "square", "yellow")]
    red = [["scene"], ["filter", "colour", "red"], ["unique"]]
    assert execute(red + [["closest"], ["unique"], ["query", "shape"]], objects) == "circle"
    assert execute(red + [["closest"], ["unique"], ["query", "colour"]], objects) == "blue"
    assert execute(red + [["farthest"], ["unique"], ["query", "colour"]], objects) == "green"
    assert execute(red + [["same", "shape"], ["count"]], objects) == "1"
    assert execute(red + [["same", "shape"], ["unique"], ["query", "colour"]], objects) == "yellow"
    assert execute(red + [["query", "row"]], objects) == "top"
    assert execute([["scene"], ["filter", "shape", "circle"], ["count"]], objects) == "2"
    alone = [shape_object((0, 0, 10, 10), "square", "red")]
    assert execute(red + [["closest"], ["count"]], alone) == "0"


@pytest.mark.parametrize("program, message", [
    ([["scene"], ["paint", "red"]], "unknown function 'paint'"),
    ([["scene"], ["filter", "kind"], ["count"]], "filter takes 2 argument"),
    ([["scene"], ["count", "kind"]], "count takes 0 argument"),
    ([["scene"], ["filter", "color", "red"], ["count"]], "unknown attribute 'color'"),
    ([["scene"], ["filter", "colour", "red"], ["count"]], "have no attribute 'colour'"),
    ([["scene"], ["filter", "kind", "plant"], ["count"]], "'plant' is not a value of 'kind'"),
    (the("horse") + [["query", "size"]], "refers to an object that does not exist"),
    ([["scene"], ["filter", "kind", "animal"], ["query", "class"]], "2 objects match"),
    ([["scene"], ["unique"], ["query", "class"]], "3 objects match"),
    (the("truck") + [["relate", "left"], ["unique"], ["query", "class"]], "2 objects match"),
    (the("cat") + [["closest"], ["unique"], ["query", "class"]], "2 objects match"),
    (the("cat") + [["relate", "north"], ["count"]], "unknown direction 'north'"),
    (the("cat") + [["query", "shoe"]], "unknown attribute 'shoe'"),
    ([["scene"], ["count"], ["query", "class"]], "needs one object"),
    ([["scene"], ["count"], ["scene"], ["greater"]], "needs a number, got a set"),
    ([["scene"], ["greater"]], "needs 2 input"),
    ([["count"]], "needs 1 input"),
    (the("cat") + [["query", "size"]] + the("dog") + [["query", "class"], ["equal_attr"]], "cannot compare"),
    ([["scene"], ["filter", "kind", "animal"]], "ends with a set of objects"),
    ([["scene"], ["count"], ["scene"], ["count"]], "leaves 2 results"),
    ([], "non-empty list of steps"),
    ("count", "non-empty list of steps"),
    ([["scene"], "count"], "step 1 must be a list"),
    ([["scene"], ["filter", "kind", 3], ["count"]], "arguments must be strings"),
])
def test_bad_programs_raise_a_clear_error(program, message):
    with pytest.raises(ProgramError, match=re.escape(message)):
        execute(program, SCENE)


def test_program_error_is_a_value_error():
    assert issubclass(ProgramError, ValueError)
    with pytest.raises(ValueError, match="does not exist"):
        execute(the("horse") + [["query", "size"]], SCENE)


def test_relate_follows_the_books_relation_rule():
    scenes = random_scenes(60, per_class=2, seed=5)
    for objects in scene_objects(scenes):
        centres = np.array([o.centre for o in objects])
        for a, first in enumerate(objects):
            for b, second in enumerate(objects):
                if a == b:
                    continue
                phrase = relation_phrase(centres, a, b)
                for direction, words in RELATIONS.items():
                    program = the(second.attributes["class"]) + [["relate", direction],
                                                                 ["filter", "class", first.attributes["class"]],
                                                                 ["exist"]]
                    assert execute(program, objects) == ("yes" if words == phrase else "no")


# ---------------------------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cifar_objects():
    return scene_objects(random_scenes(240, per_class=5, seed=3))


@pytest.fixture(scope="module")
def shapes_objects():
    return shape_objects(make_shape_scenes(150, seed=4))


@pytest.fixture(scope="module")
def cifar_questions(cifar_objects):
    return generate_questions(cifar_objects, families_for("scenes"), per_scene=5, seed=0)


@pytest.fixture(scope="module")
def shape_questions(shapes_objects):
    return generate_questions(shapes_objects, families_for("shapes"), per_scene=5, seed=0)


def test_scene_objects_read_the_scene_set():
    scenes = random_scenes(20, per_class=2, seed=1)
    objects = scene_objects(scenes)
    assert [len(o) for o in objects] == scenes.counts.tolist()
    first = objects[0][0]
    box = scenes.boxes[0, 0].tolist()
    assert first.box == tuple(box)
    assert first.attributes["class"] == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                         "ship", "truck"][int(scenes.classes[0, 0])]
    assert first.attributes["place"] == ("left" if (box[0] + box[2]) / 2 < 32 else "right")


def test_families_cover_the_required_questions():
    assert set(families_for("scenes")) >= {"exist", "count", "query_class", "query_kind", "query_size", "query_place",
                                           "compare_size", "compare_count", "relate"}
    assert families_for("shapes") == ("shape_of_colour", "horizontal_place", "vertical_place", "closest_shape",
                                      "farthest_shape", "count_same_shape")
    assert [FAMILIES[f].relational for f in families_for("shapes")] == [False] * 3 + [True] * 3
    assert FAMILIES["relate"].relational and not FAMILIES["exist"].relational


@pytest.mark.parametrize("source", ["scenes", "shapes"])
def test_every_answer_is_the_programs_answer(source, cifar_objects, shapes_objects, cifar_questions, shape_questions):
    objects, questions = (cifar_objects, cifar_questions) if source == "scenes" else (shapes_objects, shape_questions)
    assert len(questions) >= 0.9 * 5 * len(objects)
    assert set(questions.family) == set(families_for(source))
    for i, program, answer, family in zip(questions.scene_index.tolist(), questions.programs, questions.answers,
                                          questions.family):
        assert execute(program, objects[i]) == answer
        assert answer in FAMILIES[family].answers
        assert json.loads(json.dumps(program)) == program
    # No scene is asked the same question twice.
    pairs = list(zip(questions.scene_index.tolist(), questions.questions))
    assert len(set(pairs)) == len(pairs)


@pytest.mark.parametrize("source", ["scenes", "shapes"])
def test_question_texts_are_plain_english_in_the_fixed_vocabulary(source, cifar_questions, shape_questions):
    questions = cifar_questions if source == "scenes" else shape_questions
    vocab = question_vocabulary(source)
    ids, lengths = questions.tokens(vocab)
    assert ids.shape[0] == len(questions) and (ids != UNK_ID).all()
    assert lengths.min() >= 4
    for text in questions.questions:
        assert text == text.strip() and "  " not in text and text == text.lower()
        assert not re.search(r"\ba [aeiou]", text) and not re.search(r"\ban [^aeiou]", text), text
    answers = answer_vocabulary(source)
    assert questions.answer_ids(answers).tolist() == [answers.index[a] for a in questions.answers]
    for family in families_for(source):
        assert set(FAMILIES[family].answers) <= set(answers.classes)


def test_generation_is_deterministic_for_a_seed(cifar_objects, cifar_questions):
    again = generate_questions(cifar_objects, families_for("scenes"), per_scene=5, seed=0)
    assert again.questions == cifar_questions.questions and again.programs == cifar_questions.programs
    assert again.answers == cifar_questions.answers and torch.equal(again.scene_index, cifar_questions.scene_index)
    other = generate_questions(cifar_objects, families_for("scenes"), per_scene=5, seed=1)
    assert other.questions != cifar_questions.questions


def test_balancing_flattens_the_answer_distribution(cifar_objects):
    objects = cifar_objects + scene_objects(random_scenes(260, per_class=5, seed=8))
    balanced = generate_questions(objects, ["exist", "count"], per_scene=2, seed=0)
    raw = generate_questions(objects, ["exist", "count"], per_scene=2, seed=0, balance=False)

    def shares(questions: QuestionSet, family: str) -> list[float]:
        counts = Counter(a for a, f in zip(questions.answers, questions.family) if f == family)
        return sorted(c / sum(counts.values()) for c in counts.values())

    assert len(balanced) > 900
    assert abs(shares(balanced, "exist")[-1] - 0.5) < 0.03
    assert shares(raw, "exist")[-1] > 0.6  # most candidates are "no": a random class is rarely in the scene
    count_balanced, count_raw = shares(balanced, "count"), shares(raw, "count")
    assert len(count_balanced) == 5 and count_balanced[-1] - count_balanced[0] < 0.03
    assert count_raw[-1] - count_raw[0] > 0.2
    # The rule itself: no answer leads the least frequent one by more than the slack (+1 for the last acceptance).
    for family in ("exist", "count"):
        counts = Counter(a for a, f in zip(balanced.answers, balanced.family) if f == family)
        least = min(counts.values())
        assert max(counts.values()) - least <= max(2, BALANCE_SLACK * least) + 1


def test_bad_generation_arguments_raise_clear_errors(cifar_objects, shapes_objects):
    with pytest.raises(ValueError, match=r"unknown question families \['exists'\].*exist, count"):
        generate_questions(cifar_objects, ["exists"], per_scene=1, seed=0)
    with pytest.raises(ValueError, match="family 'relate' asks about scenes, but the scenes are shapes"):
        generate_questions(shapes_objects, ["relate"], per_scene=1, seed=0)
    with pytest.raises(ValueError, match="per_scene must be a positive int"):
        generate_questions(cifar_objects, ["exist"], per_scene=0, seed=0)
    with pytest.raises(ValueError, match="no scenes"):
        generate_questions([], ["exist"], per_scene=1, seed=0)
    with pytest.raises(ValueError, match="unknown source 'clevr'"):
        question_vocabulary("clevr")


def test_out_of_vocabulary_words_and_answers_raise(cifar_questions):
    with pytest.raises(ValueError, match="not in the answer vocabulary"):
        cifar_questions.answer_ids(answer_vocabulary("shapes"))
    with pytest.raises(ValueError, match="not in the vocabulary"):
        cifar_questions.tokens(question_vocabulary("shapes"))
    odd = QuestionSet(torch.tensor([0]), ["query_class"], ["what is the animal"], [the("cat")], ["kitten"])
    with pytest.raises(ValueError, match="'kitten'.*not in the answer vocabulary"):
        odd.answer_ids(answer_vocabulary("scenes"))


def test_subset_keeps_questions_together(cifar_questions):
    part = cifar_questions.subset(torch.tensor([3, 0]))
    assert len(part) == 2
    assert part.questions == [cifar_questions.questions[3], cifar_questions.questions[0]]
    assert part.answers == [cifar_questions.answers[3], cifar_questions.answers[0]]
    assert part.scene_index.tolist() == [int(cifar_questions.scene_index[3]), int(cifar_questions.scene_index[0])]
    mask = torch.tensor([f == "exist" for f in cifar_questions.family])
    assert set(cifar_questions.subset(mask).family) == {"exist"}


def questions(rows: list[tuple[str, str, str]]) -> QuestionSet:
    """A question set from ``(family, text, answer)`` rows (the programs do not matter to the baseline)."""
    return QuestionSet(torch.zeros(len(rows), dtype=torch.int64), [r[0] for r in rows], [r[1] for r in rows],
                       [[["scene"], ["count"]] for _ in rows], [r[2] for r in rows])


def test_question_prior_accuracy_on_a_hand_built_set():
    train = questions([
        ("exist", "is there a cat", "yes"), ("exist", "is there a cat", "no"), ("exist", "is there a cat", "no"),
        ("exist", "is there a dog", "yes"),
        ("count", "how many objects are there", "2"), ("count", "how many objects are there", "2"),
        ("count", "how many objects are there", "3"),
    ])
    test = questions([
        ("exist", "is there a cat", "no"),      # text guess "no": right
        ("exist", "is there a cat", "yes"),     # wrong
        ("exist", "is there a dog", "no"),      # text guess "yes": wrong
        ("exist", "is there a frog", "no"),     # unseen text: family guess, a yes/no tie -> "no": right
        ("count", "how many objects are there", "2"),  # right
        ("count", "how many animals are there", "1"),  # family guess "2": wrong
        ("relate", "what is left of the cat", "cat"),  # family unseen: overall guess, a tie -> "2": wrong
    ])
    accuracy = question_prior_accuracy(train, test)
    assert accuracy == pytest.approx({"exist": 0.5, "count": 0.5, "relate": 0.0, "overall": 3 / 7})
    with pytest.raises(ValueError, match="needs training and test questions"):
        question_prior_accuracy(train, questions([]))


def test_question_prior_is_near_chance_on_balanced_shape_questions(shape_questions):
    half = len(shape_questions) // 2
    train = shape_questions.subset(torch.arange(half))
    test = shape_questions.subset(torch.arange(half, len(shape_questions)))
    accuracy = question_prior_accuracy(train, test)
    for family in ("shape_of_colour", "closest_shape", "farthest_shape", "horizontal_place", "vertical_place"):
        assert accuracy[family] < 0.65, (family, accuracy)
