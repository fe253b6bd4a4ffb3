"""Tests of the public data path for your own image–text pairs: load_pairs, LabelVocabulary, image tables in
DeviceLoader, size-agnostic encoders, num_classes checks, and the FiLM fusion, ending with a user's script."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmbook.cnn import ImageRegionEncoder, LeNet, SmallCNN
from mmbook.data import (
    CorruptDataError,
    DeviceLoader,
    LabelVocabulary,
    image_statistics,
    load_pairs,
)
from mmbook.fusion import FUSIONS, FiLMFusion, check_fusion_module
from mmbook.multimodal import captioned_cifar_model, image_text_model
from mmbook.recipes.captioned import train_captioned, train_image_text


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MMBOOK_CACHE", str(tmp_path / "cache"))


def write_images(folder: Path, count: int, size: int, seed: int = 0) -> list[str]:
    """``count`` random RGB PNGs of ``size`` x ``size`` in ``folder``; their file names."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = []
    for k in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"img{k}.png")
        names.append(f"img{k}.png")
    return names


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


# --- LabelVocabulary ------------------------------------------------------------------------------


def test_label_vocabulary_has_no_special_tokens_and_rejects_unknown_labels():
    labels = LabelVocabulary.build(["cat", "dog", "cat", "ant"])
    assert labels.classes == ["ant", "cat", "dog"] and len(labels) == 3
    assert labels.encode("dog") == 2
    assert labels.encode_many(["cat", "ant"]).tolist() == [1, 0]
    assert labels.decode(2) == "dog" and labels.decode([0, 1]) == ["ant", "cat"]
    with pytest.raises(KeyError, match="unknown label 'emu'"):
        labels.encode("emu")
    assert LabelVocabulary.from_dict(labels.to_dict()).classes == labels.classes
    # Integer labels sort numerically, and 3 and "3" are the same class.
    numbers = LabelVocabulary.build([10, 2, "3"])
    assert numbers.classes == ["2", "3", "10"] and numbers.encode(3) == 1
    with pytest.raises(ValueError, match="unique"):
        LabelVocabulary(["a", "a"])


# --- load_pairs: formats --------------------------------------------------------------------------


def test_csv_with_several_texts_per_image_stores_each_image_once(tmp_path):
    names = write_images(tmp_path / "images", 3, 40)
    rows = [{"image": f"images/{name}", "text": f"question {k} about {name}", "label": ["a", "b", "c"][k % 3]}
            for name in names for k in range(4)]
    data = load_pairs(write_csv(tmp_path / "pairs.csv", rows), image_size=24)
    train = data.train
    assert len(train) == 12 and train.num_images == 3
    assert train.images.shape == (3, 3, 24, 24) and train.images.dtype == torch.uint8
    assert train.image_ids.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    assert data.label_vocab.classes == ["a", "b", "c"] and data.num_classes == 3
    assert train.labels.tolist() == [0, 1, 2, 0] * 3
    assert data.vocab.decode(train.tokens[0].tolist()) == "question 0 about img0 png"
    assert set(train.tensors()) == {"image", "image_id", "text", "label"}
    assert data.mean == image_statistics(train.images)[0] and data.test is None


def test_jsonl_folder_and_tensor_sources_agree(tmp_path):
    names = write_images(tmp_path, 2, 16)
    records = [{"image": name, "text": text, "label": label}
               for name, text, label in zip(names, ["a red one", "a blue one"], [1, 0])]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    from_jsonl = load_pairs(tmp_path / "pairs.jsonl", image_size=16)
    # The folder layout: <label>/<image>.png with its texts, one per line, in <image>.txt.
    for name, record in zip(names, records):
        (tmp_path / "folder" / str(record["label"])).mkdir(parents=True, exist_ok=True)
        os.replace(tmp_path / name, tmp_path / "folder" / str(record["label"]) / name)
        (tmp_path / "folder" / str(record["label"]) / name).with_suffix(".txt").write_text(record["text"] + "\n")
    from_folder = load_pairs(tmp_path / "folder", image_size=16)
    from_tensors = load_pairs({"image": from_jsonl.train.images, "text": [r["text"] for r in records],
                               "label": [1, 0]}, image_size=16)
    for data in (from_folder, from_tensors):
        assert data.label_vocab.classes == ["0", "1"]
        order = [data.train.texts.index(r["text"]) for r in records]
        assert torch.equal(data.train.sample_images()[order], from_jsonl.train.sample_images())
        assert data.train.labels[order].tolist() == from_jsonl.train.labels.tolist()


