"""VQA models and the scene-vqa recipe: shapes, one image read for K questions, the relation network's
decomposed first layer, the loss's empty slots, the data's slots, and bad input."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from mmbook.reasoning.models import (VQA_MODELS, RelationNetwork, build_vqa_model, flat_questions, vqa_accuracy,
                                     vqa_loss)
from mmbook.reasoning.programs import answer_vocabulary, question_vocabulary
from mmbook.reasoning.recipe import accuracy_by_family, train_scene_vqa, vqa_data


def batch(b: int = 3, k: int | None = 4, t: int = 7, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shape = (b, t) if k is None else (b, k, t)
    return {"image": torch.randint(0, 256, (b, 3, 64, 64), dtype=torch.uint8, generator=generator),
            "question": torch.randint(1, 20, shape, generator=generator)}


@pytest.mark.parametrize("name", VQA_MODELS)
def test_every_model_answers_each_question_and_reads_an_image_once_for_its_questions(name):
    torch.manual_seed(0)
    model = build_vqa_model(name, vocab_size=20, num_answers=11).eval()
    several = batch(k=4)
    logits = model(several)
    assert logits.shape == (12, 11)
    # The same question asked alone about the same image gets the same logits.
    one = {"image": several["image"][1:2], "question": several["question"][1, 2][None]}
    assert torch.allclose(model(one), logits[1 * 4 + 2][None], atol=1e-5)


def test_the_relation_networks_decomposed_first_layer_is_the_layer_on_concatenated_pairs():
    torch.manual_seed(0)
    model = RelationNetwork(vocab_size=20, num_answers=5, width=8, hidden=16, g_width=12).eval()
    data = batch(b=2, k=None)
    from mmbook.reasoning.models import region_set

    objects = region_set(model.cnn(data["image"]))
    question = model.question(data["question"])
    pairs = RelationNetwork.pairs(objects, question)  # (B, 256, 2D + Q)
    assert pairs.shape == (2, 256, 2 * (8 + 2) + 16)
    assert torch.equal(pairs[1, 3 * 16 + 5], torch.cat([objects[1, 3], objects[1, 5], question[1]]))
    expected = model.f(model.g_rest(model.g_first(pairs)).sum(dim=1))
    assert torch.allclose(model(data), expected, atol=1e-4)


def test_loss_and_accuracy_skip_empty_slots():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [5.0, -5.0], [0.0, 1.0]])
    labels = torch.tensor([[0, 0], [-100, 1]])
    loss = vqa_loss(logits, {"label": labels})
    expected = F.cross_entropy(logits[[0, 1, 3]], torch.tensor([0, 0, 1]))
    assert torch.allclose(loss, expected)
    correct, counted = vqa_accuracy(logits, {"label": labels})
    assert (int(correct), counted) == (2, 3)


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown VQA model 'mlp'"):
        build_vqa_model("mlp", 20, 5)
    with pytest.raises(ValueError, match=r"questions must be \(B, T\) or \(B, K, T\)"):
        flat_questions({"question": torch.zeros(2, 3, 4, 5, dtype=torch.long)})
    with pytest.raises(ValueError, match="images must be"):
        build_vqa_model("image", 20, 5)({"image": torch.zeros(2, 64, 64), "question": torch.ones(2, 3).long()})
    with pytest.raises(ValueError, match="unknown image source 'photos'"):
        train_scene_vqa("concat", "photos")
    with pytest.raises(ValueError, match="not asked about shapes"):
        train_scene_vqa("concat", "shapes", families=("count",))


def test_vqa_data_puts_each_question_in_its_scenes_slot():
    questions, tensors, slots = vqa_data("shapes", "train", 30, 4, seed=3)
    vocab, answers = question_vocabulary("shapes"), answer_vocabulary("shapes")
    words, _ = questions.tokens(vocab)
    for scene, slot in [(0, 0), (7, 3), (29, 1)]:
        q = int(slots[scene, slot])
        assert q >= 0 and int(questions.scene_index[q]) == scene
        length = int((words[q] != 0).sum())
        assert torch.equal(tensors["question"][scene, slot, :length], words[q, :length])
        assert answers.classes[int(tensors["label"][scene, slot])] == questions.answers[q]
    assert int((slots >= 0).sum()) == len(questions)
    assert tensors["image"].shape == (30, 3, 64, 64)
    # Test scenes are other scenes.
    _, test_tensors, _ = vqa_data("shapes", "test", 30, 4, seed=3)
    assert not torch.equal(test_tensors["image"], tensors["image"])


def test_vqa_data_is_built_once_however_its_arguments_are_spelled():
    from mmbook.reasoning.programs import families_for

    first = vqa_data("shapes", "train", 12, 3, seed=5)
    assert vqa_data("shapes", "train", 12, 3, 5, True, list(families_for("shapes")), None, False, None) is first
    assert vqa_data("shapes", "train", 12, 3, seed=6) is not first
    assert vqa_data("shapes", "train", 12, 3, seed=5, families=("count_same_shape",)) is not first


def test_accuracy_by_family_groups_relational_questions():
    questions, _, _ = vqa_data("shapes", "test", 20, 6, seed=1)
    truth = questions.answer_ids(answer_vocabulary("shapes"))
    wrong_on_counting = truth.clone()
    counting = torch.tensor([f == "count_same_shape" for f in questions.family])
    wrong_on_counting[counting] = (truth[counting] + 1) % len(answer_vocabulary("shapes").classes)
    report = accuracy_by_family(wrong_on_counting, truth, questions)
    assert report["count_same_shape"] == 0.0 and report["shape_of_colour"] == 1.0
    assert report["non_relational"] == 1.0 and 0 < report["relational"] < 1
    assert report["overall"] == pytest.approx(1 - float(counting.float().mean()))


def test_a_tiny_run_reports_every_family():
    report = train_scene_vqa("relation", "shapes", quick=True, scenes=24, test_scenes=12, per_scene=6, epochs=1,
                             batch_size=8, progress=False)
    for key in ("overall", "relational", "non_relational", "shape_of_colour", "count_same_shape"):
        assert 0.0 <= report[key] <= 1.0
    assert set(report["prior"]) >= {"overall", "closest_shape"}
    assert 0 < report["train_questions"] <= 24 * 6 and 0 < report["test_questions"] <= 12 * 6
    assert report["train_seconds"] > 0 and report["parameters"] > 0


def test_the_compositional_split_trains_on_a_and_tests_on_a_and_b():
    from mmbook.reasoning.recipe import vqa_data

    report = train_scene_vqa("concat", "shapes", quick=True, scenes=24, test_scenes=40, per_scene=6, epochs=1,
                             batch_size=8, progress=False, compositional=True)
    split = report["compositional"]
    assert split["A"]["overall"] == report["overall"]
    assert split["drop"] == pytest.approx(split["A"]["overall"] - split["B"]["overall"])
    # B's test scenes are A's with other shapes: the same layout, squares in the colours A keeps as circles
    unseen = vqa_data("shapes", "test", 40, 6, condition="B")[1]["image"]
    seen = vqa_data("shapes", "test", 40, 6, condition="A")[1]["image"]
    assert unseen.shape == seen.shape and not torch.equal(unseen, seen)
    with pytest.raises(ValueError, match="defined for the shapes only"):
        vqa_data("scenes", "test", 8, 6, condition="B")


def test_a_curriculum_asks_only_non_relational_questions_first(monkeypatch):
    import mmbook.training

    from mmbook.reasoning import FAMILIES
    from mmbook.reasoning.recipe import vqa_data

    seen = {}
    real_fit = mmbook.training.fit

    def recording_fit(model, loader, **options):
        seen["loader"] = loader
        return real_fit(model, loader, **options)

    monkeypatch.setattr(mmbook.training, "fit", recording_fit)
    report = train_scene_vqa("concat", "shapes", quick=True, scenes=24, test_scenes=12, per_scene=6, epochs=2,
                             batch_size=8, progress=False, curriculum=1)
    assert report["curriculum"] == 1 and 0.0 <= report["overall"] <= 1.0
    loader = seen["loader"]
    easy = tuple(f for f in FAMILIES if not FAMILIES[f].relational and f in report)
    questions, tensors, _ = vqa_data("shapes", "train", 24, 6, families=easy)
    assert torch.equal(loader.first.tensors["question"], tensors["question"])
    assert not any(FAMILIES[f].relational for f in questions.family)
    assert torch.equal(loader.then.tensors["question"], vqa_data("shapes", "train", 24, 6)[1]["question"])
    loader.set_epoch(1)
    assert loader.active is loader.then


@pytest.mark.parametrize("options, message", [
    ({"curriculum": 2}, "must be shorter than the run"),
    ({"curriculum": -1}, "whole number of epochs"),
    ({"curriculum": 1, "families": ("shape_of_colour",)}, "needs both kinds"),
])
def test_a_curriculum_that_cannot_work_is_a_clear_error(options, message):
    with pytest.raises(ValueError, match=message):
        train_scene_vqa("concat", "shapes", quick=True, scenes=8, epochs=2, progress=False, **options)


def test_the_compositional_split_is_for_shapes_only():
    with pytest.raises(ValueError, match="compositional split is defined for the shapes only"):
        train_scene_vqa("concat", "scenes", quick=True, scenes=8, epochs=1, progress=False, compositional=True)


def test_encoding_distinct_questions_once_gives_the_encoders_values_and_gradients():
    from mmbook.reasoning.models import encode_distinct, question_encoder

    torch.manual_seed(0)
    encoder = question_encoder(vocab_size=20, hidden=16)
    rows = torch.randint(1, 20, (5, 6))
    questions = rows[torch.tensor([0, 3, 0, 1, 4, 3, 3, 2])]  # repeats, in no order
    direct = encoder(questions)
    (direct * torch.arange(16.0)).sum().backward()
    direct_grad = encoder.embedding.weight.grad.clone()
    encoder.zero_grad()
    shared = encode_distinct(encoder, questions)
    (shared * torch.arange(16.0)).sum().backward()
    assert torch.allclose(shared, direct, atol=1e-6)
    assert torch.allclose(encoder.embedding.weight.grad, direct_grad, atol=1e-5)


def test_cli_trains_scene_vqa_offline_and_writes_accuracy_per_family(tmp_path, monkeypatch):
    import json

    from mmbook.cli import main

    monkeypatch.setenv("MMBOOK_QUICK", "1")
    out = tmp_path / "out.json"
    assert main(["train", "--task", "scene-vqa", "--quick", "--model", "concat", "--scenes", "64", "--epochs", "1",
                 "--no-progress", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["task"] == "scene-vqa" and result["model"] == "concat" and result["images"] == "shapes"
    for key in ("overall", "relational", "non_relational", "shape_of_colour", "closest_shape"):
        assert 0.0 <= result[key] <= 1.0, key
    assert set(result["question_only_by_counting"]) >= {"overall", "closest_shape"}
    assert result["train_scenes"] == 64


@pytest.mark.parametrize("argv, message", [
    (["--model", "lenet"], "--task scene-vqa --model must be one of question, image"),
    (["--images", "clevr"], "invalid choice: 'clevr'"),
])
def test_cli_scene_vqa_rejects_bad_flags(argv, message, capsys):
    from mmbook.cli import main

    assert main(["train", "--task", "scene-vqa", "--quick", "--scenes", "8", "--epochs", "1", "--no-progress",
                 *argv]) == 2
    assert message in capsys.readouterr().err


def test_cli_compositional_writes_both_conditions(tmp_path, monkeypatch):
    import json

    from mmbook.cli import main

    monkeypatch.setenv("MMBOOK_QUICK", "1")
    out = tmp_path / "out.json"
    assert main(["train", "--task", "scene-vqa", "--quick", "--model", "question", "--scenes", "32", "--epochs", "1",
                 "--compositional", "--no-progress", "--json", str(out)]) == 0
    split = json.loads(out.read_text())["compositional"]
    assert set(split) == {"A", "B", "drop"} and 0.0 <= split["B"]["overall"] <= 1.0


def test_cli_compositional_is_a_scene_vqa_flag(capsys):
    from mmbook.cli import main

    assert main(["train", "--task", "cifar10", "--quick", "--compositional", "--no-progress"]) == 2
    assert "--compositional applies to --task scene-vqa, not cifar10" in capsys.readouterr().err


def test_cli_cifar10_rejects_a_vqa_model(capsys):
    from mmbook.cli import main

    assert main(["train", "--task", "cifar10", "--quick", "--model", "film", "--no-progress"]) == 2
    assert "--task cifar10 --model must be fastcnn or lenet" in capsys.readouterr().err



def test_cli_curriculum_reaches_the_recipe_and_the_json(tmp_path, monkeypatch, capsys):
    import json

    from mmbook.cli import main

    monkeypatch.setenv("MMBOOK_QUICK", "1")
    out = tmp_path / "out.json"
    assert main(["train", "--task", "scene-vqa", "--quick", "--model", "concat", "--scenes", "16", "--epochs", "2",
                 "--curriculum", "1", "--no-progress", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["curriculum"] == 1
    assert main(["train", "--task", "scene-vqa", "--quick", "--scenes", "16", "--epochs", "2", "--curriculum", "2",
                 "--no-progress"]) == 2
    assert "must be shorter than the run" in capsys.readouterr().err
    assert main(["train", "--task", "cifar10", "--quick", "--curriculum", "1", "--no-progress"]) == 2
    assert "--curriculum applies to --task scene-vqa, not cifar10" in capsys.readouterr().err


def test_cli_question_bow_trains_with_a_bag_of_words(tmp_path, monkeypatch):
    import json

    from mmbook.cli import main

    monkeypatch.setenv("MMBOOK_QUICK", "1")
    out = tmp_path / "out.json"
    assert main(["train", "--task", "scene-vqa", "--quick", "--model", "concat", "--question", "bow", "--scenes", "16",
                 "--epochs", "1", "--no-progress", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["question_encoder"] == "bow"


def test_cli_question_is_a_scene_vqa_flag(capsys):
    from mmbook.cli import main

    assert main(["train", "--task", "cifar10", "--quick", "--question", "bow", "--no-progress"]) == 2
    assert "--question applies to --task scene-vqa, not cifar10" in capsys.readouterr().err


def test_pretrained_regions_read_the_frozen_backbone_as_cifar10_normalised_pixels():
    from mmbook.data.loaders import CIFAR10_STATS, normalize_images
    from mmbook.objectives.backbone import SceneBackbone
    from mmbook.reasoning.batches import PIXEL_MEAN, PIXEL_STD
    from mmbook.reasoning.models import PretrainedRegions

    torch.manual_seed(0)
    backbone = SceneBackbone(8)
    regions = PretrainedRegions(backbone, grid=4)
    images = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    expected = F.adaptive_max_pool2d(backbone.eval()(normalize_images(images, **CIFAR10_STATS)), 4)
    assert torch.allclose(regions(images), expected, atol=1e-5)  # uint8 images
    loader_view = (images.float() / 255 - PIXEL_MEAN) / PIXEL_STD  # as the VQA loader normalises them
    assert torch.allclose(regions(loader_view), expected, atol=1e-5)
    running = backbone.net[0][1].running_mean.clone()
    regions.train()  # the rest of a model trains; the backbone stays frozen, its batch norm in eval mode
    assert not backbone.training and not any(p.requires_grad for p in backbone.parameters())
    regions(loader_view)
    assert torch.equal(backbone.net[0][1].running_mean, running)


def test_a_pretrained_backbone_replaces_the_cnn_or_films_stem_and_vilt_refuses_it():
    from mmbook.objectives.backbone import SceneBackbone
    from mmbook.reasoning.models import PretrainedRegions, build_vqa_model

    backbone = SceneBackbone(8)  # 16 channels
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    batch = {"image": images, "question": torch.randint(1, 10, (2, 3, 5))}
    for name, part in (("concat", "cnn"), ("relation", "cnn"), ("attention", "cnn"), ("film", "stem")):
        model = build_vqa_model(name, 20, 7, question="bow", backbone=backbone)
        assert isinstance(getattr(model, part), PretrainedRegions), name
        assert model(batch).shape == (6, 7), name
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        assert trainable and not any(n.startswith(f"{part}.backbone") for n in trainable), name
    with pytest.raises(ValueError, match="vilt model reads the image as patches"):
        build_vqa_model("vilt", 20, 7, backbone=backbone)


def test_train_scene_vqa_with_the_pretrained_encoder_and_its_bad_settings(tmp_path, monkeypatch):
    import json

    from mmbook.cli import main
    from mmbook.reasoning.recipe import train_scene_vqa

    monkeypatch.setenv("MMBOOK_QUICK", "1")
    out = tmp_path / "out.json"
    assert main(["train", "--task", "scene-vqa", "--quick", "--images", "scenes", "--image-encoder", "pretrained",
                 "--model", "concat", "--question", "bow", "--scenes", "16", "--epochs", "1", "--no-progress",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["image_encoder"] == "pretrained" and 0 <= result["overall"] <= 1
    with pytest.raises(ValueError, match="pretrained image encoder was trained on CIFAR-10 objects"):
        train_scene_vqa("concat", "shapes", quick=True, image_encoder="pretrained")
    with pytest.raises(ValueError, match="unknown image encoder 'imagenet'"):
        train_scene_vqa("concat", "scenes", quick=True, image_encoder="imagenet")
