"""Tests of the reference captions (mmbook.generation.references), on scenes of random source images: no data files."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from conftest import random_scenes
from mmbook.data.scene_captions import caption_vocabulary
from mmbook.generation.references import (
    BOS_ID, BOS_TOKEN, EOS_ID, EOS_TOKEN, GRAMMARS, SYNONYMS, generation_vocabulary, named_references,
    reference_captions, scene_references,
)
from mmbook.text.vocab import tokenize

# A big truck in the middle and a small cat at the top left.
BOXES = np.array([[16, 20, 44, 48], [0, 0, 20, 20]], dtype=np.float32)
CLASSES = np.array([9, 3])


@pytest.fixture(scope="module")
def scene_set():
    return random_scenes(300, per_class=5, seed=3)


@pytest.fixture(scope="module")
def references(scene_set):
    return scene_references(scene_set, per_scene=5, seed=0)


def test_vocabulary_is_fixed_and_holds_bos_and_eos():
    vocab = generation_vocabulary()
    assert vocab.itos[:4] == ["<pad>", "<unk>", BOS_TOKEN, EOS_TOKEN]
    assert (vocab.stoi[BOS_TOKEN], vocab.stoi[EOS_TOKEN]) == (BOS_ID, EOS_ID) == (2, 3)
    assert vocab.itos == generation_vocabulary().itos
    assert set(caption_vocabulary().itos) <= set(vocab.itos)  # describe_scenes captions encode too
    assert {w for words in SYNONYMS.values() for w in words} <= set(vocab.itos)


def test_count_per_scene_and_every_word_in_the_vocabulary(scene_set, references):
    vocab = generation_vocabulary()
    assert len(references) == len(scene_set) == 300
    assert all(len(refs) == 5 for refs in references)
    words = {w for refs in references for caption in refs for w in caption.split()}
    assert words <= set(vocab.itos) - {"<pad>", "<unk>", BOS_TOKEN, EOS_TOKEN}
    # No punctuation: splitting on spaces and the tokenizer agree.
    assert all(tokenize(caption) == caption.split() for refs in references for caption in refs)


def test_articles_agree_with_the_next_word(references):
    for refs in references:
        for caption in refs:
            words = caption.split()
            for article, word in zip(words, words[1:]):
                if article in ("a", "an"):
                    assert (article == "an") == (word[0] in "aeiou"), caption


def test_references_of_a_scene_differ(references):
    distinct = [len(set(refs)) for refs in references]
    assert min(distinct) >= 4
    assert sum(d == 5 for d in distinct) >= 0.95 * len(distinct)


def test_deterministic_given_the_seed(scene_set, references):
    assert scene_references(scene_set, per_scene=5, seed=0) == references
    other = scene_references(scene_set, per_scene=5, seed=1)
    assert sum(a != b for a, b in zip(references, other)) > 200


def test_every_grammar_is_used(scene_set, references):
    rng = np.random.default_rng(0)
    boxes, classes, counts = scene_set.boxes.numpy(), scene_set.classes.numpy(), scene_set.counts.numpy()
    named = [named_references(boxes[i, : counts[i]], classes[i, : counts[i]], rng, 5) for i in range(len(counts))]
    assert [[caption for _, caption in refs] for refs in named] == references  # same draws as scene_references
    used = Counter(name for refs in named for name, _ in refs)
    assert set(used) == {name for name, _ in GRAMMARS} and len(GRAMMARS) >= 6
    assert all(n > 0.5 * 300 * 5 / len(GRAMMARS) for n in used.values()), used  # roughly uniform
    assert all(len({name for name, _ in refs}) == 5 for refs in named)  # five different grammars per scene


def test_grammars_on_a_known_scene():
    rng = np.random.default_rng(0)
    write = dict(GRAMMARS)
    assert write["listing"](BOXES, CLASSES, rng) == "a small cat at the top left and a big truck in the middle"
    assert write["places"](BOXES, CLASSES, rng) == "a truck in the middle and a cat at the top left"
    salient = {write["salient"](BOXES, CLASSES, rng) for _ in range(30)}
    assert salient == {"a big truck in the middle",
                       "a big truck in the middle with a small cat at the top left"}
    counting = {write["counting"](BOXES, CLASSES, rng) for _ in range(60)}
    assert counting == {"one vehicle a truck and one animal a cat", "one animal a cat and one vehicle a truck",
                        "two objects a truck and a cat", "two objects a cat and a truck"}
    relations = {write["relation"](BOXES, CLASSES, rng) for _ in range(100)}
    assert "a cat above a truck" in relations and "a big truck below a small cat" in relations
    assert all(" left of " not in r and " right of " not in r for r in relations)  # the vertical offset is larger
    shorts = {write["short"](BOXES, CLASSES, rng) for _ in range(100)}
    assert {"a cat and a truck", "a kitten and a lorry", "a truck and a cat"} <= shorts
    biggest = {write["biggest"](BOXES, CLASSES, rng) for _ in range(100)}
    assert "there is a large lorry and a little kitten" in biggest
    assert all(b.split()[3] in ("big", "large") for b in biggest)  # biggest first


def test_one_object_scene_gets_distinct_references_from_every_grammar_but_one():
    """With one object, "salient" (the biggest object) writes what "listing" writes: six distinct references."""
    boxes, classes = np.array([[40, 40, 60, 60]], dtype=np.float32), np.array([0])
    refs = reference_captions(boxes, classes, np.random.default_rng(0), count=len(GRAMMARS))
    assert len(refs) == len(GRAMMARS) and len(set(refs)) == len(GRAMMARS) - 1
    refs = reference_captions(boxes, classes, np.random.default_rng(0), count=len(GRAMMARS) - 1)
    assert any(r.startswith("an airplane") or r.startswith("a plane") for r in refs)


def test_padding_rows_are_ignored():
    boxes = np.zeros((4, 4), dtype=np.float32)
    boxes[:2] = BOXES
    classes = np.array([9, 3, -1, -1])
    assert reference_captions(boxes, classes, np.random.default_rng(5)) == \
        reference_captions(BOXES, CLASSES, np.random.default_rng(5))


@pytest.mark.parametrize("count", [0, -1, len(GRAMMARS) + 1, 2.5, True])
def test_bad_count_raises(count):
    with pytest.raises(ValueError, match="count"):
        reference_captions(BOXES, CLASSES, np.random.default_rng(0), count=count)


def test_bad_scenes_raise(scene_set):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="no"):
        reference_captions(np.zeros((0, 4)), np.zeros(0, dtype=np.int64), rng)
    with pytest.raises(ValueError, match="no"):
        reference_captions(np.zeros((4, 4)), np.full(4, -1), rng)
    with pytest.raises(ValueError, match="classes"):
        reference_captions(BOXES, np.array([9]), rng)
    with pytest.raises(ValueError, match="per_scene"):
        scene_references(scene_set, per_scene=0)
    with pytest.raises(ValueError, match="per_scene"):
        scene_references(scene_set, per_scene=len(GRAMMARS) + 1)
