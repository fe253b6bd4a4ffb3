"""Tests of mmbook.alignment (contrastive loss, retrieval metrics, zero-shot, modality gap, checkers)
and of the scene captions of mmbook.data.scene_captions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from mmbook import alignment
from mmbook.alignment import (
    MatchingClassifier,
    TwoTower,
    caption_relevance,
    chance_recall_at_k,
    check_info_nce,
    check_recall_at_k,
    class_embeddings,
    close_modality_gap,
    contrastive_loss,
    info_nce,
    info_nce_loop,
    matching_loss,
    matching_similarity,
    modality_gap,
    recall_at_k,
    retrieval_report,
    sample_per_class,
    zero_shot_accuracy,
)
from mmbook.data.scene_captions import (
    PROMPT_TEMPLATES,
    caption_vocabulary,
    describe_scene,
    describe_scenes,
    encode_captions,
    place_phrase,
    shared_captions,
    size_word,
)
from mmbook.data.scenes import make_scenes


def _unit(*shape: int, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


@pytest.fixture(scope="module")
def scene_set():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(10).repeat_interleave(3)
    images = torch.randint(0, 256, (len(labels), 3, 32, 32), generator=generator, dtype=torch.uint8)
    return make_scenes(200, images, labels, seed=5)


# --- captions ---------------------------------------------------------------------------------------


def test_caption_lists_every_object_with_size_and_place():
    boxes = np.array([[40.0, 2, 70, 32], [2, 40, 20, 58]])  # a big object top right, a small one bottom left
    caption = describe_scene(boxes, np.array([9, 3]), np.random.default_rng(0), kind_probability=0.0)
    # Objects are listed left to right; the relation compares two of them.
    assert caption.startswith("a small cat at the bottom left and a big truck at the top right where the ")
    assert caption.endswith(("the cat is left of the truck", "the truck is right of the cat"))


def test_size_and_place_words():
    assert [size_word(s) for s in (18, 22, 23, 26, 27, 30)] == ["small", "small", "medium", "medium", "big", "big"]
    assert place_phrase(10, 10) == "at the top left" and place_phrase(32, 32) == "in the middle"
    assert place_phrase(63, 63) == "at the bottom right" and place_phrase(63, 32) == "on the right"


def test_kind_probability_one_names_kinds_only():
    boxes = np.array([[0.0, 0, 20, 20], [30, 30, 50, 50]])
    caption = describe_scene(boxes, np.array([3, 9]), np.random.default_rng(0), kind_probability=1.0)
    assert "cat" not in caption and "truck" not in caption and "animal" in caption and "vehicle" in caption


def test_describe_scenes_is_deterministic_and_in_vocabulary(scene_set):
    captions = describe_scenes(scene_set, seed=1)
    assert captions == describe_scenes(scene_set, seed=1)
    assert captions != describe_scenes(scene_set, seed=2)
    tokens = encode_captions(captions)
    assert tokens.shape[0] == len(scene_set) and int(tokens.min()) >= 0
    assert int((tokens == 1).sum()) == 0, "no caption word may be unknown (<unk>)"
    for count, caption in zip(scene_set.counts.tolist(), captions):
        assert caption.count(" and ") == count - 1


def test_prompts_are_in_the_caption_vocabulary():
    encode_captions([t.format("dog") for t in PROMPT_TEMPLATES])
    with pytest.raises(ValueError, match="outside the caption vocabulary"):
        encode_captions(["a photo of a dog"])


def test_shared_captions_counts():
    stats = shared_captions(["a", "b", "a", "c", "a", "b"])
    assert stats == {"scenes": 6, "unique": 3, "shared": 2, "scenes_with_shared_caption": 5, "largest_group": 3}


def test_bad_kind_probability(scene_set):
    with pytest.raises(ValueError, match="kind_probability"):
        describe_scenes(scene_set, kind_probability=1.5)


# --- the loss ---------------------------------------------------------------------------------------


def test_info_nce_matches_the_loop_reference():
    image, text = _unit(7, 5, seed=1), _unit(7, 5, seed=2)
    for temperature in (0.07, 0.5, 2.0):
        assert torch.allclose(info_nce(image, text, temperature), info_nce_loop(image, text, temperature), atol=1e-5)


def test_info_nce_is_symmetric_and_small_for_aligned_pairs():
    image, text = _unit(6, 8, seed=3), _unit(6, 8, seed=4)
    assert torch.allclose(info_nce(image, text, 0.1), info_nce(text, image, 0.1))
    aligned = info_nce(image, image, 0.01)
    assert float(aligned) < 1e-3 < float(info_nce(image, text, 0.01))
    # At a huge temperature all logits are equal: the loss is log(B).
    assert math.isclose(float(info_nce(image, text, 1e6)), math.log(6), rel_tol=1e-4)


def test_info_nce_bad_input():
    image = _unit(4, 8)
    with pytest.raises(ValueError, match="batch sizes differ"):
        info_nce(image, _unit(5, 8), 0.1)
    with pytest.raises(ValueError, match="embedding sizes differ"):
        info_nce(image, _unit(4, 6), 0.1)
    for bad in (0.0, -0.1, float("nan"), torch.tensor(-1.0)):
        with pytest.raises(ValueError, match="temperature must be positive"):
            info_nce(image, image, bad)
    with pytest.raises(ValueError, match="batch is empty"):
        info_nce(torch.zeros(0, 8), torch.zeros(0, 8), 0.1)


def test_two_tower_outputs_unit_vectors_and_clamped_scale():
    model = TwoTower(len(caption_vocabulary()), dim=16, width=8)
    batch = {"image": torch.randn(3, 3, 64, 64), "text": encode_captions(["a cat", "a big dog on the left", "a ship"])}
    out = model(batch)
    assert out["image"].shape == (3, 16) and out["text"].shape == (3, 16)
    assert torch.allclose(out["image"].norm(dim=1), torch.ones(3), atol=1e-5)
    assert math.isclose(model.temperature, 0.07, rel_tol=1e-5)
    with torch.no_grad():
        model.log_scale.fill_(10.0)  # far beyond log(100)
    assert math.isclose(float(model.scale.detach()), 100.0, rel_tol=1e-5)
    loss = contrastive_loss(model(batch), batch)
    loss.backward()
    assert model.image_projection.weight.grad is not None and model.text_tower.embedding.weight.grad is not None


def test_two_tower_bad_input():
    with pytest.raises(ValueError, match="temperature must be positive"):
        TwoTower(50, temperature=0.0)
    model = TwoTower(len(caption_vocabulary()), dim=8, width=8)
    with pytest.raises(ValueError, match=r"\(B, 3, 64, 64\)"):
        model.encode_image(torch.randn(2, 3, 32, 32))


def test_fixed_temperature_is_not_learned():
    model = TwoTower(50, dim=8, width=8, temperature=0.5, learn_temperature=False)
    assert not model.log_scale.requires_grad and math.isclose(model.temperature, 0.5, rel_tol=1e-5)


# --- retrieval --------------------------------------------------------------------------------------


def test_recall_at_k_one_correct_item():
    similarity = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.7, 0.1], [0.1, 0.2, 0.3]])
    relevant = torch.eye(3, dtype=torch.bool)
    assert recall_at_k(similarity, relevant, 1) == pytest.approx(2 / 3)
    assert recall_at_k(similarity, relevant, 2) == pytest.approx(1.0)
    assert recall_at_k(similarity, relevant, 1, "fraction") == pytest.approx(2 / 3)


def test_recall_definitions_differ_with_several_correct_items():
    similarity = torch.tensor([[0.9, 0.8, 0.1, 0.0]])
    relevant = torch.tensor([[True, False, True, True]])
    assert recall_at_k(similarity, relevant, 2, "any") == 1.0
    assert recall_at_k(similarity, relevant, 2, "fraction") == pytest.approx(1 / 3)


def test_chance_recall():
    relevant = torch.eye(10, dtype=torch.bool)
    assert chance_recall_at_k(relevant, 1) == pytest.approx(0.1)
    assert chance_recall_at_k(relevant, 5) == pytest.approx(0.5)
    relevant[0, 1] = True  # query 0 has two correct items: P(hit in top 1) = 0.2
    assert chance_recall_at_k(relevant, 1) == pytest.approx((0.2 + 9 * 0.1) / 10)
    # A simulated random ranking agrees with the formula.
    generator = torch.Generator().manual_seed(0)
    several = torch.rand(50, 40, generator=generator) < 0.1
    several[torch.arange(40), torch.arange(40)] = True
    several[40:, 0] = True
    simulated = np.mean([recall_at_k(torch.rand(50, 40, generator=generator), several, 3) for _ in range(400)])
    assert simulated == pytest.approx(chance_recall_at_k(several, 3), abs=0.01)


def test_recall_bad_input():
    similarity, relevant = torch.randn(3, 4), torch.ones(3, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="larger than the gallery"):
        recall_at_k(similarity, relevant, 5)
    with pytest.raises(ValueError, match="gallery is empty"):
        recall_at_k(torch.zeros(3, 0), torch.zeros(3, 0, dtype=torch.bool), 1)
    with pytest.raises(ValueError, match="k must be a positive int"):
        recall_at_k(similarity, relevant, 0)
    with pytest.raises(ValueError, match="bool tensor"):
        recall_at_k(similarity, relevant.float(), 1)
    with pytest.raises(ValueError, match="no correct item"):
        recall_at_k(similarity, torch.zeros(3, 4, dtype=torch.bool), 1)
    with pytest.raises(ValueError, match="definition"):
        recall_at_k(similarity, relevant, 1, "all")
    with pytest.raises(ValueError, match="gallery size"):
        chance_recall_at_k(relevant, 5)


def test_caption_relevance_groups_identical_captions():
    relevant = caption_relevance(["x", "y", "x"])
    assert relevant.tolist() == [[True, False, True], [False, True, False], [True, False, True]]


def test_retrieval_report_perfect_and_keys():
    embeddings = _unit(20, 16, seed=5)
    report = retrieval_report(embeddings, embeddings, [f"c{i}" for i in range(20)])
    for direction in ("text_to_image", "image_to_text"):
        assert report[f"recall_at_1_{direction}"] == 1.0
        assert report[f"chance_at_10_{direction}"] == pytest.approx(0.5)
        assert report[f"recall_fraction_at_5_{direction}"] == 1.0
    with pytest.raises(ValueError, match="one per pair"):
        retrieval_report(embeddings, embeddings, ["a"])
    with pytest.raises(ValueError, match="batch sizes differ"):
        retrieval_report(embeddings, embeddings[:5], ["a"] * 20)


# --- zero-shot, probes, gap -------------------------------------------------------------------------


def test_zero_shot_accuracy_and_class_embeddings():
    classes = _unit(3, 8, seed=6)
    labels = torch.tensor([0, 1, 2, 2])
    assert zero_shot_accuracy(classes[labels], classes, labels) == 1.0
    model = TwoTower(len(caption_vocabulary()), dim=8, width=8)
    vectors = class_embeddings(model, ["cat", "dog"], PROMPT_TEMPLATES)
    assert vectors.shape == (2, 8) and torch.allclose(vectors.norm(dim=1), torch.ones(2), atol=1e-5)
    with pytest.raises(ValueError, match="templates"):
        class_embeddings(model, ["cat"], ["a cat"])
    with pytest.raises(ValueError, match="labels"):
        zero_shot_accuracy(classes, classes, labels)


def test_sample_per_class():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    index = sample_per_class(labels, 2)
    assert sorted(labels[index].tolist()) == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="fewer than per_class"):
        sample_per_class(labels, 3)


def test_modality_gap_and_its_removal():
    image = F.normalize(_unit(50, 8, seed=7) + torch.tensor([2.0] + [0.0] * 7), dim=1)
    text = F.normalize(_unit(50, 8, seed=8) - torch.tensor([2.0] + [0.0] * 7), dim=1)
    gap = modality_gap(image, text)
    assert gap > 1.0
    closed_image, closed_text = close_modality_gap(image, text)
    assert modality_gap(closed_image, closed_text) < 0.3 * gap
    assert torch.allclose(closed_image.norm(dim=1), torch.ones(50), atol=1e-5)
    assert modality_gap(image, image) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="at least one embedding"):
        modality_gap(image[:0], text)


# --- matching baseline ------------------------------------------------------------------------------


def test_matching_classifier_scores_every_pair():
    model = MatchingClassifier(len(caption_vocabulary()), width=8)
    batch = {"image": torch.randn(4, 3, 64, 64), "text": encode_captions(["a cat", "a dog", "a ship", "a big frog"])}
    output = model(batch)
    assert output.shape == (4, 2)
    matching_loss(output, batch).backward()
    with torch.no_grad():
        image_features, text_features = model.image_tower(batch["image"]), model.text_tower(batch["text"])
        scores = matching_similarity(model, image_features, text_features, chunk=3)
    assert scores.shape == (4, 4)
    assert torch.allclose(scores.diagonal(), model.score(image_features, text_features), atol=1e-5)


# --- checkers ---------------------------------------------------------------------------------------


def test_check_info_nce_accepts_a_correct_loss(capsys):
    def mine(image, text, temperature):
        logits = image @ text.T / temperature
        targets = torch.arange(len(image))
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2

    check_info_nce(mine)
    assert "All checks passed" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (lambda i, t, tau: F.cross_entropy(i @ t.T / tau, torch.arange(len(i))), "only the image -> text direction"),
    (lambda i, t, tau: info_nce(i, t, 1 / tau), "multiplies instead of divides"),
    (lambda i, t, tau: info_nce(i, t, tau) * len(i), "sum over the batch"),
    (lambda i, t, tau: torch.tensor(0.0), "the targets are the diagonal"),
])
def test_check_info_nce_names_the_mistake(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        check_info_nce(wrong)


def test_check_recall_at_k(capsys):
    check_recall_at_k(lambda s, r, k: recall_at_k(s, r, k))
    assert "All checks passed" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="descending"):
        check_recall_at_k(lambda s, r, k: recall_at_k(-s, r, k))
    with pytest.raises(AssertionError, match="fraction of correct items"):
        check_recall_at_k(lambda s, r, k: recall_at_k(s, r, k, "fraction"))
    with pytest.raises(AssertionError, match="raised"):
        check_recall_at_k(lambda s, r, k: 1 / 0)


def test_checkers_reject_non_functions():
    with pytest.raises(TypeError, match="expects a function"):
        check_info_nce(3)
    with pytest.raises(TypeError, match="expects a function"):
        check_recall_at_k("recall")


# --- the recipe, end to end on a tiny data set ------------------------------------------------------


def test_train_scene_retrieval_runs_and_reports(tiny_data):
    result = alignment.train_scene_retrieval(scenes=96, test_scenes=40, zero_shot_scenes=80, epochs=1, batch_size=32,
                                             quick=True, device="cpu")
    for key in ("recall_at_1_text_to_image", "recall_at_10_image_to_text", "zero_shot_accuracy", "modality_gap",
                "shared_test_captions", "temperature"):
        assert key in result
    assert result["gallery"] == 40
    recall_1, recall_10 = result["recall_at_1_text_to_image"], result["recall_at_10_text_to_image"]
    assert recall_1 <= recall_10 and (40 * recall_10) == pytest.approx(round(40 * recall_10))  # k hits in 40
    assert result["zero_shot_images"] > 0 and result["epochs"] == 1
    assert set(alignment.RETRIEVAL_DEFAULTS) == {False, True}


def test_presence_classifier_targets_loss_and_accuracy():
    classes = torch.tensor([[3, 9, -1, -1], [0, -1, -1, -1]])
    targets = alignment.presence_targets(classes)
    assert targets.tolist()[0] == [0, 0, 0, 1, 0, 0, 0, 0, 0, 1] and targets.sum().item() == 3
    model = alignment.PresenceClassifier()
    batch = {"image": torch.randn(2, 3, 64, 64), "classes": classes}
    output = model(batch)
    assert output.shape == (2, 10)
    alignment.presence_loss(output, batch).backward()
    right, counted = alignment.presence_accuracy(torch.nn.functional.one_hot(torch.tensor([9, 1]), 10).float(), batch)
    assert int(right) == 1 and counted == 2


def test_layout_dropout_leaves_out_sizes_and_places():
    boxes = np.array([[0.0, 0, 20, 20], [30, 30, 50, 50]])
    caption = describe_scene(boxes, np.array([3, 9]), np.random.default_rng(0), kind_probability=0.0,
                             layout_dropout=1.0)
    assert caption.startswith("a cat and a truck where the ")
    assert not any(word in caption.split() for word in ("small", "medium", "big", "top", "middle", "bottom"))


def test_scene_pairs_drop_layout_only_in_training(tiny_data):
    _, train_captions, _ = alignment.scene_pairs("train", 60, quick=True)
    _, test_captions, _ = alignment.scene_pairs("test", 60, quick=True)
    has_layout = lambda c: any(w in c.split() for w in ("small", "medium", "big"))
    assert all(has_layout(c) for c in test_captions)
    assert 0 < sum(has_layout(c) for c in train_captions) < len(train_captions)
    with pytest.raises(ValueError, match="layout_dropout"):
        alignment.scene_pairs("train", 10, quick=True, layout_dropout=2.0)


def test_cli_scene_retrieval_writes_the_recall_figures(tiny_data, tmp_path):
    import json

    from mmbook.cli import main

    out = tmp_path / "retrieval.json"
    assert main(["train", "--task", "scene-retrieval", "--quick", "--epochs", "1", "--scenes", "64",
                 "--device", "cpu", "--no-progress", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    for direction in ("text_to_image", "image_to_text"):
        recalls = [result[f"recall_at_{k}_{direction}"] for k in (1, 5, 10)]
        assert recalls == sorted(recalls), f"recall@k must not fall as k grows: {recalls}"
    assert result["task"] == "scene-retrieval" and result["train_images"] == 64 and result["epochs"] == 1
    assert result["test_images"] == result["gallery"] == alignment.RETRIEVAL_DEFAULTS[True]["test_scenes"]
    assert "zero_shot_accuracy" in result and len(result["history"]) == 1
