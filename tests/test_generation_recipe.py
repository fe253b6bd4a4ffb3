"""The captioning recipe, its frozen encoder and ``mmbook train --task scene-captioning``."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mmbook.generation import encoder as encoder_module
from mmbook.generation.encoder import region_features, shrink_onto_canvas
from mmbook.generation.recipe import caption_data, encode_references, evaluate_captions
from mmbook.generation.references import BOS_ID, EOS_ID, generation_vocabulary, scene_references
from mmbook.objectives.backbone import SceneBackbone


def test_shrink_onto_canvas_keeps_shape_and_pastes_a_smaller_image():
    images = torch.full((6, 3, 32, 32), 255, dtype=torch.uint8)
    out = shrink_onto_canvas(images, seed=0)
    assert out.shape == images.shape and out.dtype == torch.uint8
    white = (out == 255).all(dim=1).sum(dim=(1, 2))  # the pasted (white) square, between 18x18 and 30x30 pixels
    assert ((white >= 18 * 18) & (white <= 30 * 30)).all()
    assert torch.equal(out, shrink_onto_canvas(images, seed=0)) and not torch.equal(out, shrink_onto_canvas(images, seed=1))
    with pytest.raises(ValueError, match="uint8"):
        shrink_onto_canvas(images.float())


def test_region_features_are_a_4x4_grid_of_the_backbone():
    backbone = SceneBackbone(8).eval()
    features = region_features(backbone, torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8))
    assert features.shape == (3, 16, 16)
    with pytest.raises(ValueError, match="uint8"):
        region_features(backbone, torch.rand(3, 3, 64, 64))


def test_mirrored_regions_of_a_mirrored_scene_are_the_same_regions_mirrored():
    torch.manual_seed(0)
    backbone = SceneBackbone(8).eval()
    scenes = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)

    def mirrored_grid(features):  # (N, 16, C), row by row over a 4x4 grid -> the same grid flipped left to right
        return features.reshape(len(features), 4, 4, -1).flip(2).reshape(features.shape)

    plain = region_features(backbone, scenes)
    averaged = region_features(backbone, scenes, mirror=True)
    # averaging with the mirror image makes the features exactly equivariant to flipping the scene; a CNN's own are not
    assert torch.allclose(mirrored_grid(region_features(backbone, scenes.flip(-1), mirror=True)), averaged, atol=1e-5)
    assert not torch.allclose(mirrored_grid(region_features(backbone, scenes.flip(-1))), plain, atol=1e-3)
    assert torch.allclose(averaged, (plain + mirrored_grid(region_features(backbone, scenes.flip(-1)))) / 2, atol=1e-5)


def test_pretrained_encoder_is_cached_and_a_corrupt_cache_is_retrained(tmp_path, monkeypatch):
    monkeypatch.setenv("MMBOOK_CACHE", str(tmp_path))
    calls = []

    def fake_pretrain(seed, quick, root, download, encoder):
        calls.append(seed)
        return SceneBackbone(32).eval().requires_grad_(False), {"pretrain_accuracy": 0.5, "pretrain_seconds": 1.0,
                                                                "pretrain_images": 10, "pretrain_epochs": 1}

    monkeypatch.setattr(encoder_module, "_pretrain", fake_pretrain)
    encoder_module.pretrain_backbone.cache_clear()
    try:
        first, facts = encoder_module.pretrain_backbone(seed=5, quick=True)
        (cached,) = tmp_path.rglob("generation_encoder_*seed5_quick.pt")
        encoder_module.pretrain_backbone.cache_clear()
        again, _ = encoder_module.pretrain_backbone(seed=5, quick=True)
        assert calls == [5] and facts["pretrain_accuracy"] == 0.5
        for name, value in first.state_dict().items():
            assert torch.equal(value, again.state_dict()[name])
        cached.write_bytes(b"not a checkpoint")  # an interrupted or corrupt file is trained again, not trusted
        encoder_module.pretrain_backbone.cache_clear()
        encoder_module.pretrain_backbone(seed=5, quick=True)
        assert calls == [5, 5]
    finally:
        encoder_module.pretrain_backbone.cache_clear()


def test_large_encoder_gives_the_same_grid_as_the_small_one_and_is_cached_apart(tmp_path, monkeypatch):
    from mmbook.objectives.backbone import LargeSceneBackbone

    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    assert region_features(SceneBackbone(8).eval(), images).shape == (2, 16, 16)  # 2w channels
    assert region_features(LargeSceneBackbone(8).eval(), images).shape == (2, 16, 32)  # the same 4x4 regions, 4w channels
    with pytest.raises(ValueError, match="normalized float images"):
        LargeSceneBackbone(8)(images)
    monkeypatch.setenv("MMBOOK_CACHE", str(tmp_path))
    built = []

    def fake_pretrain(seed, quick, root, download, encoder):
        built.append(encoder)
        backbone = encoder_module.ENCODERS[encoder](32).eval().requires_grad_(False)
        return backbone, {"pretrain_accuracy": 0.5, "pretrain_seconds": 1.0, "pretrain_images": 10, "pretrain_epochs": 1}

    monkeypatch.setattr(encoder_module, "_pretrain", fake_pretrain)
    encoder_module.pretrain_backbone.cache_clear()
    try:
        small, _ = encoder_module.pretrain_backbone(seed=3, quick=True)
        large, _ = encoder_module.pretrain_backbone(seed=3, quick=True, encoder="large")
        assert built == ["small", "large"]
        assert type(small) is SceneBackbone and type(large) is LargeSceneBackbone
        assert sorted(path.name for path in tmp_path.rglob("*.pt")) == [
            "generation_encoder_large_v2_seed3_quick.pt", "generation_encoder_v2_seed3_quick.pt"]
        encoder_module.pretrain_backbone.cache_clear()
        reloaded, _ = encoder_module.pretrain_backbone(seed=3, quick=True, encoder="large")
        assert built == ["small", "large"] and type(reloaded) is LargeSceneBackbone
    finally:
        encoder_module.pretrain_backbone.cache_clear()


@pytest.mark.parametrize("call", [
    lambda: encoder_module.pretrain_backbone(seed=0, quick=True, encoder="huge"),
    lambda: encoder_module.GridClassifier(8, encoder="huge"),
    lambda: caption_data("test", 10, quick=True, encoder="huge"),
])
def test_an_unknown_encoder_is_a_clear_error(call):
    with pytest.raises(ValueError, match="unknown image encoder 'huge'; expected one of small, large"):
        call()


@pytest.mark.parametrize("options", [{"encoder": "large"}, {"mirror": True}])
def test_the_oracles_regions_refuse_an_encoders_settings(options):
    with pytest.raises(ValueError, match="the oracle's regions come from the scenes' ground truth"):
        caption_data("test", 10, quick=True, regions="oracle", **options)


def test_the_references_ceiling_needs_no_encoder(tmp_path, monkeypatch):
    from mmbook.generation.recipe import reference_ceiling

    monkeypatch.setenv("MMBOOK_CACHE", str(tmp_path))  # no encoder cached on disk either

    def no_pretraining(*args):
        raise AssertionError("the references' agreement pretrained an image encoder it does not read")

    monkeypatch.setattr(encoder_module, "_pretrain", no_pretraining)
    encoder_module.pretrain_backbone.cache_clear()
    try:
        ceiling = reference_ceiling("test", 20, seed=11, quick=True)
    finally:
        encoder_module.pretrain_backbone.cache_clear()
    assert 0 < ceiling["cider_d"] and 0 < ceiling["bleu_4"] <= 1


def test_encode_references_frames_every_caption_and_refuses_unknown_words():
    tokens = encode_references(["a cat", "a big truck in the middle"], generation_vocabulary())
    assert tokens[:, 0].eq(BOS_ID).all()
    assert tokens[0].tolist()[:4] == [BOS_ID, *generation_vocabulary().encode("a cat"), EOS_ID]
    assert tokens[0, 4:].eq(0).all()
    with pytest.raises(ValueError, match="outside the vocabulary"):
        encode_references(["a unicorn"], generation_vocabulary())
    with pytest.raises(ValueError, match="empty"):
        encode_references([""], generation_vocabulary())


def test_references_score_as_a_perfect_captioner_and_a_constant_caption_does_not(scenes_for_captions):
    scenes = scenes_for_captions
    references = scene_references(scenes, seed=0)
    own = evaluate_captions([refs[0] for refs in references], [refs[1:] for refs in references], scenes)
    assert own["chair_i"] == 0 and own["chair_s"] == 0 and own["object_recall"] > 0.5
    constant = evaluate_captions(["a cat and a dog"] * len(scenes), references, scenes)
    assert constant["chair_s"] > 0.5 and constant["cider_d"] < own["cider_d"]
    assert constant["unique_captions"] == 1 / len(scenes)


@pytest.fixture(scope="module")
def scenes_for_captions():
    from mmbook.data.scenes import make_scenes

    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (100, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.arange(100) % 10
    return make_scenes(60, images, labels, seed=1)


def test_cli_trains_a_captioner_offline_and_writes_its_figures(tmp_path, monkeypatch):
    from mmbook.cli import main

    monkeypatch.setenv("MMBOOK_QUICK", "1")
    out = tmp_path / "out.json"
    assert main(["train", "--task", "scene-captioning", "--quick", "--scenes", "200", "--epochs", "1",
                 "--decoder", "global", "--decoding", "beam", "--beam-width", "2", "--no-repeat-ngram", "3",
                 "--no-progress", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["task"] == "scene-captioning" and result["decoder"] == "global" and result["decoding"] == "beam"
    assert result["no_repeat_ngram"] == 3
    for key in ("bleu_4", "cider_d", "rouge_l", "chair_i", "chair_s", "object_recall", "reference_cider_d"):
        assert isinstance(result[key], float) and (math.isnan(result[key]) or result[key] >= 0), key
    assert 0 < result["reference_cider_d"] and result["train_scenes"] == 200


def test_cli_rejects_a_beam_wider_than_the_vocabulary(capsys):
    from mmbook.cli import main

    assert main(["train", "--task", "scene-captioning", "--quick", "--scenes", "50", "--epochs", "1",
                 "--decoding", "beam", "--beam-width", "1000", "--no-progress"]) == 2
    assert "beam width" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--decoding", "sample", "--no-repeat-ngram", "2"], "not to sampling"),
    (["--no-repeat-ngram", "-1"], "zero or more"),
])
def test_cli_rejects_ngram_blocking_it_cannot_apply(flags, message, capsys):
    from mmbook.cli import main

    assert main(["train", "--task", "scene-captioning", "--quick", "--scenes", "50", "--epochs", "1",
                 "--no-progress", *flags]) == 2
    assert message in capsys.readouterr().err


def test_cli_trains_on_the_large_encoder_and_says_so(tmp_path, monkeypatch):
    from mmbook.cli import main

    monkeypatch.setenv("MMBOOK_QUICK", "1")
    monkeypatch.setenv("MMBOOK_CACHE", str(tmp_path / "cache"))  # the encoder is pretrained here, not found cached
    out = tmp_path / "out.json"
    encoder_module.pretrain_backbone.cache_clear()
    try:
        assert main(["train", "--task", "scene-captioning", "--quick", "--scenes", "100", "--epochs", "1",
                     "--pretrained-encoder", "large", "--mirror-regions", "--no-progress", "--json", str(out)]) == 0
    finally:
        encoder_module.pretrain_backbone.cache_clear()
    result = json.loads(out.read_text())
    assert result["pretrained_encoder"] == "large" and result["mirror_regions"] is True
    assert [path.name for path in (tmp_path / "cache").rglob("generation_encoder*.pt")] == [
        "generation_encoder_large_v2_seed0_quick.pt"]
    assert 0 < result["pretrain_accuracy"] <= 1


def test_cli_refuses_the_pretrained_encoder_flag_for_another_task(capsys):
    from mmbook.cli import main

    assert main(["train", "--task", "scene-vqa", "--quick", "--pretrained-encoder", "large", "--no-progress"]) == 2
    assert "--pretrained-encoder applies to --task scene-captioning" in capsys.readouterr().err


def test_cli_refuses_ngram_blocking_for_another_task(capsys):
    from mmbook.cli import main

    assert main(["train", "--task", "scene-vqa", "--quick", "--no-repeat-ngram", "2", "--no-progress"]) == 2
    assert "--no-repeat-ngram applies to --task scene-captioning" in capsys.readouterr().err


def test_tracking_records_free_running_figures_each_epoch_and_train_index_picks_the_scenes(monkeypatch):
    from mmbook.generation.recipe import train_scene_captioning

    monkeypatch.setenv("MMBOOK_QUICK", "1")
    report = train_scene_captioning("global", quick=True, scenes=120, test_scenes=40, epochs=2,
                                    train_index=list(range(0, 120, 2)), track_scenes=10)
    records = report["history"].records
    assert report["train_scenes"] == 60 and len(records) == 2
    for record in records:
        for key in ("test_loss", "free_cider_d", "free_bleu_4", "free_chair_i", "free_object_recall"):
            assert key in record, key
        assert record["test_loss"] > 0 and record["free_cider_d"] >= 0
    assert records[1]["test_loss"] < records[0]["test_loss"]  # teacher-forced loss on the test references falls
    assert report["track_seconds"] > 0
    untracked = train_scene_captioning("global", quick=True, scenes=120, test_scenes=40, epochs=1)
    assert "free_cider_d" not in untracked["history"].last and untracked["track_seconds"] == 0


@pytest.mark.parametrize("options, message", [
    ({"train_index": [0, 120]}, r"indices of the 120 training scenes \(0\.\.119\)"),
    ({"train_index": []}, "got 0 indices"),
    ({"track_scenes": 41}, "between 0 and the 40 test scenes"),
])
def test_bad_train_index_or_track_scenes_is_refused(monkeypatch, options, message):
    from mmbook.generation.recipe import train_scene_captioning

    monkeypatch.setenv("MMBOOK_QUICK", "1")
    with pytest.raises(ValueError, match=message):
        train_scene_captioning("global", quick=True, scenes=120, test_scenes=40, epochs=1, **options)


def test_oracle_region_features_are_each_classes_share_of_every_region():
    from mmbook.generation.encoder import ORACLE_CHANNELS, oracle_region_features

    boxes = torch.zeros(1, 4, 4)
    boxes[0, 0] = torch.tensor([0.0, 0.0, 24.0, 24.0])  # a class-3 object of side 24 at the top left
    boxes[0, 1] = torch.tensor([40.0, 40.0, 64.0, 64.0])  # a class-7 object of side 24 at the bottom right
    classes = torch.tensor([[3, 7, -1, -1]])
    features = oracle_region_features(boxes, classes)
    assert features.shape == (1, 16, ORACLE_CHANNELS)
    top_left = features[0, :, 3].reshape(4, 4)
    assert torch.allclose(top_left[:2, :2], torch.tensor([[1.0, 0.5], [0.5, 0.25]]))
    assert top_left.sum() == pytest.approx(24 * 24 / 256)  # the object's area, in regions
    bottom_right = features[0, :, 7].reshape(4, 4)
    assert torch.allclose(bottom_right[2:, 2:], torch.tensor([[0.25, 0.5], [0.5, 1.0]]))
    assert features[0, 0, 10] == pytest.approx(0.5)  # side 24 is half way from 18 to 30
    other = [c for c in range(10) if c not in (3, 7)]
    assert features[0, :, other].abs().sum() == 0  # padding (-1) and absent classes add nothing
    with pytest.raises(ValueError, match=r"boxes \(N, K, 4\)"):
        oracle_region_features(boxes[0], classes[0])
    with pytest.raises(ValueError, match="CIFAR-10 labels"):
        oracle_region_features(boxes, torch.tensor([[3, 10, -1, -1]]))


def test_a_captioner_trains_on_oracle_regions_and_bad_regions_are_refused(monkeypatch):
    from mmbook.generation.encoder import ORACLE_CHANNELS
    from mmbook.generation.recipe import caption_data, train_scene_captioning

    monkeypatch.setenv("MMBOOK_QUICK", "1")
    scenes, _, tensors = caption_data("train", 40, 0, True, regions="oracle")
    assert tensors["features"].shape == (40, 16, ORACLE_CHANNELS)
    covered = tensors["features"][..., :10].sum(dim=(1, 2))  # each scene's objects' area, in regions
    area = ((scenes.boxes[..., 2] - scenes.boxes[..., 0]) * (scenes.boxes[..., 3] - scenes.boxes[..., 1])).sum(1)
    assert torch.allclose(covered, area / 256, atol=1e-4)
    report = train_scene_captioning("attention", quick=True, scenes=40, test_scenes=20, epochs=1, regions="oracle")
    assert report["regions"] == "oracle" and "pretrain_accuracy" not in report
    assert report["model"].encoder.project.in_features == ORACLE_CHANNELS
    with pytest.raises(ValueError, match="unknown region features 'pixels'; expected one of encoder, oracle"):
        caption_data("train", 40, 0, True, regions="pixels")


def test_caption_data_is_built_once_whether_its_arguments_come_by_position_or_by_name(monkeypatch):
    from mmbook.generation.recipe import caption_data

    monkeypatch.setenv("MMBOOK_QUICK", "1")
    by_position = caption_data("train", 30, 0, True)
    assert caption_data("train", 30, seed=0, quick=True, root=None, download=False) is by_position
    assert caption_data("train", 30, 0, True, regions="oracle") is not by_position
