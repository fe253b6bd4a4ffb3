"""Tests of mmbook.alignment (contrastive loss, retrieval metrics, zero-shot, modality gap, checkers)
and of the scene captions of mmbook.data.scene_captions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from conftest import random_scenes
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


def _unit(*shape: int, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


@pytest.fixture(scope="module")
def scene_set():
    return random_scenes(200, per_class=3, seed=5)


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


def test_two_tower_outputs_unit_vectors_and_the_scale_is_clamped_after_the_step_not_in_forward():
    model = TwoTower(len(caption_vocabulary()), dim=16, width=8)
    batch = {"image": torch.randn(3, 3, 64, 64), "text": encode_captions(["a cat", "a big dog on the left", "a ship"])}
    out = model(batch)
    assert out["image"].shape == (3, 16) and out["text"].shape == (3, 16)
    assert torch.allclose(out["image"].norm(dim=1), torch.ones(3), atol=1e-5)
    assert math.isclose(model.temperature, 0.07, rel_tol=1e-5)
    with torch.no_grad():
        model.log_scale.fill_(10.0)  # far beyond log(100)
    # No clamp in the forward pass: the scale keeps its gradient (open_clip clamps the parameter instead).
    loss = contrastive_loss(model(batch), batch)
    loss.backward()
    assert model.log_scale.grad is not None and float(model.log_scale.grad) != 0.0
    assert model.image_projection.weight.grad is not None and model.text_tower.embedding.weight.grad is not None
    alignment.clamp_logit_scale_(model)
    assert math.isclose(float(model.scale.detach()), 100.0, rel_tol=1e-5)
    with torch.no_grad():
        model.log_scale.fill_(-3.0)
    alignment.clamp_logit_scale_(model)
    assert math.isclose(float(model.scale.detach()), 1.0, rel_tol=1e-6)


def test_weight_decay_groups_leave_out_the_log_scale_and_biases():
    model = TwoTower(50, dim=8, width=8, logit_bias=-10.0)
    decay, no_decay = alignment.contrastive_parameter_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert any(p is model.log_scale for p in no_decay["params"]) and any(p is model.logit_bias for p in no_decay["params"])
    assert any(p is model.image_projection.weight for p in decay["params"])
    assert not any(p is model.image_projection.bias for p in decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_fit_calls_after_step_once_per_step():
    from mmbook.data import DeviceLoader
    from mmbook.training import fit

    calls = []
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 2))
    wrapped = _ImageOnly(model)
    data = {"image": torch.randint(0, 256, (16, 3, 4, 4), dtype=torch.uint8), "label": torch.randint(0, 2, (16,))}
    fit(wrapped, DeviceLoader(data, 4, shuffle=True, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)), epochs=2, lr=1e-2,
        after_step=lambda m: calls.append(m), progress=False, device="cpu")
    assert len(calls) == 8 and all(m is wrapped for m in calls)


class _ImageOnly(torch.nn.Module):
    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, batch):
        return self.net(batch["image"])


# --- the losses: negatives per pair, SigLIP, gathering over ranks -------------------------------------


def test_info_nce_with_blocks_is_the_mean_of_the_blocks_losses():
    image, text = _unit(12, 8, seed=1), _unit(12, 8, seed=2)
    blocks = [info_nce(image[i : i + 4], text[i : i + 4], 0.1) for i in (0, 4, 8)]
    assert torch.isclose(info_nce(image, text, 0.1, negatives=4), torch.stack(blocks).mean(), atol=1e-6)
    assert torch.isclose(info_nce(image, text, 0.1, negatives=12), info_nce(image, text, 0.1))
    # One pair per block: nothing to contrast with, the loss is 0.
    assert float(info_nce(image, text, 0.1, negatives=1)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="divides the batch"):
        info_nce(image, text, 0.1, negatives=5)


def test_sigmoid_loss_matches_the_papers_formula():
    image, text = _unit(6, 8, seed=3), _unit(6, 8, seed=4)
    scale, bias = 10.0, -10.0
    expected = 0.0
    for i in range(6):
        for j in range(6):
            label = 1.0 if i == j else -1.0
            logit = scale * float(image[i] @ text[j]) + bias
            expected += math.log1p(math.exp(-label * logit))  # -log sigmoid(label * logit)
    assert float(alignment.sigmoid_loss(image, text, scale, bias)) == pytest.approx(expected / 6, rel=1e-5)
    two = [alignment.sigmoid_loss(image[i : i + 3], text[i : i + 3], scale, bias) for i in (0, 3)]
    assert torch.isclose(alignment.sigmoid_loss(image, text, scale, bias, negatives=3), torch.stack(two).mean())
    model = TwoTower(50, dim=8, width=8)
    batch = {"image": torch.randn(2, 3, 64, 64), "text": torch.randint(1, 50, (2, 5))}
    with pytest.raises(ValueError, match="logit bias"):
        alignment.sigmoid_contrastive_loss(model(batch), batch)
    siglip = TwoTower(50, dim=8, width=8, temperature=0.1, logit_bias=-10.0)
    output = siglip(batch)
    assert float(output["bias"].detach()) == -10.0
    alignment.sigmoid_contrastive_loss(output, batch).backward()
    assert siglip.logit_bias.grad is not None


def test_gather_with_grad_is_the_identity_on_one_process():
    from mmbook.distributed import gather_with_grad

    x = torch.randn(3, 4)
    assert gather_with_grad(x) is x


def test_two_tower_bad_input():
    with pytest.raises(ValueError, match="temperature must be positive"):
        TwoTower(50, temperature=0.0)
    model = TwoTower(len(caption_vocabulary()), dim=8, width=8)
    with pytest.raises(ValueError, match=r"\(B, 3, 64, 64\)"):
        model.encode_image(torch.randn(2, 3, 32, 32))


def test_embed_texts_in_batches_equals_encoding_all_at_once_and_leaves_the_mode_alone():
    from mmbook.alignment import embed_texts

    torch.manual_seed(0)
    model = TwoTower(50, dim=8, width=8)
    tokens = torch.randint(2, 50, (7, 5))
    tokens[3, 2:] = 0  # a shorter, right-padded text
    model.eval()
    with torch.no_grad():
        expected = model.encode_text(tokens)
    model.train()
    got = embed_texts(model, tokens, batch_size=3)
    assert got.shape == (7, 8) and torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(got.norm(dim=1), torch.ones(7), atol=1e-5)
    assert model.training  # evaluated in eval mode, then put back


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


def test_retrieval_report_ranks_distinct_captions_for_image_to_text_and_takes_a_relevance_matrix():
    # Captions 0 and 1 are the same string: image -> text ranks it once, so it cannot fill two of the top K.
    image = torch.eye(4)
    image[1] = image[0]
    text = torch.eye(4)
    text[1] = text[0]
    captions = ["x", "x", "y", "z"]
    report = retrieval_report(image, text, captions, ks=(1, 2))
    assert report["caption_gallery"] == 3.0
    assert report["recall_at_1_image_to_text"] == 1.0
    # A relevance matrix that marks caption 2 as also true of image 3 (rows captions, columns images).
    relevant = caption_relevance(captions)
    relevant[2, 3] = True
    text_far = torch.eye(4)[[0, 0, 3, 2]]  # caption 2 points at image 3, caption 3 at image 2
    strict = retrieval_report(image, text_far, captions, ks=(1,))
    lenient = retrieval_report(image, text_far, captions, ks=(1,), relevant=relevant)
    assert lenient["recall_at_1_text_to_image"] > strict["recall_at_1_text_to_image"]
    with pytest.raises(ValueError, match="every caption needs a correct image"):
        retrieval_report(image, text, captions, relevant=torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(captions, images\)"):
        retrieval_report(image, text, captions, relevant=torch.ones(3, 4, dtype=torch.bool))


def test_retrieval_report_with_several_captions_per_image():
    images = torch.eye(3)
    texts = torch.eye(3)[[0, 0, 1, 2, 2]]  # captions 0 and 1 of image 0, caption 2 of image 1, 3 and 4 of image 2
    image_ids = torch.tensor([0, 0, 1, 2, 2])
    relevant = image_ids[:, None] == torch.arange(3)[None, :]
    report = retrieval_report(images, texts, ["a", "b", "c", "d", "e"], ks=(1, 5), relevant=relevant)
    assert report["gallery"] == 3.0 and report["caption_gallery"] == 5.0
    assert report["recall_at_1_text_to_image"] == 1.0 and report["recall_at_1_image_to_text"] == 1.0
    assert report["recall_at_5_text_to_image"] == 1.0  # K larger than the 3 images: the whole gallery
    with pytest.raises(ValueError, match="same string"):
        retrieval_report(images, texts, ["a", "a", "c", "d", "a"], relevant=relevant)


def test_retrieval_report_perfect_and_keys():
    embeddings = _unit(20, 16, seed=5)
    report = retrieval_report(embeddings, embeddings, [f"c{i}" for i in range(20)])
    for direction in ("text_to_image", "image_to_text"):
        assert report[f"recall_at_1_{direction}"] == 1.0
        assert report[f"chance_at_10_{direction}"] == pytest.approx(0.5)
        assert report[f"recall_fraction_at_5_{direction}"] == 1.0
    with pytest.raises(ValueError, match="one per text embedding"):
        retrieval_report(embeddings, embeddings, ["a"])
    with pytest.raises(ValueError, match="batch sizes differ"):
        retrieval_report(embeddings, embeddings[:5], ["a"] * 5)


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


# --- correct answers by meaning, probes, intervals, geometry -----------------------------------------


def test_every_generated_caption_is_true_of_its_scene_and_kind_words_match_other_scenes(scene_set):
    from mmbook.data.scene_captions import caption_relevance_to_scenes, true_captions

    captions = describe_scenes(scene_set, seed=3, kind_probability=0.5, layout_dropout=0.3)
    boxes, classes, counts = scene_set.boxes.numpy(), scene_set.classes.numpy(), scene_set.counts.numpy()
    for i in range(len(scene_set)):
        assert captions[i] in true_captions(boxes[i, : counts[i]], classes[i, : counts[i]])
    relevant = caption_relevance_to_scenes(captions, scene_set)
    assert relevant.shape == (len(scene_set), len(scene_set)) and bool(relevant.diagonal().all())
    # Identical strings are always relevant to each other's scenes, and the relation is at least as lenient.
    assert bool((caption_relevance(captions) <= relevant).all())
    # A single-object caption named by kind is true of the same-size, same-place scenes of every class of that kind.
    single = next(i for i in range(len(scene_set)) if counts[i] == 1)
    box, c = boxes[single, :1], classes[single, :1]
    kind_caption = describe_scene(box, c, np.random.default_rng(0), kind_probability=1.0)
    other = 3 if int(c[0]) != 3 else 5  # cat or dog: both animals
    from mmbook.data.scenes import KIND_OF
    from mmbook.data.cifar10 import CIFAR10_CLASSES
    same_kind = KIND_OF[CIFAR10_CLASSES[int(c[0])]] == KIND_OF[CIFAR10_CLASSES[other]]
    assert (kind_caption in true_captions(box, np.array([other]))) == same_kind
    with pytest.raises(ValueError, match="describes none"):
        caption_relevance_to_scenes(["a big airplane at the top"] * 0 + ["a ship and a ship"], scene_set)


def test_logistic_probe_chooses_its_strength_on_validation_and_separates_separable_features():
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 16, generator=generator) * 3
    labels = torch.arange(4).repeat(60)
    features = centres[labels] + torch.randn(len(labels), 16, generator=generator)
    result = alignment.logistic_probe(features[:160], labels[:160], features[160:], labels[160:],
                                      strengths=(1e-2, 1.0, 1e6))
    assert result["accuracy"] > 0.95 and result["strength"] in (1e-2, 1.0, 1e6)
    assert result["validation_accuracy"] > 0.9
    # The penalty works: a larger strength gives smaller weights.
    from mmbook.alignment.zero_shot import _fit_logistic

    weak, _ = _fit_logistic(features.double(), labels, 4, 1e-2, 100)
    strong, _ = _fit_logistic(features.double(), labels, 4, 1e3, 100)
    assert strong.norm() < 0.5 * weak.norm()
    # One example per class: no validation split; the median strength is used.
    few = alignment.logistic_probe(features[:4], labels[:4], features[160:], labels[160:], strengths=(1e-2, 1.0, 1e6))
    assert few["strength"] == 1.0 and math.isnan(few["validation_accuracy"])
    with pytest.raises(ValueError, match="expected features"):
        alignment.logistic_probe(features, labels, features[:, :3], labels)


def test_accuracy_interval_is_wilsons():
    low, high = alignment.accuracy_interval(0.5, 100)
    assert low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)
    low, high = alignment.accuracy_interval(0.0, 20)
    assert low == 0.0 and 0.1 < high < 0.2
    with pytest.raises(ValueError, match="positive number"):
        alignment.accuracy_interval(0.5, 0)


def test_shift_along_gap_closes_and_widens_the_gap():
    image = F.normalize(_unit(50, 8, seed=1) + torch.tensor([2.0] + [0.0] * 7), dim=1)
    text = F.normalize(_unit(50, 8, seed=2) - torch.tensor([2.0] + [0.0] * 7), dim=1)
    gap = modality_gap(image, text)
    closed = modality_gap(*alignment.shift_along_gap(image, text, 1.0))
    wider = modality_gap(*alignment.shift_along_gap(image, text, -0.5))
    assert closed < 0.2 * gap and wider > gap
    same = alignment.shift_along_gap(image, text, 0.0)
    assert torch.allclose(same[0], image) and torch.allclose(same[1], text)


def test_alignment_and_uniformity_and_hubness():
    x = _unit(64, 8, seed=7)
    perfect = alignment.alignment_and_uniformity(x, x)
    assert perfect["alignment"] == pytest.approx(0.0, abs=1e-6)
    collapsed = alignment.alignment_and_uniformity(x[:1].expand(64, 8).contiguous(), x)
    assert collapsed["uniformity_image"] == pytest.approx(0.0, abs=1e-6) and perfect["uniformity_image"] < -1.0
    # A hub: every query's nearest item is item 0.
    similarity = torch.rand(20, 10, generator=torch.Generator().manual_seed(0))
    similarity[:, 0] = 2.0
    hubbed = alignment.hubness(similarity, k=1)
    assert hubbed["top_hub_ratio"] == pytest.approx(10.0) and hubbed["orphans"] == pytest.approx(0.9)
    even = alignment.hubness(torch.eye(10), k=1)
    assert even["skewness"] == 0.0 and even["orphans"] == 0.0


# --- hard negatives: swapped captions -----------------------------------------------------------------


def test_swapped_captions_are_false_and_differ_from_the_true_one_by_the_swap(scene_set):
    from mmbook.data.scene_captions import true_captions
    from mmbook.data.scene_negatives import SWAPS, swap_benchmark

    benchmark = swap_benchmark(scene_set, seed=0)
    assert set(benchmark) == set(SWAPS)
    boxes, classes, counts = scene_set.boxes.numpy(), scene_set.classes.numpy(), scene_set.counts.numpy()
    for swap, items in benchmark.items():
        assert items["scene"], f"no {swap} items in 200 scenes"
        for i, positive, negative in zip(items["scene"], items["positive"], items["negative"]):
            true = true_captions(boxes[i, : counts[i]], classes[i, : counts[i]])
            assert positive in true and negative not in true
            assert sorted(positive.split()) == sorted(negative.split()), "a swap keeps the bag of words"
    relation = benchmark["relation"]
    assert relation["negative"][0].split(" where ")[0] == relation["positive"][0].split(" where ")[0]


def test_hard_negative_captions_keep_the_training_captions_and_are_false(scene_set):
    from mmbook.data.scene_captions import true_captions
    from mmbook.data.scene_negatives import hard_negative_captions

    captions, negatives = hard_negative_captions(scene_set, seed=4, kind_probability=0.2, layout_dropout=0.3)
    assert captions == describe_scenes(scene_set, seed=4, kind_probability=0.2, layout_dropout=0.3)
    boxes, classes, counts = scene_set.boxes.numpy(), scene_set.classes.numpy(), scene_set.counts.numpy()
    for i, negative in enumerate(negatives):
        assert negative not in true_captions(boxes[i, : counts[i]], classes[i, : counts[i]])
    encode_captions(negatives)  # every word is in the vocabulary


def test_negclip_loss_adds_the_hard_negatives_to_the_image_to_text_softmax():
    image, text, hard = _unit(5, 8, seed=1), _unit(5, 8, seed=2), _unit(5, 8, seed=3)
    scale = torch.tensor(10.0)
    loss = alignment.negclip_loss({"image": image, "text": text, "hard_text": hard, "scale": scale}, {})
    targets = torch.arange(5)
    expected = (F.cross_entropy(10 * image @ torch.cat([text, hard]).T, targets)
                + F.cross_entropy(10 * text @ image.T, targets)) / 2
    assert torch.isclose(loss, expected)
    # A hard negative equal to the true caption makes the image -> text choice a coin toss at best.
    same = alignment.negclip_loss({"image": image, "text": text, "hard_text": text, "scale": scale}, {})
    assert same > alignment.info_nce(image, text, 0.1)
    with pytest.raises(ValueError, match="hard negative"):
        alignment.negclip_loss({"image": image, "text": text, "scale": scale}, {})


def test_swap_accuracy_of_a_bag_of_words_text_tower_is_one_half(scene_set):
    from mmbook.data.scene_negatives import swap_benchmark

    class BagOfWords(torch.nn.Module):
        """Text embedding = mean of word vectors: blind to word order, so every swap ties."""

        def __init__(self) -> None:
            super().__init__()
            self.words = torch.nn.Embedding(len(caption_vocabulary()), 8, padding_idx=0)
            with torch.no_grad():  # small whole numbers: sums in any order are exact
                self.words.weight.copy_(torch.randint(-4, 5, self.words.weight.shape).float())
                self.words.weight[0] = 0
            self.pixels = torch.nn.Linear(3 * 64 * 64, 8)

        def encode_text(self, tokens):
            mask = (tokens > 0).float().unsqueeze(-1)
            return F.normalize((self.words(tokens) * mask).sum(1) / mask.sum(1), dim=-1)

        def encode_image(self, images):
            return F.normalize(self.pixels(images.flatten(1)), dim=-1)

    torch.manual_seed(0)
    report = alignment.swap_accuracy(BagOfWords(), scene_set.images, swap_benchmark(scene_set))
    # Ties count as failures (the true caption must score *above*): a bag of words passes nothing.
    assert report["swap_accuracy"] == 0.0 and report["swap_items_class"] > 0


# --- element-level alignment ---------------------------------------------------------------------------


def test_pointing_game_hits_and_chance():
    maps = torch.zeros(2, 8, 8)
    maps[0, 1, 1] = 1.0  # cell centre (12, 12): inside box 0
    maps[1, 7, 7] = 1.0  # cell centre (60, 60): outside box 1
    boxes = torch.tensor([[0.0, 0.0, 32.0, 32.0], [0.0, 0.0, 16.0, 16.0]])
    result = alignment.pointing_game(maps, boxes)
    assert result["accuracy"] == 0.5 and result["queries"] == 2.0
    assert result["chance"] == pytest.approx((16 / 64 + 4 / 64) / 2)
    with pytest.raises(ValueError, match="expected maps"):
        alignment.pointing_game(maps, boxes[:1])


def test_region_embeddings_are_the_projected_grid_and_their_max_pool_gives_the_what_part_of_the_embedding():
    model = TwoTower(len(caption_vocabulary()), dim=8, width=4).eval()
    images = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    regions = alignment.region_embeddings(model, images)
    assert regions.shape == (3, 8, 8, 8)
    words = _unit(2, 8, seed=0)
    maps = alignment.word_region_maps(regions, words)
    assert maps.shape == (3, 2, 8, 8)
    # The what part of the image embedding is the projection of the max-pooled grid: per channel, not per region,
    # so check the linear map on one cell directly.
    from mmbook.data.loaders import normalize_images

    with torch.no_grad():
        grid = model.image_tower.backbone(normalize_images(images))
        width = model.image_tower.backbone.out_channels
        expected = model.image_projection.weight[:, :width] @ grid[1, :, 2, 5]
    torch.testing.assert_close(regions[1, 2, 5], expected, rtol=1e-5, atol=1e-6)


# --- your own caption-only pairs -----------------------------------------------------------------------


def _coloured_caption_rows(folder, images: int = 24, size: int = 16):
    """Caption-only rows: PNGs of one of three colours, each with two captions that name the colour."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
    rng = np.random.default_rng(0)
    rows = []
    for k in range(images):
        name = list(colours)[k % 3]
        pixels = np.clip(np.array(colours[name]) + rng.integers(-20, 21, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img{k}.png")
        rows += [{"image": f"img{k}.png", "text": f"a {name} picture"}, {"image": f"img{k}.png", "text": f"all {name}"}]
    return rows


def test_pairs_retrieval_trains_on_caption_only_pairs_of_any_image_size(tmp_path, monkeypatch):
    import json

    from mmbook.data import load_pairs

    monkeypatch.setenv("MMBOOK_CACHE", str(tmp_path / "cache"))
    rows = _coloured_caption_rows(tmp_path / "pairs")
    path = tmp_path / "pairs" / "captions.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    data = load_pairs(path, image_size=16, label_column=None, test_fraction=0.25, seed=0)
    result = alignment.train_pairs_retrieval(data, epochs=6, batch_size=8, lr=3e-3, device="cpu")
    assert result["test_images"] == 6 and result["test_texts"] == 12 and result["gallery"] == 6.0
    assert result["model"].image_tower.image_size == 16
    history = result["history"]
    assert history.column("train_loss")[-1] < history.column("train_loss")[0]
    # Each image has its two captions as correct answers: recall at K = gallery is 1 in both directions.
    assert result["recall_at_10_text_to_image"] == 1.0 and 0.0 <= result["recall_at_1_image_to_text"] <= 1.0
    no_test = load_pairs(path, image_size=16, label_column=None)
    with pytest.raises(ValueError, match="no test split"):
        alignment.train_pairs_retrieval(no_test, epochs=1)
    with pytest.raises(ValueError, match="multiple of 8"):
        TwoTower(10, image_size=12)


def test_cli_pairs_retrieval_on_caption_only_pairs_and_its_one_line_errors(tmp_path, monkeypatch, capsys):
    import json

    from mmbook.cli import main

    monkeypatch.setenv("MMBOOK_CACHE", str(tmp_path / "cache"))
    rows = _coloured_caption_rows(tmp_path / "pairs")
    path = tmp_path / "pairs" / "captions.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "result.json"
    assert main(["train", "--task", "pairs-retrieval", "--data-file", str(path), "--image-size", "32", "--epochs", "2",
                 "--batch-size", "8", "--device", "cpu", "--no-progress", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["task"] == "pairs-retrieval" and result["image_size"] == 32
    assert result["train_images"] + result["test_images"] == 24 and "recall_at_10_text_to_image" in result
    # Bad input: one line, exit 2, naming the flag.
    capsys.readouterr()
    assert main(["train", "--task", "pairs-retrieval", "--data-file", str(tmp_path / "missing.jsonl")]) == 2
    assert capsys.readouterr().err.strip().startswith("mmbook: error: --data-file")
    assert main(["train", "--task", "pairs-retrieval", "--data-file", str(path), "--image-size", "36"]) == 2
    assert "multiple of 8" in capsys.readouterr().err
    assert main(["train", "--task", "pairs-retrieval", "--data-file", str(path), "--label-column", "kind"]) == 2
    assert "--label-column applies to --task pairs" in capsys.readouterr().err
    assert main(["train", "--task", "pairs-retrieval"]) == 2
    assert "needs --data-file" in capsys.readouterr().err


def test_init_fine_tunes_a_copy_and_refuses_a_model_of_another_loss(tiny_data):
    base = alignment.train_scene_retrieval(quick=True, scenes=64, epochs=1, batch_size=32, test_scenes=40,
                                           zero_shot_scenes=60, device="cpu")
    before = {n: p.clone() for n, p in base["model"].state_dict().items()}
    tuned = alignment.train_scene_retrieval(quick=True, scenes=64, epochs=1, batch_size=32, test_scenes=40,
                                            zero_shot_scenes=60, device="cpu", init=base["model"], hard_negatives=True)
    assert tuned["model"] is not base["model"] and tuned["loss"] == "negclip"
    assert all(torch.equal(p, before[n]) for n, p in base["model"].state_dict().items()), "init itself is not changed"
    assert any(not torch.equal(p, before[n]) for n, p in tuned["model"].state_dict().items())
    with pytest.raises(ValueError, match="another loss"):
        alignment.train_scene_retrieval(quick=True, scenes=64, epochs=1, batch_size=32, test_scenes=40,
                                        zero_shot_scenes=60, device="cpu", init=base["model"], loss="sigmoid")