def test_images_are_centre_cropped_and_resized(tmp_path):
    image = np.zeros((20, 40, 3), dtype=np.uint8)
    image[:, 10:30] = 255  # the centre square is white, the sides black
    Image.fromarray(image).save(tmp_path / "wide.png")
    data = load_pairs([{"image": str(tmp_path / "wide.png"), "text": "wide", "label": "x"}], image_size=10)
    assert data.train.images.shape == (1, 3, 10, 10)
    assert int(data.train.images.min()) > 200
    float_images = torch.rand(2, 3, 12, 20)
    resized = load_pairs({"image": float_images, "text": ["a", "b"], "label": [0, 1]}, image_size=8).train.images
    assert resized.shape == (2, 3, 8, 8) and resized.dtype == torch.uint8


def test_test_split_uses_the_training_vocabularies(tmp_path):
    names = write_images(tmp_path, 4, 8)
    train = [{"image": names[k], "text": f"word{k}", "label": f"c{k % 2}"} for k in range(3)]
    test = [{"image": names[3], "text": "word0 novel", "label": "c1"}]
    data = load_pairs(write_csv(tmp_path / "train.csv", train), write_csv(tmp_path / "test.csv", test), image_size=8)
    assert data.test is not None and len(data.test) == 1
    assert data.vocab.decode(data.test.tokens[0].tolist()) == "word0 <unk>"
    assert data.test.labels.tolist() == [1]


def test_test_fraction_holds_out_whole_images(tmp_path):
    names = write_images(tmp_path, 10, 8)
    rows = [{"image": name, "text": f"text {k}", "label": k % 2} for name in names for k in range(3)]
    data = load_pairs(rows and write_csv(tmp_path / "p.csv", rows), image_size=8, test_fraction=0.3, seed=1)
    assert data.train.num_images == 7 and data.test.num_images == 3
    assert len(data.train) == 21 and len(data.test) == 9
    train_images = {tuple(img.flatten().tolist()) for img in data.train.images}
    assert not any(tuple(img.flatten().tolist()) in train_images for img in data.test.images)


# --- load_pairs: errors ---------------------------------------------------------------------------


def test_clear_errors_for_bad_data(tmp_path):
    names = write_images(tmp_path, 2, 8)
    good = {"image": str(tmp_path / names[0]), "text": "fine", "label": "a"}
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pairs(tmp_path / "nothing.csv")
    with pytest.raises(FileNotFoundError, match=r"1 image file\(s\) do not exist"):
        load_pairs([good, {"image": "missing.png", "text": "x", "label": "a"}], image_size=8)
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    with pytest.raises(CorruptDataError, match="cannot decode image .*broken.png"):
        load_pairs([{"image": str(tmp_path / "broken.png"), "text": "x", "label": "a"}], image_size=8)
    with pytest.raises(ValueError, match="row 2: the text '  ' is empty"):
        load_pairs(write_csv(tmp_path / "e.csv", [good, {**good, "text": "  "}]), image_size=8)
    with pytest.raises(ValueError, match="label 'zebra' is not one of the training classes"):
        load_pairs(write_csv(tmp_path / "t.csv", [good]), write_csv(tmp_path / "u.csv", [{**good, "label": "zebra"}]),
                   image_size=8)
    with pytest.raises(ValueError, match="mismatched lengths"):
        load_pairs({"image": torch.zeros(3, 3, 8, 8, dtype=torch.uint8), "text": ["a", "b"], "label": [0, 1, 2]})
    with pytest.raises(KeyError, match=r"no \['label'\] column"):
        load_pairs(write_csv(tmp_path / "k.csv", [{"image": names[0], "text": "x", "class": "a"}]))
    with pytest.raises(ValueError, match=r"row 2: the label \['a', 'b'\] is not a text or a number"):
        load_pairs([good, {**good, "label": ["a", "b"]}], image_size=8)


@pytest.mark.parametrize("empty", ["", "   ", None])
def test_an_empty_label_is_an_error_naming_its_row(tmp_path, empty):
    names = write_images(tmp_path, 2, 8)
    rows = [{"image": names[0], "text": "a red one", "label": "red"},
            {"image": names[1], "text": "a blue one", "label": empty}]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    sources = [tmp_path / "pairs.jsonl", [{**row, "image": str(tmp_path / row["image"])} for row in rows]]
    if empty is not None:  # a CSV cell is never null
        sources.append(write_csv(tmp_path / "pairs.csv", rows))
    for source in sources:
        with pytest.raises(ValueError, match=rf"row 2: the label {empty!r} is empty; give every row a label"):
            load_pairs(source, image_size=8)
    with pytest.raises(ValueError, match="sample 2: the label .* is empty"):
        load_pairs({"image": torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "text": ["a", "b"], "label": ["x", empty]})


