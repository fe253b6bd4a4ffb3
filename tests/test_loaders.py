import pytest
import torch

from mmbook.data.loaders import DeviceLoader, augment_images, make_dataloader, normalize_images


def make_tensors(n=10):
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 32, 32).contiguous()
    return {"image": images, "text": torch.arange(n).view(n, 1), "label": torch.arange(n)}


def test_device_loader_visits_every_sample_once_per_epoch():
    loader = DeviceLoader(make_tensors(10), batch_size=4, shuffle=True, seed=0)
    assert len(loader) == 3
    for _ in range(2):
        seen = torch.cat([batch["label"] for batch in loader])
        assert sorted(seen.tolist()) == list(range(10))


def test_device_loader_shuffling_is_seeded_and_changes_between_epochs():
    def orders(seed):
        loader = DeviceLoader(make_tensors(10), batch_size=10, shuffle=True, seed=seed)
        return [next(iter(loader))["label"].tolist() for _ in range(2)]

    first = orders(1)
    assert first == orders(1)
    assert first[0] != first[1]


def test_device_loader_keeps_modalities_aligned_and_normalizes_images():
    batch = next(iter(DeviceLoader(make_tensors(10), batch_size=5, shuffle=True, seed=3)))
    assert torch.equal(batch["text"].view(-1), batch["label"])
    assert batch["image"].dtype == torch.float32
    torch.testing.assert_close(batch["image"], normalize_images(batch["label"].to(torch.uint8).view(-1, 1, 1, 1).expand(5, 3, 32, 32)))


def test_device_loader_drop_last_and_errors():
    assert len(DeviceLoader(make_tensors(10), batch_size=4, drop_last=True)) == 2
    with pytest.raises(ValueError, match="batch_size"):
        DeviceLoader(make_tensors(10), batch_size=0)
    bad = make_tensors(10)
    bad["label"] = bad["label"][:9]
    with pytest.raises(ValueError, match="same number of samples"):
        DeviceLoader(bad, batch_size=2)


def test_flip_augmentation_returns_the_image_or_its_mirror():
    images = torch.randint(0, 255, (16, 3, 32, 32), dtype=torch.uint8)
    out = augment_images(images, torch.Generator().manual_seed(0), crop_padding=0, flip=True)
    same = (out == images).flatten(1).all(1)
    mirrored = (out == images.flip(3)).flatten(1).all(1)
    assert torch.all(same | mirrored) and same.any() and mirrored.any()


def test_crop_augmentation_is_a_shifted_window_of_the_padded_image():
    images = torch.randint(0, 255, (8, 3, 32, 32), dtype=torch.uint8)
    out = augment_images(images, torch.Generator().manual_seed(0), crop_padding=4, flip=False)
    assert out.shape == images.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(images.float(), (4, 4, 4, 4), mode="reflect").to(torch.uint8)
    for k in range(8):
        windows = [(dy, dx) for dy in range(9) for dx in range(9) if torch.equal(padded[k, :, dy:dy + 32, dx:dx + 32], out[k])]
        assert windows, f"image {k} is not a crop of its padded version"


def test_cutout_paints_one_square_per_image_with_the_mean_colour():
    images = torch.full((32, 3, 32, 32), 7, dtype=torch.uint8)
    out = augment_images(images, torch.Generator().manual_seed(0), crop_padding=0, flip=False, cutout=8)
    painted = (out != 7).any(dim=1)  # (B, H, W)
    areas = painted.flatten(1).sum(1)
    # A square of side 8 centred on a random pixel, clipped at the border: 4x4 up to 8x8 pixels.
    assert int(areas.min()) >= 16 and int(areas.max()) == 64
    for k in range(32):
        rows, cols = painted[k].nonzero(as_tuple=True)
        height, width = int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1
        assert height * width == int(areas[k]), f"image {k}: the painted pixels are not one rectangle"
    mean_colour = [round(255 * m) for m in (0.4914, 0.4822, 0.4465)]
    assert out[0, :, painted[0]].T.unique(dim=0).tolist() == [mean_colour]
    floats = augment_images(torch.ones(4, 3, 32, 32), torch.Generator().manual_seed(0), crop_padding=0, flip=False,
                            cutout=8)
    assert set(floats.unique().tolist()) == {0.0, 1.0}  # normalized images: the mean is 0


def test_cutout_is_repeatable_and_off_by_default():
    images = torch.randint(0, 255, (8, 3, 32, 32), dtype=torch.uint8)
    first = augment_images(images, torch.Generator().manual_seed(3), cutout=12)
    second = augment_images(images, torch.Generator().manual_seed(3), cutout=12)
    assert torch.equal(first, second)
    assert torch.equal(augment_images(images, crop_padding=0, flip=False), images)
    loader = DeviceLoader({"image": images, "label": torch.zeros(8, dtype=torch.int64)}, 8, augment=True, cutout=12)
    assert loader.cutout == 12 and next(iter(loader))["image"].shape == (8, 3, 32, 32)


def test_standard_dataloader_gives_the_same_samples():
    tensors = make_tensors(10)
    fast = next(iter(DeviceLoader(tensors, batch_size=10)))
    standard = next(iter(make_dataloader(tensors, batch_size=10)))
    assert set(standard) == set(fast)
    for key in fast:
        torch.testing.assert_close(standard[key], fast[key])
