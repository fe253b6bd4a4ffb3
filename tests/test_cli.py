import json

import pytest

from mmbook.cli import main


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--epochs", "-2"], "--epochs"),
        (["train", "--modalities", "audio"], "--modalities"),
        (["train", "--batch-size", "zero"], "--batch-size"),
        (["train", "--fusion", "magic"], "--fusion"),
        (["train", "--caption-noise", "1.5"], "--caption-noise"),
        (["train", "--data", "/no/such/dir"], "no such directory"),
        (["train", "--resume"], "--checkpoint"),
        (["frobnicate"], "invalid choice"),
        (["train", "--task", "cifar10", "--recipe", "gpu-94"], "--recipe"),
        (["train", "--task", "cifar10", "--model", "lenet", "--recipe", "gpu"], "--recipe applies to"),
        (["train", "--recipe", "cpu"], "--recipe applies to"),
    ],
)
def test_bad_flags_give_one_line_and_exit_status_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mmbook: error:") and message in err


def test_env_prints_the_report(capsys, tiny_data):
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert "device" in out and "imagefolder" in out


def test_data_verify_counts_images(capsys, tiny_data):
    assert main(["data", "--verify"]) == 0
    out = capsys.readouterr().out
    assert "train: 60 images" in out and "test: 20 images" in out


def test_data_without_a_copy_fails_clearly(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MMBOOK_DATA", str(tmp_path))
    assert main(["data"]) == 1
    assert "--download" in capsys.readouterr().err


def test_train_writes_the_json_result(tmp_path, tiny_data):
    out = tmp_path / "result.json"
    code = main(["train", "--quick", "--epochs", "2", "--modalities", "image+text", "--json", str(out), "--no-progress"])
    assert code == 0
    result = json.loads(out.read_text())
    for key in ("task", "modalities", "fusion", "epochs", "device", "train_seconds", "train_images_per_second", "test_accuracy"):
        assert key in result
    assert result["task"] == "cifar10-captions" and result["modalities"] == "image+text" and result["epochs"] == 2
    assert result["test_accuracy"] == result["history"][-1]["test_accuracy"]
    assert result["train_images_per_second"] > 0 and result["train_images"] == 40 and result["test_images"] == 20
    from mmbook.runtime import pick_device

    assert result["device"] == str(pick_device())


def test_train_checkpoint_and_resume(tmp_path, tiny_data):
    ckpt = tmp_path / "ckpt"
    first, again = tmp_path / "first.json", tmp_path / "again.json"
    assert main(["train", "--quick", "--epochs", "2", "--checkpoint", str(ckpt), "--json", str(first), "--no-progress"]) == 0
    assert (ckpt / "last.pt").exists()
    # Resuming a finished run trains nothing more and reports the same result.
    assert main(["train", "--quick", "--epochs", "2", "--checkpoint", str(ckpt), "--resume", "--json", str(again), "--no-progress"]) == 0
    first_result, again_result = json.loads(first.read_text()), json.loads(again.read_text())
    assert [r["epoch"] for r in again_result["history"]] == [1, 2]
    assert again_result["test_accuracy"] == first_result["test_accuracy"]


def test_resume_with_another_epoch_count_fails_clearly(capsys, tmp_path, tiny_data):
    ckpt = tmp_path / "ckpt"
    assert main(["train", "--quick", "--epochs", "1", "--checkpoint", str(ckpt), "--no-progress"]) == 0
    assert main(["train", "--quick", "--epochs", "3", "--checkpoint", str(ckpt), "--resume", "--no-progress"]) == 2
    assert "--epochs 1" in capsys.readouterr().err


@pytest.mark.parametrize("table, flag", [("RECIPES", "--recipe"), ("FUSIONS", "--fusion"), ("TASKS", "--task")])
def test_every_name_in_the_public_tables_is_a_valid_flag_value(table, flag):
    from mmbook.cli import build_parser
    from mmbook.fastcnn import RECIPES
    from mmbook.fusion import FUSIONS
    from mmbook.recipes import TASKS

    names = {"RECIPES": RECIPES, "FUSIONS": FUSIONS, "TASKS": TASKS}[table]
    for name in names:
        assert getattr(build_parser().parse_args(["train", flag, name]), flag[2:]) == name


@pytest.mark.parametrize("model", ["lenet", "fastcnn"])
def test_cli_trains_image_models(tiny_imagefolder, tmp_path, model, capsys):
    import json

    from mmbook.cli import main

    out = tmp_path / f"{model}.json"
    status = main(["train", "--task", "cifar10", "--model", model, "--epochs", "1", "--batch-size", "40",
                   "--data", str(tiny_imagefolder), "--device", "cpu", "--no-progress", "--json", str(out)])
    assert status == 0
    result = json.loads(out.read_text())
    assert result["model"] == model and result["train_images"] == 100 and result["epochs"] == 1
    assert result["test_images"] == 100 and result["parameters"] > 0
    if model == "lenet":
        assert result["test_accuracy"] == result["history"][-1]["test_accuracy"]
    else:
        assert {"test_accuracy", "test_accuracy_tta"} <= set(result)
    assert "test_accuracy" in capsys.readouterr().out


def test_cli_rejects_bad_image_model_values(tiny_imagefolder, capsys):
    from mmbook.cli import main

    assert main(["train", "--task", "cifar10", "--model", "resnet50"]) == 2
    assert "invalid choice: 'resnet50'" in capsys.readouterr().err
    assert main(["train", "--task", "cifar10", "--fusion", "concat", "--modalities", "text",
                 "--data", str(tiny_imagefolder)]) == 2
    assert "--modalities applies to --task cifar10-captions" in capsys.readouterr().err
    assert main(["bench", "loader", "--batch-size", "0"]) == 2
    assert "must be a positive whole number" in capsys.readouterr().err


def test_cli_bench_loader_prints_the_ratio(tiny_imagefolder, capsys):
    from mmbook.cli import main

    status = main(["bench", "loader", "--data", str(tiny_imagefolder), "--baseline-images", "8",
                   "--batch-size", "16", "--device", "cpu"])
    assert status == 0
    out = capsys.readouterr().out
    assert "speed-up (fast / baseline):" in out and "images/s" in out and "ceiling" in out
