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


def test_captions_task_takes_fusion_options_and_resume_refuses_other_ones(capsys, tmp_path, tiny_data):
    ckpt, out = tmp_path / "ckpt", tmp_path / "gmu.json"
    gmu = ["train", "--quick", "--epochs", "1", "--fusion", "gmu", "--checkpoint", str(ckpt), "--no-progress"]
    assert main([*gmu, "--fusion-option", "normalize=true", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["fusion_options"] == {"normalize": True}
    # No option is the default, normalize=True: the same model, so the run resumes.
    assert main([*gmu, "--resume", "--json", str(out)]) == 0
    assert [r["epoch"] for r in json.loads(out.read_text())["history"]] == [1]
    # The same parameters with another option: the weights would load, so the checkpoint's settings are checked.
    assert main([*gmu, "--resume", "--fusion-option", "normalize=false"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'normalize': True}, not {'hidden': 32, 'normalize': False}" in err
    assert main([*gmu, "--fusion-option", "normalise=true"]) == 2
    assert "has no option 'normalise'; it accepts hidden, normalize" in capsys.readouterr().err
    assert main(["train", "--quick", "--fusion", "two_stage", "--fusion-option", "hidden=8", "--no-progress"]) == 2
    assert "--fusion-option" in capsys.readouterr().err


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


# --- mmbook train --task pairs: your own files -----------------------------------------------------


def write_pairs(folder, images: int = 10, texts: int = 2, columns=("image", "text", "label"), name="pairs.jsonl"):
    """``images`` PNGs of 40x40 in ``folder`` with ``texts`` rows each (3 classes), as JSON Lines; its path."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(len(name))
    rows = []
    for k in range(images):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / f"{name}-{k}.png")
        rows += [dict(zip(columns, (f"{name}-{k}.png", f"what is thing {q}", f"a{(k + q) % 3}"))) for q in range(texts)]
    (folder / name).write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder / name


def test_pairs_task_takes_a_test_file_an_image_size_column_names_and_fusion_options(tmp_path, capsys):
    train = write_pairs(tmp_path, columns=("photo", "question", "answer"))
    test = write_pairs(tmp_path, images=4, columns=("photo", "question", "answer"), name="test.jsonl")
    out = tmp_path / "result.json"
    argv = ["train", "--task", "pairs", "--data-file", str(train), "--test-file", str(test), "--image-size", "32",
            "--image-column", "photo", "--text-column", "question", "--label-column", "answer", "--fusion", "gmu",
            "--fusion-option", "normalize=true", "--fusion-option", "hidden=8", "--epochs", "1", "--device", "cpu",
            "--no-progress", "--json", str(out)]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["image_size"] == 32 and result["test_file"] == str(test) and result["classes"] == 3
    sizes = (result["train_images"], result["train_texts"], result["test_images"], result["test_texts"])
    assert sizes == (10, 20, 4, 8)
    assert result["fusion_options"] == {"normalize": True, "hidden": 8}
    assert "test_accuracy" in capsys.readouterr().out


def test_fusion_option_values_are_parsed_and_checked_against_the_fusion(tmp_path, capsys):
    from mmbook.cli import build_parser

    args = build_parser().parse_args(["train", "--fusion-option", "normalize=True", "--fusion-option", "hidden=64",
                                      "--fusion-option", "scale=0.5", "--fusion-option", "kind=fast"])
    assert args.fusion_options == [("normalize", True), ("hidden", 64), ("scale", 0.5), ("kind", "fast")]
    train = write_pairs(tmp_path)
    for extra, message in [
        (["--fusion", "gmu", "--fusion-option", "normalise=true"],
         "--fusion-option: fusion 'gmu' has no option 'normalise'; it accepts hidden, normalize"),
        (["--fusion-option", "hidden=8"], "fusion 'concat' has no option 'hidden'; it accepts no options"),
        (["--fusion", "gmu", "--fusion-option", "hidden=8", "--fusion-option", "hidden=9"],
         "hidden given more than once"),
        (["--fusion-option", "normalize"], "expected KEY=VALUE"),
        (["--image-size", "16"], "--image-size: must be at least 32"),
    ]:
        assert main(["train", "--task", "pairs", "--data-file", str(train), "--no-progress", *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("mmbook: error:") and message in err, err
    for flag, tasks in ((["--fusion-option", "hidden=8"], "cifar10-captions or pairs"),
                        (["--image-size", "32"], "pairs or pairs-retrieval"),
                        (["--test-file", str(train)], "pairs or pairs-retrieval"), (["--label-column", "answer"], "pairs")):
        assert main(["train", "--task", "scene-retrieval", *flag]) == 2
        err = capsys.readouterr().err
        assert f"applies to --task {tasks}, not scene-retrieval" in err and err.count("\n") == 1


def bad_pairs_files(folder):
    """Each bad-file case of ``--task pairs``: (name, extra flags, what the one-line error must say)."""
    good = write_pairs(folder)
    rows = [json.loads(line) for line in good.read_text().splitlines()]

    def jsonl(name, changed_rows):
        (folder / name).write_text("".join(json.dumps(row) + "\n" for row in changed_rows))
        return str(folder / name)

    (folder / "broken.png").write_bytes(b"not an image")
    (folder / "empty.csv").write_text("")
    (folder / "latin1.csv").write_bytes(b"image,text,label\nx.png,caf\xe9,a\n")
    (folder / "j.jsonl").write_text(json.dumps(rows[0]) + "\n{not json\n")
    return [
        ("missing file", ["--data-file", str(folder / "nothing.jsonl")], "--data-file: the train data"),
        ("missing test file", ["--data-file", str(good), "--test-file", str(folder / "no.csv")], "--test-file:"),
        ("empty file", ["--data-file", str(folder / "empty.csv")], "holds no rows"),
        ("missing image", ["--data-file", jsonl("m.jsonl", [{**rows[0], "image": "gone.png"}, *rows[1:]])],
         "1 image file(s) do not exist"),
        ("corrupt image", ["--data-file", jsonl("c.jsonl", [{**rows[0], "image": "broken.png"}, *rows[1:]])],
         "cannot decode image"),
        ("missing column",
         ["--data-file", jsonl("k.jsonl", [{"image": r["image"], "text": r["text"], "class": r["label"]} for r in rows])],
         "no ['label'] column; it has ['class', 'image', 'text']; name the columns with --image-column, "
         "--text-column and --label-column"),
        ("renamed column", ["--data-file", str(good), "--label-column", "answer"], "--label-column"),
        ("empty label", ["--data-file", jsonl("e.jsonl", [*rows[:3], {**rows[3], "label": ""}, *rows[4:]])],
         "row 4: the label '' is empty"),
        ("empty text", ["--data-file", jsonl("t.jsonl", [{**rows[0], "text": " "}, *rows[1:]])], "row 1: the text"),
        ("not JSON", ["--data-file", str(folder / "j.jsonl")], "is not JSON"),
        ("not UTF-8", ["--data-file", str(folder / "latin1.csv")], "is not UTF-8 text"),
        ("unknown test label",
         ["--data-file", str(good), "--test-file", jsonl("u.jsonl", [{**rows[0], "label": "zebra"}])],
         "--test-file: test file"),
        ("too few images", ["--data-file", jsonl("one.jsonl", rows[:2])], "give more images or a separate test split"),
    ]


def test_every_bad_pairs_file_gives_one_line_naming_a_flag_and_exit_status_2(tmp_path, capsys):
    cases = bad_pairs_files(tmp_path)
    for name, flags, message in cases:
        assert main(["train", "--task", "pairs", "--no-progress", "--device", "cpu", *flags]) == 2, name
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("mmbook: error: --"), (name, err)
        assert message in err, (name, err)
        assert "load_pairs" not in err and "label_column=" not in err, (name, err)  # Python arguments mean nothing here