def test_a_missing_column_error_names_the_columns_and_the_caption_only_option(tmp_path):
    from mmbook.data.pairs import MissingColumnError

    names = write_images(tmp_path, 1, 8)
    with pytest.raises(MissingColumnError) as caught:
        load_pairs(write_csv(tmp_path / "k.csv", [{"picture": names[0], "text": "x", "class": "a"}]))
    error = caught.value
    assert isinstance(error, KeyError) and error.argument == "train"
    assert error.missing == ["image", "label"] and error.present == ["class", "picture", "text"]
    assert str(error).startswith(f"train file {tmp_path / 'k.csv'}, row 1: no ['image', 'label'] column")
    assert "label_column=None" in str(error) and "image_column=" in str(error)


def write_caption_only(folder: Path, images: int = 6, texts: int = 2) -> list[dict]:
    """Caption-only rows: ``texts`` captions for each of ``images`` PNGs of 12x12 in ``folder``, no label."""
    names = write_images(folder, images, 12, seed=3)
    return [{"image": name, "text": f"caption {q} of picture {k}"}
            for k, name in enumerate(names) for q in range(texts)]


@pytest.mark.parametrize("form", ["jsonl", "csv"])
def test_caption_only_pairs_have_image_ids_and_no_labels(tmp_path, form):
    rows = write_caption_only(tmp_path)
    if form == "jsonl":
        path = tmp_path / "captions.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:
        path = write_csv(tmp_path / "captions.csv", rows)
    data = load_pairs(path, image_size=8, label_column=None, test_fraction=1 / 3, seed=0)
    assert not data.has_labels and data.label_vocab is None
    with pytest.raises(ValueError, match="no labels .*label_column=None"):
        data.num_classes
    train, test = data.train, data.test
    assert (train.num_images, len(train), test.num_images, len(test)) == (4, 8, 2, 4)
    assert not train.has_labels and train.labels is None
    tensors = train.tensors()
    assert set(tensors) == {"image", "image_id", "text"}
    assert tensors["image"].shape == (4, 3, 8, 8) and tensors["image"].dtype == torch.uint8
    assert tensors["image_id"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3] and tensors["text"].shape[0] == 8
    # The two captions of one image share its id, so they can be grouped (e.g. as positives for retrieval).
    assert train.texts[0].startswith("caption 0 of picture") and train.texts[1].startswith("caption 1 of picture")
    assert train.texts[0].split()[-1] == train.texts[1].split()[-1]
    # The loader takes the dict without a label, gathering each text's image from the table.
    loader = DeviceLoader(tensors, 3, shuffle=True, mean=data.mean, std=data.std)
    batches = list(loader)
    assert all(set(batch) == {"image", "image_id", "text"} for batch in batches)
    assert sum(len(batch["text"]) for batch in batches) == 8 and batches[0]["image"].shape[1:] == (3, 8, 8)
    # A labelled read of the same file says which column is missing and how to read it without one.
    with pytest.raises(KeyError, match="no \\['label'\\] column.*label_column=None"):
        load_pairs(path, image_size=8)


def test_caption_only_folders_and_tensors(tmp_path):
    rows = write_caption_only(tmp_path / "flat", images=3, texts=1)
    for row in rows:
        (tmp_path / "flat" / row["image"]).with_suffix(".txt").write_text(row["text"] + "\n")
    from_folder = load_pairs(tmp_path / "flat", image_size=8, label_column=None)
    assert len(from_folder.train) == 3 and set(from_folder.train.tensors()) == {"image", "image_id", "text"}
    from_tensors = load_pairs({"image": from_folder.train.images, "text": from_folder.train.texts}, image_size=8,
                              label_column=None)
    assert torch.equal(from_tensors.train.images, from_folder.train.images)
    assert from_tensors.train.texts == from_folder.train.texts and from_tensors.train.labels is None


