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
    assert 0.0 <= result["test_accuracy"] <= 1.0 and result["train_images_per_second"] > 0
    assert result["device"] == "cpu" or result["device"].startswith(("cuda", "mps"))


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
    assert main(["train", "--quick", "--epochs", "3", "--checkpoint", str(ckpt), "--resume", "--no-progress"]) == 1
    assert "--epochs 1" in capsys.readouterr().err


def test_recipe_choices_match_the_fastcnn_recipes():
    from mmbook.cli import build_parser
    from mmbook.fastcnn import RECIPES

    train = next(action for action in build_parser()._actions if action.dest == "command").choices["train"]
    recipe = next(action for action in train._actions if action.dest == "recipe")
    assert set(recipe.choices) == set(RECIPES)
