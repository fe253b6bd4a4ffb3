"""Tests of mmbook.objectives: calibration, detection (AP/mAP), grounding, role tagging, checkers, fit(loss_fn=...)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torchvision.ops import box_iou

from mmbook import objectives as O
from mmbook.data import DeviceLoader
from mmbook.data.loaders import CIFAR10_STATS
from mmbook.data.scenes import TAGS, make_scenes, scene_vocabulary
from mmbook.training import evaluate, fit


def _logit(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(1e-4, 1 - 1e-4)
    return torch.log(p / (1 - p))


@pytest.fixture(scope="module")
def tiny_scenes():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(10).repeat_interleave(3)
    images = torch.randint(0, 256, (30, 3, 32, 32), generator=generator, dtype=torch.uint8)
    return make_scenes(24, images, labels, seed=0)


# --- calibration -------------------------------------------------------------------------------------------

def test_ece_hand_computed():
    top = torch.tensor([0.93, 0.82, 0.64, 0.57])
    probabilities = torch.stack([top, 1 - top], dim=1)
    labels = torch.tensor([0, 1, 0, 0])  # right, wrong, right, right
    # 10 bins: one prediction per bin -> mean |correct - confidence| = (0.07 + 0.82 + 0.36 + 0.43) / 4
    assert math.isclose(O.expected_calibration_error(probabilities, labels, bins=10), 0.42, abs_tol=1e-6)
    # 1 bin: |accuracy - mean confidence| = |0.75 - 0.74|
    assert math.isclose(O.expected_calibration_error(probabilities, labels, bins=1), 0.01, abs_tol=1e-6)
    stats = O.calibration_bins(probabilities, labels, bins=10)
    assert stats["count"].tolist() == [0, 0, 0, 0, 0, 1, 1, 0, 1, 1]
    assert stats["accuracy"][8].item() == 0.0 and stats["accuracy"][9].item() == 1.0


def test_ece_zero_for_confident_correct_and_errors():
    probabilities = torch.eye(3)
    assert O.expected_calibration_error(probabilities, torch.arange(3)) == 0.0
    assert math.isclose(O.expected_calibration_error(probabilities, torch.tensor([1, 2, 0])), 1.0)
    with pytest.raises(ValueError, match="softmax"):
        O.expected_calibration_error(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        O.expected_calibration_error(torch.ones(4) / 4, torch.zeros(4, dtype=torch.long))


# --- detection ----------------------------------------------------------------------------------------------

def test_average_precision_hand_computed():
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    tp = torch.tensor([True, False, True, False])
    # precision 1, 1/2, 2/3, 1/2 at recall 1/3, 1/3, 2/3, 2/3; envelope 1, 2/3, 2/3, 1/2
    # AP = 1/3 * 1 + 1/3 * 2/3 = 5/9
    assert math.isclose(O.average_precision(scores, tp, num_ground_truth=3), 5 / 9, rel_tol=1e-9)
    # Order is by score, not by position: the same detections shuffled give the same AP.
    perm = torch.tensor([2, 0, 3, 1])
    assert math.isclose(O.average_precision(scores[perm], tp[perm], 3), 5 / 9, rel_tol=1e-9)
    assert O.average_precision(scores, torch.ones(4, dtype=torch.bool), 4) == 1.0
    assert O.average_precision(torch.zeros(0), torch.zeros(0, dtype=torch.bool), 2) == 0.0
    with pytest.raises(ValueError, match="undefined"):
        O.average_precision(scores, tp, 0)


def test_mean_average_precision_hand_computed():
    gt = [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([0])},
          {"boxes": torch.tensor([[20.0, 20, 40, 40]]), "labels": torch.tensor([1])}]
    detections = [
        # class 0: a good box (IoU 0.81) and a duplicate (false positive: the object is taken)
        {"boxes": torch.tensor([[0.0, 0, 9, 9], [1.0, 1, 10, 10]]), "scores": torch.tensor([0.9, 0.8]),
         "labels": torch.tensor([0, 0])},
        # class 1: a box with IoU 0.25 (< 0.5: a false positive)
        {"boxes": torch.tensor([[20.0, 20, 30, 30]]), "scores": torch.tensor([0.7]), "labels": torch.tensor([1])},
    ]
    result = O.mean_average_precision(detections, gt, num_classes=3)
    assert result["per_class"] == {0: 1.0, 1: 0.0}  # class 2 has no ground truth: left out
    assert result["map"] == 0.5
    lenient = O.mean_average_precision(detections, gt, num_classes=3, iou_threshold=0.2)
    assert lenient["map"] == 1.0


def test_grid_targets_and_perfect_detections(tiny_scenes):
    boxes, classes = tiny_scenes.boxes, tiny_scenes.classes
    targets = O.grid_targets(boxes, classes)
    assert targets["objectness"].shape == (len(tiny_scenes), 8, 8)
    assert int(targets["objectness"].sum()) == int(tiny_scenes.counts.sum())  # one cell per object
    # Build the raw outputs that decode to the ground truth exactly.
    t = targets["boxes"]
    cx, cy = (t[..., 0] + t[..., 2]) / 2, (t[..., 1] + t[..., 3]) / 2
    grid = torch.arange(8.0)
    raw = torch.zeros(len(tiny_scenes), 15, 8, 8)
    raw[:, 0] = torch.where(targets["objectness"] > 0, 10.0, -10.0)
    raw[:, 1] = _logit(cx / 8 - grid.view(1, 1, -1))
    raw[:, 2] = _logit(cy / 8 - grid.view(1, -1, 1))
    raw[:, 3] = _logit((t[..., 2] - t[..., 0]) / 64)
    raw[:, 4] = _logit((t[..., 3] - t[..., 1]) / 64)
    raw[:, 5:] = nn.functional.one_hot(targets["classes"].clamp(min=0), 10).permute(0, 3, 1, 2) * 10.0
    decoded = O.decode_boxes(raw[:, 1:5])
    mask = targets["objectness"] > 0
    assert torch.allclose(decoded[mask], t[mask], atol=0.05)
    correct, count = O.detection_accuracy(raw, {"boxes": boxes, "classes": classes})
    assert int(correct) == count == int(tiny_scenes.counts.sum())
    detections = O.decode_detections(raw)
    result = O.mean_average_precision(detections, O.ground_truth_list(boxes, classes), 10)
    assert math.isclose(result["map"], 1.0)
    assert O.detection_loss(raw, {"boxes": boxes, "classes": classes}) < O.detection_loss(torch.zeros_like(raw), {"boxes": boxes, "classes": classes})


def test_decode_detections_applies_nms():
    raw = torch.full((1, 15, 8, 8), -10.0)
    raw[0, 0, 3, 3] = raw[0, 0, 3, 4] = 10.0  # two neighbouring cells, same class, near-identical boxes
    raw[0, 1:5, 3, 3] = raw[0, 1:5, 3, 4] = 0.0
    raw[0, 1, 3, 3], raw[0, 1, 3, 4] = 4.0, -4.0  # centres x = 31.9 and 32.1
    raw[0, 5] = 5.0
    detections = O.decode_detections(raw)[0]
    assert len(detections["boxes"]) == 1 and detections["labels"].tolist() == [0]


def test_grid_detector_shapes_and_backbone_errors():
    model = O.GridDetector(num_classes=10, width=8)
    out = model({"image": torch.randn(2, 3, 64, 64)})
    assert out.shape == (2, 15, 8, 8)
    with pytest.raises(ValueError, match="normalized float"):
        model({"image": torch.zeros(2, 3, 64, 64, dtype=torch.uint8)})
    coords = O.coordinate_channels(torch.zeros(1, 4, 8, 8))
    assert coords.shape == (1, 6, 8, 8) and coords[0, 4, 0, 0] == -1 and coords[0, 4, 0, -1] == 1


# --- grounding ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("modalities", ["image", "text", "image+text"])
def test_grounding_model_shapes(modalities, tiny_scenes):
    model = O.GroundingModel(len(tiny_scenes.vocab), modalities, width=8)
    batch = next(iter(DeviceLoader(tiny_scenes.tensors(), 4, **CIFAR10_STATS)))
    out = model(batch)
    assert out.shape == (4, 5, 8, 8)
    assert O.grounding_boxes(out).shape == (4, 4)
    loss = O.grounding_loss(out, batch)
    loss.backward()
    assert torch.isfinite(loss)


def test_scene_models_reject_bad_modalities():
    with pytest.raises(ValueError, match="modalities must be 'image', 'text' or 'image\\+text', got 'audio'"):
        O.GroundingModel(10, "audio")
    with pytest.raises(ValueError, match="SceneTagger tags caption words"):
        O.SceneTagger(10, len(TAGS), "image")


def test_grounding_accuracy_counts_iou():
    target = torch.tensor([[8.0, 8, 32, 32], [40, 40, 60, 60]])
    raw = torch.zeros(2, 5, 8, 8)
    raw[0, 0, 2, 2] = 5.0  # scene 0: best cell holds centre (20, 20); box 24x24 -> exact
    raw[0, 3:5, 2, 2] = _logit(torch.tensor(24 / 64))
    raw[1, 0, 0, 0] = 5.0  # scene 1: the wrong cell
    correct, count = O.grounding_accuracy(raw, {"target_box": target})
    assert count == 2 and int(correct) == 1
    assert torch.allclose(O.grounding_boxes(raw)[0], target[0], atol=1e-3)


def test_film_is_identity_at_zero():
    film = O.FiLM(5, 3)
    nn.init.zeros_(film.to_gamma_beta.weight)
    nn.init.zeros_(film.to_gamma_beta.bias)
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(film(x, torch.randn(2, 5)), x)


# --- tagging --------------------------------------------------------------------------------------------------

def test_bio_spans():
    assert O.bio_spans(["B-LEFT", "I-LEFT", "O", "I-REL"]) == [("LEFT", 0, 2), ("REL", 3, 4)]
    assert O.bio_spans(["B-LOC", "B-LOC", "I-LOC"]) == [("LOC", 0, 1), ("LOC", 1, 3)]
    assert O.bio_spans(["B-LEFT", "I-RIGHT"]) == [("LEFT", 0, 1), ("RIGHT", 1, 2)]
    assert O.bio_spans([]) == []
    with pytest.raises(ValueError, match="not a BIO tag"):
        O.bio_spans(["B-LEFT", "X-LEFT"])
    with pytest.raises(ValueError, match="not a BIO tag"):
        O.bio_spans(["B"])


def test_entity_scores_hand_computed():
    truth = [["B-LEFT", "I-LEFT", "O", "B-REL", "B-ABSENT"], ["O", "B-RIGHT", "O", "B-LOC", "I-LOC"]]
    guess = [["B-LEFT", "I-LEFT", "O", "B-REL", "B-LEFT"], ["O", "B-RIGHT", "I-RIGHT", "B-LOC", "I-LOC"]]
    # true entities: LEFT(0-2) REL(3) ABSENT(4) | RIGHT(1) LOC(3-5): 5
    # predicted:     LEFT(0-2) REL(3) LEFT(4)   | RIGHT(1-3) LOC(3-5): 5; correct: LEFT, REL, LOC = 3
    scores = O.entity_scores(truth, guess)
    assert (scores["true_entities"], scores["predicted_entities"], scores["correct"]) == (5, 5, 3)
    assert math.isclose(scores["precision"], 0.6) and math.isclose(scores["recall"], 0.6) and math.isclose(scores["f1"], 0.6)
    image_only = O.entity_scores(truth, guess, types=("LEFT", "RIGHT", "ABSENT"))
    # true LEFT, ABSENT, RIGHT (3); predicted LEFT, LEFT, RIGHT(1-3) (3); correct LEFT (1)
    assert math.isclose(image_only["f1"], 1 / 3)
    empty = O.entity_scores([["B-LOC"]], [["O"]])
    assert empty["precision"] == 0.0 and empty["recall"] == 0.0 and empty["f1"] == 0.0
    with pytest.raises(ValueError, match="sentence 0"):
        O.entity_scores([["O", "O"]], [["O"]])


@pytest.mark.parametrize("modalities", ["text", "image+text"])
def test_scene_tagger_shapes_and_padding(modalities, tiny_scenes):
    torch.manual_seed(0)
    model = O.SceneTagger(len(tiny_scenes.vocab), len(TAGS), modalities, hidden=8, width=8).eval()
    batch = next(iter(DeviceLoader(tiny_scenes.tensors(), 4, **CIFAR10_STATS)))
    out = model(batch)
    assert out.shape == (*batch["text"].shape, len(TAGS))
    # Extra padding does not change the outputs of the real words.
    padded = dict(batch, text=torch.cat([batch["text"], torch.zeros(4, 3, dtype=torch.long)], 1))
    assert torch.allclose(model(padded)[:, : batch["text"].shape[1]], out, atol=1e-5)
    loss = O.tagging_loss(out, batch)
    assert torch.isfinite(loss)
    correct, count = O.tagging_accuracy(out, batch)
    assert count == int((batch["tags"] != -100).sum()) and 0 <= int(correct) <= count


def test_decode_tags():
    ids = torch.tensor([[1, 0, 2], [0, 3, 4]])
    reference = torch.tensor([[0, 0, -100], [1, 1, 1]])
    assert O.decode_tags(ids, reference, TAGS) == [[TAGS[1], TAGS[0]], [TAGS[0], TAGS[3], TAGS[4]]]


# --- checkers ------------------------------------------------------------------------------------------------

def _reference_iou(a, b):
    top_left = torch.max(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    area_a = (a[:, 2:] - a[:, :2]).prod(dim=1)
    area_b = (b[:, 2:] - b[:, :2]).prod(dim=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def test_check_iou_accepts_correct_and_rejects_wrong(capsys):
    O.check_iou(_reference_iou)
    assert "All checks passed" in capsys.readouterr().out
    assert torch.allclose(_reference_iou(torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[1.0, 1, 3, 3]])),
                          box_iou(torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[1.0, 1, 3, 3]])))

    def no_clamp(a, b):
        top_left = torch.max(a[:, None, :2], b[None, :, :2])
        bottom_right = torch.min(a[:, None, 2:], b[None, :, 2:])
        inter = (bottom_right - top_left).prod(dim=2)  # negative widths multiply to positive areas
        area_a = (a[:, 2:] - a[:, :2]).prod(dim=1)
        area_b = (b[:, 2:] - b[:, :2]).prod(dim=1)
        return inter / (area_a[:, None] + area_b[None, :] - inter)

    with pytest.raises(AssertionError, match="disjoint"):
        O.check_iou(no_clamp)
    with pytest.raises(AssertionError, match="shape"):
        O.check_iou(lambda a, b: _reference_iou(a, b).diagonal())


def test_check_entity_f1_accepts_correct_and_rejects_token_level(capsys):
    O.check_entity_f1(lambda t, p: O.entity_scores(t, p)["f1"])
    assert "All checks passed" in capsys.readouterr().out

    def token_f1(truth, guess):  # token accuracy is not entity F1
        pairs = [(a, b) for t, g in zip(truth, guess) for a, b in zip(t, g) if a != "O" or b != "O"]
        return sum(a == b for a, b in pairs) / max(len(pairs), 1)

    with pytest.raises(AssertionError, match="expected F1"):
        O.check_entity_f1(token_f1)


# --- training through fit --------------------------------------------------------------------------------------

def test_fit_with_loss_fn_trains_grounding(tiny_scenes):
    torch.manual_seed(0)
    model = O.GroundingModel(len(tiny_scenes.vocab), "image+text", width=8)
    loader = DeviceLoader(tiny_scenes.tensors(), 8, shuffle=True, **CIFAR10_STATS)
    before = evaluate(model, loader, "cpu", loss_fn=O.grounding_loss, accuracy_fn=O.grounding_accuracy)["loss"]
    history = fit(model, loader, loader, epochs=6, lr=1e-2, device="cpu", progress=False,
                  loss_fn=O.grounding_loss, accuracy_fn=O.grounding_accuracy)
    assert len(history) == 6
    assert history.last["test_loss"] < before
    after = evaluate(model, loader, "cpu", loss_fn=O.grounding_loss, accuracy_fn=O.grounding_accuracy)
    assert history.last["test_accuracy"] == pytest.approx(after["accuracy"])  # the history records what evaluate measures


def test_fit_loss_fn_without_accuracy_and_smoothing_conflict(tiny_scenes):
    model = O.SceneTagger(len(tiny_scenes.vocab), len(TAGS), "text", hidden=8)
    loader = DeviceLoader(tiny_scenes.tensors(), 8, **CIFAR10_STATS)
    history = fit(model, loader, epochs=1, device="cpu", progress=False, loss_fn=O.tagging_loss)
    assert math.isnan(history.last["train_accuracy"]) and history.last["train_loss"] > 0
    with pytest.raises(ValueError, match="label_smoothing"):
        fit(model, loader, epochs=1, device="cpu", progress=False, loss_fn=O.tagging_loss, label_smoothing=0.1)


def test_fit_default_path_unchanged():
    torch.manual_seed(0)
    data = {"image": torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8), "label": torch.arange(32) % 2}
    model = nn.Sequential()
    model.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 2))
    forward = lambda batch: model.net(batch["image"])  # noqa: E731
    model.forward = forward
    loader = DeviceLoader(data, 8)
    history = fit(model, loader, loader, epochs=2, device="cpu", progress=False)
    assert history.last["test_accuracy"] == pytest.approx(evaluate(model, loader, "cpu")["accuracy"])
    assert 32 * history.last["train_accuracy"] == pytest.approx(round(32 * history.last["train_accuracy"]))


def test_scene_vocabulary_is_fixed():
    assert scene_vocabulary().itos == scene_vocabulary().itos


# --- command line ----------------------------------------------------------------------------------------------

def test_cli_scene_task_errors(capsys):
    from mmbook.cli import main

    assert main(["train", "--task", "scene-nothing"]) == 2
    assert main(["train", "--task", "scene-detection", "--modalities", "text"]) == 2
    assert "image only" in capsys.readouterr().err
    assert main(["train", "--task", "scene-tagging", "--modalities", "image"]) == 2
    assert "tags caption words" in capsys.readouterr().err
    assert main(["train", "--task", "scene-grounding", "--label-smoothing", "0.1"]) == 2
    assert main(["train", "--task", "scene-grounding", "--scenes", "0"]) == 2


def test_cli_scene_grounding_json(tmp_path, monkeypatch):
    import json

    from mmbook.data import scenes
    from mmbook.cli import main
    from mmbook.data.cifar10 import CIFAR10_CLASSES, ImageSet

    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(10).repeat_interleave(2)
    images = torch.randint(0, 256, (20, 3, 32, 32), generator=generator, dtype=torch.uint8)
    monkeypatch.setattr(scenes, "load_cifar10", lambda split, **kw: ImageSet(images, labels, CIFAR10_CLASSES, "fake"))
    monkeypatch.setenv("MMBOOK_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "result.json"
    code = main(["train", "--task", "scene-grounding", "--modalities", "image+text", "--epochs", "1", "--scenes", "16",
                 "--quick", "--device", "cpu", "--no-progress", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    for key in ("task", "modalities", "fusion", "epochs", "device", "train_seconds", "train_images_per_second",
                "test_accuracy", "accuracy_iou50"):
        assert key in result
    assert result["task"] == "scene-grounding" and result["fusion"] == "film" and 0 <= result["accuracy_iou50"] <= 1


# --- detection augmentation --------------------------------------------------------------------------------


def test_flip_scenes_mirrors_images_and_boxes_together(tiny_scenes):
    batch = {k: v[:12] for k, v in tiny_scenes.tensors().items()}
    batch["image"] = batch["image"].float()
    flipped = O.flip_scenes(batch, torch.Generator().manual_seed(0))
    was_flipped = [not torch.equal(flipped["image"][i], batch["image"][i]) for i in range(12)]
    assert 0 < sum(was_flipped) < 12  # about half, with this seed some of each
    for i in range(12):
        image, boxes = flipped["image"][i], flipped["boxes"][i]
        for k in range(int(tiny_scenes.counts[i])):
            x1, y1, x2, y2 = (int(v) for v in boxes[k])
            # The pixels inside each (possibly mirrored) box are the object's own pixels.
            if was_flipped[i]:
                assert torch.equal(image[:, y1:y2, x1:x2], batch["image"][i][:, y1:y2, 64 - x2:64 - x1].flip(-1))
                assert (x1, x2) == (64 - int(batch["boxes"][i, k, 2]), 64 - int(batch["boxes"][i, k, 0]))
            else:
                assert torch.equal(boxes[k], batch["boxes"][i, k])
        # Empty slots and other keys are untouched.
        assert torch.equal(boxes[int(tiny_scenes.counts[i]):], batch["boxes"][i][int(tiny_scenes.counts[i]):])
    assert torch.equal(flipped["classes"], batch["classes"]) and torch.equal(flipped["tags"], batch["tags"])


def test_augmented_loader_applies_the_augmentation_with_the_loaders_generator(tiny_scenes):
    from mmbook.data import AugmentedLoader

    seen = []

    def record(batch, generator):
        seen.append(generator)
        return {**batch, "marked": torch.ones(1)}

    inner = DeviceLoader(tiny_scenes.tensors(), 10, shuffle=True, **CIFAR10_STATS)
    loader = AugmentedLoader(inner, record)
    batches = list(loader)
    assert len(loader) == len(inner) == 3 and len(batches) == 3
    assert all("marked" in b for b in batches) and all(g is inner.generator for g in seen)
    assert loader.generator is inner.generator  # so fit(resume=True) restores the augmentation's random state
    task = O.tasks.build_scene_task("scene-detection", "image")
    assert task.augment is O.flip_scenes