def test_a_failed_load_leaves_no_cache_and_a_good_one_is_reused(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    names = write_images(tmp_path, 2, 8)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG truncated")
    rows = [{"image": names[0], "text": "a", "label": 0}, {"image": "broken.png", "text": "b", "label": 1}]
    with pytest.raises(CorruptDataError):
        load_pairs(write_csv(tmp_path / "bad.csv", rows), image_size=8)
    assert not cache.exists() or not any(cache.iterdir())
    good = write_csv(tmp_path / "good.csv", [rows[0], {**rows[1], "image": names[1]}])
    first = load_pairs(good, image_size=8)
    assert len(list(cache.glob("pairs-*.pt"))) == 1
    import mmbook.data.pairs as pairs

    monkeypatch.setattr(pairs, "_decode_files", lambda *args: pytest.fail("the cache was not used"))
    assert torch.equal(load_pairs(good, image_size=8).train.images, first.train.images)


# --- DeviceLoader: image tables, statistics, image keys, float images -----------------------------


def test_loader_gathers_images_by_id_and_normalises_with_given_statistics():
    table = torch.arange(3, dtype=torch.uint8).view(3, 1, 1, 1).expand(3, 3, 4, 4).contiguous() * 50
    tensors = {"image": table, "image_id": torch.tensor([2, 0, 0, 1, 2]), "label": torch.arange(5)}
    loader = DeviceLoader(tensors, 5, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    assert loader.num_samples == 5 and loader.tensors["image"].shape[0] == 3  # each image stored once
    batch = next(iter(loader))
    torch.testing.assert_close(batch["image"][:, 0, 0, 0], torch.tensor([100, 0, 0, 50, 100]) / 255.0)
    with pytest.raises(ValueError, match="index the image table"):
        DeviceLoader({**tensors, "image_id": torch.tensor([0, 1, 2, 3, 0])}, 2)
    # Float images are taken as already normalised; other keys are images only when named.
    floats = {"img": torch.randn(4, 3, 4, 4), "label": torch.arange(4)}
    assert torch.equal(next(iter(DeviceLoader(floats, 4, image_keys=["img"])))["img"], floats["img"])
    with pytest.raises(KeyError, match=r"image_keys \['photo'\] are not in the data"):
        DeviceLoader(floats, 4, image_keys=["photo"])
    uint8 = {"img": torch.full((2, 3, 4, 4), 255, dtype=torch.uint8), "label": torch.arange(2)}
    unit = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
    assert next(iter(DeviceLoader(uint8, 2, image_keys=["img"], **unit)))["img"].dtype == torch.float32
    with pytest.raises(ValueError, match="needs mean= and std="):  # not CIFAR-10's shape: no default statistics
        DeviceLoader(uint8, 2, image_keys=["img"])
    assert next(iter(DeviceLoader(uint8, 2)))["img"].dtype == torch.uint8  # not named: passed through


def test_image_statistics():
    images = torch.stack([torch.zeros(3, 2, 2), torch.full((3, 2, 2), 255.0)]).to(torch.uint8)
    mean, std = image_statistics(images)
    assert mean == (0.5, 0.5, 0.5) and std == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="uint8 images"):
        image_statistics(images.float())


# --- encoders of any size, num_classes --------------------------------------------------------------


@pytest.mark.parametrize("size", [32, 64, 96])
def test_encoders_take_any_image_size(size):
    images = torch.randn(2, 3, size, size)
    lenet = LeNet(out_features=7, image_size=size)
    assert lenet(images).shape == (2, 7) and lenet.feature_map(images).shape == (2, 16, 5, 5)
    assert sum(p.numel() for p in lenet.parameters()) == sum(p.numel() for p in LeNet(7).parameters())
    assert ImageRegionEncoder(8, image_size=size)(images).shape == (2, 26, 8)
    assert SmallCNN(widths=(8, 8, 8), num_classes=5, image_size=size)(images).shape == (2, 5)
    with pytest.raises(ValueError, match=rf"expected images of shape \(B, 3, {size}, {size}\)"):
        lenet(torch.randn(2, 3, size + 8, size + 8))


def test_lenet_at_32_is_the_chapter_network():
    torch.manual_seed(0)
    default = LeNet()
    torch.manual_seed(0)
    explicit = LeNet(image_size=32)
    images = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(default(images), explicit(images), rtol=0, atol=0)
    assert default.feature_map(images).shape == (3, 16, 5, 5) and default.fc1.in_features == 400
    with pytest.raises(ValueError, match="image_size >= 32"):
        LeNet(image_size=28)


def test_image_text_model_needs_num_classes_and_keeps_the_old_builder():
    with pytest.raises(TypeError, match="num_classes"):
        image_text_model("image+text", 20)
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        image_text_model("image+text", 20, num_classes=0)
    model = image_text_model("image+text", 20, num_classes=13, image_size=64)
    batch = {"image": torch.randn(2, 3, 64, 64), "text": torch.randint(1, 20, (2, 5))}
    assert model(batch).shape == (2, 13)
    torch.manual_seed(0)
    old = captioned_cifar_model("image+text", 20)
    torch.manual_seed(0)
    new = image_text_model("image+text", 20, num_classes=10, feature_size=10)
    assert [p.shape for p in old.parameters()] == [p.shape for p in new.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(old.parameters(), new.parameters()))


def test_a_model_for_another_image_size_fails_with_an_error_naming_image_size():
    model = image_text_model("image+text", 20, num_classes=13)  # image_size defaults to 32, CIFAR-10's
    batch = {"image": torch.randn(2, 3, 64, 64), "text": torch.randint(1, 20, (2, 5))}
    with pytest.raises(ValueError, match=r"built for 32x32 images \(image_size=32\).*64x64.*image_size=64"):
        model(batch)
    regions = image_text_model("image+text", 20, num_classes=13, fusion="cross_attention")
    with pytest.raises(ValueError, match="image_size=64"):
        regions(batch)


def test_fusion_options_reach_the_fusion_and_unknown_ones_name_the_accepted_ones(tmp_path):
    from mmbook.multimodal import fusion_option_names, fusion_options_with_defaults

    assert fusion_option_names("gmu") == ["hidden", "normalize"]
    assert fusion_option_names("late_average") == ["hidden"]  # num_classes is the builder's
    assert fusion_option_names("concat") == []
    assert (fusion_options_with_defaults("gmu", {}) == fusion_options_with_defaults("gmu", {"normalize": True})
            == {"hidden": 32, "normalize": True})
    assert fusion_options_with_defaults("gmu", {"hidden": 8}) == {"hidden": 8, "normalize": True}
    assert fusion_options_with_defaults("concat", None) == {}
    with pytest.raises(ValueError, match="has no option 'normalise'"):
        fusion_options_with_defaults("gmu", {"normalise": False})
    with pytest.raises(ValueError, match=r"fusion 'gmu' has no option 'normalise'; it accepts hidden, normalize"):
        image_text_model("image+text", 20, num_classes=3, fusion="gmu", fusion_options={"normalise": True})
    with pytest.raises(ValueError, match="fusion 'concat' has no option 'hidden'; it accepts no options"):
        image_text_model("image+text", 20, num_classes=3, fusion="concat", fusion_options={"hidden": 8})
    data = load_pairs(make_user_data(tmp_path), image_size=64, test_fraction=0.25)
    run = train_image_text(data.train.tensors(), data.test.tensors(), len(data.vocab), "image+text", "gmu",
                           fusion_options={"normalize": True, "hidden": 8}, epochs=1, batch_size=16, progress=False)
    assert run.model.fusion.norms is not None and run.model.fusion.out_features == 8
    paper = train_image_text(data.train.tensors(), data.test.tensors(), len(data.vocab), "image+text", "gmu",
                             fusion_options={"normalize": False}, epochs=1, batch_size=16, progress=False)
    assert paper.model.fusion.norms is None


def test_labels_outside_the_head_fail_before_training():
    data = {"image": torch.zeros(4, 3, 32, 32, dtype=torch.uint8), "text": torch.ones(4, 3, dtype=torch.int64),
            "label": torch.tensor([0, 1, 12, 2])}
    with pytest.raises(ValueError, match=r"train labels run 0..12, outside the head's 10 classes"):
        train_captioned(data, data, 5, num_classes=10, epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"test labels run 0..13"):
        train_image_text(data, {**data, "label": torch.tensor([0, 1, 13, 2])}, 5, epochs=1, progress=False)


# --- FiLM ---------------------------------------------------------------------------------------------


def test_film_fusion_modulates_the_first_modality():
    assert FUSIONS["film"] is FiLMFusion
    check_fusion_module(FiLMFusion)
    film = FiLMFusion([4, 3], hidden=5)
    image, text = torch.randn(2, 4), torch.randn(2, 3)
    out = film([image, text])
    expected = torch.relu(film.project(image) * (1 + film.scale(text)) + film.shift(text))
    torch.testing.assert_close(out, expected)
    assert FiLMFusion([4])([image]).shape == (2, 32)


# --- the user script ------------------------------------------------------------------------


def make_user_data(folder: Path) -> Path:
    """A user's data set on disk: 26 images of 64x64, 3 questions each, 13 answers, as JSON Lines."""
    rng = np.random.default_rng(0)
    rows = []
    for k in range(26):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"photo{k}.jpg")
        rows += [{"image": f"photo{k}.jpg", "text": f"what is thing {q} here", "label": f"answer{(k + q) % 13}"}
                 for q in range(3)]
    (folder / "pairs.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder / "pairs.jsonl"


def test_a_users_data_set_trains_with_every_fusion(tmp_path):
    path = make_user_data(tmp_path)
    # --- the user's code: public API only ---
    from mmbook.data import DeviceLoader, load_pairs
    from mmbook.fusion import FUSIONS
    from mmbook.multimodal import image_text_model
    from mmbook.training import fit

    data = load_pairs(path, image_size=64, test_fraction=0.25, seed=0)
    train, test = data.train.tensors(), data.test.tensors()
    options = {"mean": data.mean, "std": data.std}
    train_loader = DeviceLoader(train, 16, shuffle=True, augment=True, **options)
    test_loader = DeviceLoader(test, 64, **options)
    accuracies = {}
    for fusion in FUSIONS:
        torch.manual_seed(0)
        model = image_text_model("image+text", len(data.vocab), num_classes=data.num_classes,
                                 fusion=fusion, image_size=data.image_size)
        history = fit(model, train_loader, test_loader, epochs=1, lr=3e-3, progress=False)
        accuracies[fusion] = history.last["test_accuracy"]
    # --- end of the user's code ---
    assert data.num_classes == 13 and data.image_size == 64
    assert data.train.images.shape[1:] == (3, 64, 64)
    assert train_loader.tensors["image"].shape[0] == data.train.num_images < len(data.train)
    assert set(accuracies) == set(FUSIONS)
    test_texts = len(data.test)
    assert all(test_texts * accuracy == pytest.approx(round(test_texts * accuracy)) for accuracy in accuracies.values())


def test_train_image_text_infers_classes_and_statistics(tmp_path):
    data = load_pairs(make_user_data(tmp_path), image_size=64, test_fraction=0.25)
    run = train_image_text(data.train.tensors(), data.test.tensors(), len(data.vocab), "image+text", "film",
                           epochs=1, batch_size=16, progress=False)
    assert run.model.head.net[-1].out_features == 13
    assert run.accuracy == run.history.last["test_accuracy"]


def test_the_pairs_task_trains_on_a_data_file(tmp_path):
    from mmbook.recipes import TASKS, Settings

    path = make_user_data(tmp_path)
    task = TASKS["pairs"]
    settings = Settings(quick=True, epochs=1, data_file=path, fusion="film", progress=False, device="cpu")
    task.check(settings)
    run, facts = task.train(settings)
    assert facts["classes"] == 13 and facts["image_size"] == 64
    assert facts["train_images"] + facts["test_images"] == 26 and facts["train_texts"] == 3 * facts["train_images"]
    correct = run.metrics[task.metric] * facts["test_texts"]
    assert correct == pytest.approx(round(correct))  # a share of the test texts
    with pytest.raises(ValueError, match="--data-file applies to --task pairs"):
        TASKS["cifar10-captions"].check(settings)
    with pytest.raises(ValueError, match="--task pairs needs --data-file"):
        task.train(Settings(quick=True, progress=False))


def test_a_normalized_gmu_fuses_and_ignores_the_scale_of_its_inputs():
    from mmbook.fusion import GatedMultimodalUnit

    check_fusion_module(lambda sizes: GatedMultimodalUnit(sizes, normalize=True))
    torch.manual_seed(0)
    gmu = GatedMultimodalUnit([6, 4], hidden=8, normalize=True)
    image, text = torch.randn(3, 6), torch.randn(3, 4)
    # LeNet's features can grow to a scale of ~20 in training; the normalized GMU sees the same inputs.
    torch.testing.assert_close(gmu([20 * image, text]), gmu([image, text]))
    raw = GatedMultimodalUnit([6, 4], hidden=8, normalize=False)  # the paper's equations: the scale matters
    assert not torch.allclose(raw([20 * image, text]), raw([image, text]))
    model = image_text_model("image+text", 20, num_classes=3, fusion="gmu", fusion_options={"normalize": True})
    assert model.fusion.norms is not None
    assert image_text_model("image+text", 20, num_classes=3, fusion="gmu").fusion.norms is not None  # the default
