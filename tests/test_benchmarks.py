"""Tests of the scripts in benchmarks/: what they compute, and that their CPU paths run on tiny data."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from mmbook.cnn import LeNet

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    """Import ``benchmarks/NAME.py`` as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# lenet_step.py -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lenet_step_pool_is_bitwise_max_pool2d_ties_included(dtype):
    """lenet_step.py times a hand-written max-pool; it must compute exactly what F.max_pool2d does."""
    MaxPool2x2 = load_benchmark("lenet_step").MaxPool2x2
    x = torch.randn(4, 6, 8, 8).to(dtype)
    x[:, :, :4, :4] = 0.5  # windows of equal values: ties go to the first pixel in reading order
    x[:, :, 4:, 4:] = x[:, :, 4:, 4:].round()  # and partial ties
    x = x.contiguous(memory_format=torch.channels_last)
    stock, custom = x.clone().requires_grad_(), x.clone().requires_grad_()
    expected, got = F.max_pool2d(stock, 2), MaxPool2x2.apply(custom)
    grad = torch.randn_like(expected)
    expected.backward(grad)
    got.backward(grad)
    assert got.shape == (4, 6, 4, 4) and torch.equal(got, expected)
    assert torch.equal(custom.grad, stock.grad)


def test_lenet_step_model_has_lenets_outputs_and_gradients():
    module = load_benchmark("lenet_step")
    torch.manual_seed(0)
    stock = LeNet()
    custom = module.LeNetCustomPool()
    custom.load_state_dict(stock.state_dict())
    images = torch.randn(3, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    labels = torch.tensor([0, 4, 9])
    stock_logits, custom_logits = stock(images), custom(images)
    torch.testing.assert_close(custom_logits, stock_logits)
    F.cross_entropy(stock_logits, labels).backward()
    F.cross_entropy(custom_logits, labels).backward()
    torch.testing.assert_close(custom.conv1.weight.grad, stock.conv1.weight.grad)


# jpeg_quality.py -----------------------------------------------------------------------------


def test_jpeg_quality_reencodes_into_the_same_layout(tmp_path):
    from PIL import Image

    module = load_benchmark("jpeg_quality")
    source = tmp_path / "cifar10"
    original = source / "train" / "cat" / "0001.jpg"
    original.parent.mkdir(parents=True)
    pixels = torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    Image.fromarray(pixels.numpy()).save(original, quality=95)
    module.reencode(original, source, tmp_path / "q25" / "cifar10", quality=25)
    copy = tmp_path / "q25" / "cifar10" / "train" / "cat" / "0001.jpg"
    assert Image.open(copy).size == (32, 32)
    assert copy.stat().st_size < original.stat().st_size  # quality 25 keeps less


# gpu_check.py --------------------------------------------------------------------------------


def test_gpu_check_quick_run_records_every_figure_of_a_recipe(tiny_data, tmp_path):
    """gpu_check.py runs where a GPU is scarce: a broken step must fail here, not there."""
    module = load_benchmark("gpu_check")
    out = tmp_path / "out"
    assert module.main(["--quick", "--out", str(out), "--recipes", "cpu", "--seeds", "0",
                        "--skip", "loader", "detection"]) == 0
    rows = [json.loads(line) for line in (out / "gpu_check.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == ["data", "fastcnn", "done"]  # no warm-up epoch without CUDA
    assert rows[0]["train"] == 40 and rows[0]["test"] == 20
    run = rows[1]
    assert "error" not in run, run.get("error")
    assert run["recipe"] == "cpu" and run["seed"] == 0 and run["epochs"] == 1
    for key in ("test_accuracy", "test_accuracy_flip", "test_accuracy_shift", "test_accuracy_tta"):
        assert run[key] * 20 == pytest.approx(round(run[key] * 20)), key  # a share of the 20 test images
    assert len(run["epoch_seconds"]) == 1


def test_gpu_check_records_a_failing_command_without_its_json(tmp_path):
    module = load_benchmark("gpu_check")
    row = module.cli_row("loader", ["bench", "loader", "--data", str(tmp_path / "missing"), "--device", "cpu"],
                         tmp_path)
    assert row["status"] == 2  # the CLI's usage error
    assert row["command"].startswith("mmbook bench loader --data")
    assert not (tmp_path / "loader.json").exists()



def test_gpu_check_records_a_crashing_command_and_goes_on(tmp_path, monkeypatch):
    module = load_benchmark("gpu_check")

    def crash(argv):
        raise NameError("name 'cached' is not defined")

    monkeypatch.setattr(module, "mmbook_main", crash)
    row = module.cli_row("detection", ["train", "--task", "scene-detection"], tmp_path)
    assert row == {"step": "detection", "command": "mmbook train --task scene-detection",
                   "error": "NameError(\"name 'cached' is not defined\")"}


# airbench_side_by_side.py --------------------------------------------------------------------


def test_airbench_tensors_are_nhwc_uint8_with_int64_labels(tmp_path):
    module = load_benchmark("airbench_side_by_side")
    from mmbook.data.cifar10 import CIFAR10_CLASSES, ImageSet

    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.tensor([3, 1, 4, 1, 5], dtype=torch.int32)
    converted = module.airbench_tensors(images, labels, CIFAR10_CLASSES)
    assert converted["images"].shape == (5, 32, 32, 3) and converted["images"].dtype == torch.uint8
    assert converted["images"][2, 7, 11, 1] == images[2, 1, 7, 11]
    assert converted["labels"].dtype == torch.int64 and converted["labels"].tolist() == [3, 1, 4, 1, 5]
    assert converted["classes"] == list(CIFAR10_CLASSES)

    split = ImageSet(images=images, labels=labels.long(), classes=CIFAR10_CLASSES, source="test")
    folder = module.write_airbench_data(tmp_path, split, split)
    # What airbench's CifarLoader does with the file, less the move to the GPU and the scaling.
    data = torch.load(folder / "train.pt", weights_only=True)
    assert torch.equal(data["images"].permute(0, 3, 1, 2), images)
    assert set(data) == {"images", "labels", "classes"} and (folder / "test.pt").exists()


def test_airbench_tensors_reject_channels_last_input():
    module = load_benchmark("airbench_side_by_side")
    with pytest.raises(ValueError, match=r"expected uint8 images \(N, 3, H, W\)"):
        module.airbench_tensors(torch.zeros(2, 32, 32, 3, dtype=torch.uint8), torch.zeros(2), ["a"])


def test_airbench_side_by_side_quick_on_a_cpu_trains_fastcnn_only(tiny_data, tmp_path, capsys):
    module = load_benchmark("airbench_side_by_side")
    path = tmp_path / "side_by_side.json"
    assert module.main(["--quick", "--runs", "1", "--device", "cpu", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["airbench"].startswith("skipped: airbench needs CUDA")
    assert result["data"] == {"source": result["data"]["source"], "train": 40, "test": 20, "quick": True}
    assert [(row["side"], row["seed"]) for row in result["runs"]] == [("fastcnn", 0)]
    assert list(result["summary"]) == ["fastcnn"]
    assert result["fastcnn_config"]["widths"] == [64, 256, 256] and result["fastcnn_config"]["epochs"] == 1
    row = result["runs"][0]
    for key in ("test_accuracy", "test_accuracy_flip", "test_accuracy_tta"):
        assert row[key] * 20 == pytest.approx(round(row[key] * 20)), key
    assert "airbench94: skipped" in capsys.readouterr().out


def test_airbench_side_by_side_without_cuda_needs_quick(tiny_data, capsys):
    module = load_benchmark("airbench_side_by_side")
    assert module.main(["--device", "cpu"]) == 2
    assert "airbench needs CUDA" in capsys.readouterr().err


def test_train_airbench_reports_its_three_tta_levels_and_restores_the_working_directory(tmp_path, monkeypatch):
    """The wrapper around airbench's API (read from airbench 0.1.8), checked against a stand-in without CUDA."""
    import sys
    import types

    module = load_benchmark("airbench_side_by_side")
    calls: dict = {}

    class CifarLoader:
        def __init__(self, path, train=True, batch_size=500, aug=None, altflip=False):
            # airbench opens cifar10/{train,test}.pt relative to the working directory.
            assert (Path.cwd() / path / ("train.pt" if train else "test.pt")).exists()
            calls.setdefault("loaders", []).append((train, batch_size, aug, altflip))

    def train94(train_loader, verbose=True, **options):
        calls["train94"] = options
        return "model"

    fake = types.ModuleType("airbench")
    fake.CifarLoader, fake.train94 = CifarLoader, train94
    fake.evaluate = lambda model, loader, tta_level=0: {0: 0.90, 1: 0.91, 2: 0.92}[tta_level]
    fake.lib_airbench94 = types.SimpleNamespace(hyp={"aug": {"flip": True, "translate": 2}})
    monkeypatch.setitem(sys.modules, "airbench", fake)
    monkeypatch.setitem(sys.modules, "airbench.lib_airbench94", fake.lib_airbench94)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *args: None)
    (tmp_path / "cifar10").mkdir()
    for name in ("train.pt", "test.pt"):
        (tmp_path / "cifar10" / name).write_bytes(b"")
    before = Path.cwd()

    row = module.train_airbench(tmp_path, seed=3, epochs=None, batch_size=1024)
    assert Path.cwd() == before
    assert calls["train94"] == {}  # airbench94's own epochs (9.9)
    assert calls["loaders"] == [(True, 1024, {"flip": True, "translate": 2}, True), (False, 2000, None, False)]
    assert (row["side"], row["seed"]) == ("airbench94", 3)
    assert (row["test_accuracy"], row["test_accuracy_flip"], row["test_accuracy_tta"]) == (0.90, 0.91, 0.92)
    module.train_airbench(tmp_path, seed=0, epochs=1, batch_size=64)
    assert calls["train94"] == {"epochs": 1}


# gmu_normalize.py ----------------------------------------------------------------------------


def test_gmu_normalize_trains_both_settings_on_the_same_seeds_and_compares_them(tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its sibling cli_runs
    module = load_benchmark("gmu_normalize")
    path = tmp_path / "gmu.json"
    assert module.main(["--quick", "--seeds", "2", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["fusion_options"] == {"plain": {"normalize": False}, "normalized": {"normalize": True}}
    assert [len(values) for values in result["accuracy"].values()] == [2, 2]
    assert result["verdict"].startswith("normalized inputs")
    assert result["verdict"] in capsys.readouterr().out


# captioning_seeds.py -------------------------------------------------------------------------


@pytest.fixture
def captioning_seeds(monkeypatch):
    """The benchmark script, on tiny quick-mode defaults."""
    from mmbook.generation.recipe import CAPTIONING_DEFAULTS

    monkeypatch.setenv("MMBOOK_QUICK", "1")
    monkeypatch.setitem(CAPTIONING_DEFAULTS, True, {"scenes": 60, "test_scenes": 30, "epochs": 1, "batch_size": 16,
                                                     "lr": 3e-3})
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its sibling cli_runs
    return load_benchmark("captioning_seeds")


def test_captioning_seeds_runs_every_system_on_each_seed_and_pairs_the_verdicts(tmp_path, captioning_seeds, capsys):
    module = captioning_seeds
    path = tmp_path / "captioning.json"
    assert module.main(["--quick", "--seeds", "2", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert set(result["values"]) == set(module.SYSTEMS)
    for system, values in result["values"].items():
        assert len(values["cider_d"]) == 2 and all(v >= 0 for v in values["cider_d"]), system
    assert len(result["verdicts"]) == 5
    out = capsys.readouterr().out
    assert all(verdict in out for verdict in result["verdicts"].values())


def test_captioning_seeds_with_oracle_regions_gives_every_system_the_ground_truth(tmp_path, captioning_seeds):
    module = captioning_seeds
    paths = {regions: tmp_path / f"{regions}.json" for regions in ("encoder", "oracle")}
    for regions, path in paths.items():
        assert module.main(["--quick", "--seeds", "1", "--regions", regions, "--json", str(path)]) == 0
    results = {regions: json.loads(path.read_text()) for regions, path in paths.items()}
    assert results["oracle"]["regions"] == "oracle" and results["encoder"]["regions"] == "encoder"
    # borrowing from the scenes whose ground truth is nearest names the right objects far more often
    precision = {regions: result["values"]["nearest neighbour"]["object_precision"][0]
                 for regions, result in results.items()}
    assert precision["oracle"] > precision["encoder"] + 0.2, precision


def test_captioning_seeds_reads_the_large_mirrored_encoder_with_more_scenes_and_beams(tmp_path, captioning_seeds,
                                                                                    monkeypatch):
    from mmbook.generation import recipe

    module = captioning_seeds
    calls = []
    train = recipe.train_scene_captioning

    def recording(kind, **options):
        calls.append((kind, options))
        return train(kind, **options)

    monkeypatch.setattr(recipe, "train_scene_captioning", recording)
    monkeypatch.setattr("mmbook.generation.train_scene_captioning", recording)
    path = tmp_path / "large.json"
    assert module.main(["--quick", "--seeds", "1", "--encoder", "large", "--mirror", "--scenes", "80",
                        "--beam-width", "2", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert (result["encoder"], result["mirror"], result["scenes"], result["beam_width"]) == ("large", True, 80, 2)
    assert 0 < result["encoders"][0]["pretrain_accuracy"] <= 1
    assert [kind for kind, _ in calls] == ["blind", "attention", "transformer"]
    for _, options in calls:
        assert (options["encoder"], options["mirror"], options["scenes"]) == ("large", True, 80)
        assert options["decoding"] == "beam" and options["decoding_options"] == {"width": 2}


@pytest.mark.parametrize("flags", [["--regions", "oracle", "--mirror"], ["--regions", "oracle", "--encoder", "large"],
                                   ["--beam-width", "0"], ["--scenes", "0"]])
def test_captioning_seeds_refuses_settings_it_cannot_apply(flags, captioning_seeds):
    with pytest.raises(SystemExit) as error:
        captioning_seeds.main(["--quick", *flags])
    assert error.value.code == 2


# vqa_seeds.py --------------------------------------------------------------------------------


def test_vqa_seeds_trains_each_model_on_each_seed_and_pairs_the_verdicts(tmp_path, monkeypatch, capsys):
    from mmbook.reasoning.recipe import VQA_DEFAULTS

    monkeypatch.setitem(VQA_DEFAULTS["shapes"], True, {"scenes": 40, "test_scenes": 20, "per_scene": 4, "epochs": 1,
                                                        "batch_size": 8, "lr": 2e-3})
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its sibling cli_runs
    module = load_benchmark("vqa_seeds")
    path = tmp_path / "vqa.json"
    assert module.main(["--quick", "--seeds", "2", "--models", "question", "concat", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert set(result["values"]) == {"question", "concat"}
    for model, figures in result["values"].items():
        assert all(len(figures[f]) == 2 and all(0 <= v <= 1 for v in figures[f]) for f in module.FIGURES), model
    assert set(result["verdicts"]) == {"concat vs question, overall", "concat vs question, relational",
                                       "concat vs question, non_relational"}
    assert result["images"] == "shapes"
    from mmbook.reasoning.programs import families_for

    assert set(result["by_family"]["concat"]) == set(families_for("shapes"))
    assert all(len(v) == 2 and all(0 <= a <= 1 for a in v) for v in result["by_family"]["concat"].values())
    out = capsys.readouterr().out
    assert all(verdict in out for verdict in result["verdicts"].values())


def test_vqa_seeds_passes_the_question_encoder_and_the_sizes_on(tmp_path, monkeypatch):
    from mmbook.reasoning.recipe import VQA_DEFAULTS

    monkeypatch.setitem(VQA_DEFAULTS["shapes"], True, {"scenes": 40, "test_scenes": 20, "per_scene": 4, "epochs": 1,
                                                        "batch_size": 8, "lr": 2e-3})
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its sibling cli_runs
    module = load_benchmark("vqa_seeds")
    import mmbook.reasoning.recipe as recipe

    calls = []
    real = recipe.train_scene_vqa

    def recording(*args, **kwargs):
        report = real(*args, **kwargs)
        calls.append(report)
        return report

    monkeypatch.setattr(recipe, "train_scene_vqa", recording)
    path = tmp_path / "vqa.json"
    assert module.main(["--quick", "--seeds", "1", "--models", "concat", "--question", "bow", "--epochs", "2",
                        "--scenes", "24", "--curriculum", "1", "--json", str(path)]) == 0
    assert [(c["question_encoder"], c["epochs"], c["scenes"], c["curriculum"]) for c in calls] == [("bow", 2, 24, 1)]
    assert json.loads(path.read_text())["settings"] == {"question": "bow", "image_encoder": "scratch", "epochs": 2,
                                                        "scenes": 24, "lr": None, "curriculum": 1}
    monkeypatch.setitem(VQA_DEFAULTS["scenes"], True, {"scenes": 40, "test_scenes": 20, "per_scene": 4, "epochs": 1,
                                                        "batch_size": 8, "lr": 2e-3})
    assert module.main(["--quick", "--seeds", "1", "--images", "scenes", "--models", "question", "--image-encoder",
                        "pretrained", "--scenes", "24", "--json", str(path)]) == 0
    assert calls[-1]["image_encoder"] == "pretrained" and calls[-1]["images"] == "scenes"
    assert json.loads(path.read_text())["settings"]["image_encoder"] == "pretrained"


# vqa_detected_scenes.py ----------------------------------------------------------------------


def test_vqa_detected_scenes_runs_programs_on_each_threshold_and_pairs_them_with_the_question_alone(
        tmp_path, monkeypatch, capsys):
    from dataclasses import replace

    from mmbook.recipes import TASKS
    from mmbook.recipes.tasks import Defaults
    from mmbook.reasoning.recipe import VQA_DEFAULTS

    monkeypatch.setenv("MMBOOK_QUICK", "1")
    monkeypatch.setitem(TASKS, "scene-detection", replace(TASKS["scene-detection"], quick=Defaults(
        epochs=1, batch_size=16, train_count=40, test_count=20)))
    monkeypatch.setitem(VQA_DEFAULTS["scenes"], True, {"scenes": 30, "test_scenes": 20, "per_scene": 4, "epochs": 1,
                                                        "batch_size": 8, "lr": 2e-3})
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its sibling cli_runs
    module = load_benchmark("vqa_detected_scenes")
    path = tmp_path / "detected.json"
    assert module.main(["--quick", "--seeds", "2", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    names = {f"programs, detections >= {t}" for t in module.THRESHOLDS} | {"programs, ground truth", "question only"}
    for run in result["runs"]:
        assert set(run) == names | {"detector"}
        assert run["programs, ground truth"]["overall"] == 1.0  # the programs' own answers
        assert all(0 <= run[name][f] <= 1 for name in names for f in module.FIGURES)
    assert set(result["verdicts"]) == set(module.FIGURES)
    out = capsys.readouterr().out
    assert all(verdict in out for verdict in result["verdicts"].values())


# vqa_data_efficiency.py ----------------------------------------------------------------------


def test_vqa_data_efficiency_gives_every_model_the_same_steps_at_each_size(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its sibling cli_runs
    module = load_benchmark("vqa_data_efficiency")
    monkeypatch.setitem(module.SIZES, True, (20, 40))
    monkeypatch.setitem(module.SETTINGS, True, {"steps_of": (40, 1), "test_scenes": 10, "per_scene": 3})
    path = tmp_path / "efficiency.json"
    assert module.main(["--quick", "--json", str(path)]) == 0
    rows = json.loads(path.read_text())["rows"]
    assert [(row["scenes"], row["model"]) for row in rows] == [(n, m) for n in (20, 40) for m in module.MODELS]
    assert {row["scenes"]: row["epochs"] for row in rows} == {20: 2, 40: 1}  # as many steps at each size
    assert all(0 <= row[key] <= 1 for row in rows for key in ("overall", "relational", "non_relational"))
    assert "programs on parsed scenes" in capsys.readouterr().out


# vlm_data_efficiency.py ----------------------------------------------------------------------


def test_vlm_data_efficiency_trains_both_captioners_at_each_size_on_each_seed(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MMBOOK_QUICK", "1")
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its sibling cli_runs
    module = load_benchmark("vlm_data_efficiency")
    monkeypatch.setitem(module.SETTINGS, True, {"sizes": (20, 40), "text_scenes": 40, "lm_epochs": 1,
                                                "test_scenes": 20, "epochs": 1})
    path = tmp_path / "vlm.json"
    assert module.main(["--quick", "--seeds", "2", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["sizes"] == [20, 40] and len(result["runs"]) == 2
    for run in result["runs"]:
        assert set(run["cider_d"]) == set(module.SYSTEMS)
        assert all(len(values) == 2 and all(v >= 0 for v in values) for values in run["cider_d"].values())
    assert set(result["verdicts"]) == {"20", "40"}
    out = capsys.readouterr().out
    assert all(verdict in out for verdict in result["verdicts"].values())
