import pytest
import torch

from mmbook.data import cifar10
from mmbook.data.cifar10 import CorruptDataError, DataNotFoundError, load_cifar10, locate_cifar10


def test_locate_finds_the_imagefolder_copy(tiny_data):
    kind, path = locate_cifar10()
    assert kind == "imagefolder" and path == tiny_data / "cifar10"


def test_load_gives_uint8_tensors_with_labels_in_class_order(tiny_data):
    train = load_cifar10("train", progress=False)
    assert train.images.shape == (60, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.labels.dtype == torch.int64
    assert train.labels.bincount().tolist() == [6] * 10
    # Class k was written with red channel about 25 * k.
    red = train.images[:, 0].float().mean(dim=(1, 2))
    assert torch.all(red[train.labels == 9].mean() > red[train.labels == 0].mean() + 150)


def test_quick_mode_keeps_a_fixed_class_balanced_subset(tiny_data):
    quick = load_cifar10("train", quick=True, progress=False)
    full = load_cifar10("train", progress=False)
    assert quick.labels.bincount().tolist() == [4] * 10
    # The subset is the first files of each class, so it is repeatable.
    assert torch.equal(quick.images[:4], full.images[:4])
    assert torch.equal(load_cifar10("train", quick=True, progress=False).images, quick.images)


def test_cache_is_written_and_reused(tiny_data, monkeypatch):
    first = load_cifar10("test", progress=False)
    cached = list(cifar10.cache_dir().glob("cifar10-test-full-*.pt"))
    assert len(cached) == 1
    monkeypatch.setattr(cifar10, "_decode_files", lambda *a, **k: pytest.fail("decoded again instead of using the cache"))
    again = load_cifar10("test", progress=False)
    assert torch.equal(first.images, again.images)


def test_corrupt_cache_is_rebuilt_with_a_warning(tiny_data):
    first = load_cifar10("test", progress=False)
    (path,) = cifar10.cache_dir().glob("cifar10-test-full-*.pt")
    path.write_bytes(b"not a tensor file")
    with pytest.warns(UserWarning, match="unreadable"):
        again = load_cifar10("test", progress=False)
    assert torch.equal(first.images, again.images)


def test_corrupt_image_names_the_file(tiny_data):
    bad = tiny_data / "cifar10" / "test" / "cat" / "0001.png"
    bad.write_bytes(b"garbage")
    with pytest.raises(CorruptDataError, match="0001.png"):
        load_cifar10("test", progress=False)


def test_missing_data_says_both_remedies(tmp_path, monkeypatch):
    monkeypatch.setenv("MMBOOK_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("MMBOOK_OFFLINE", "1")
    with pytest.raises(DataNotFoundError, match="MMBOOK_DATA") as error:
        load_cifar10("train", download=True)
    assert "--download" in str(error.value)


def test_missing_class_folder_is_reported(tiny_data):
    import shutil

    shutil.rmtree(tiny_data / "cifar10" / "train" / "frog")
    with pytest.raises(DataNotFoundError, match="frog"):
        load_cifar10("train", progress=False)


def test_unknown_split_is_rejected(tiny_data):
    with pytest.raises(ValueError, match="split"):
        load_cifar10("validation")
