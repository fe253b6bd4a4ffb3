import pytest
import torch

from mmbook.data.loaders import DeviceLoader, augment_images, normalize_images


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


def test_normalize_images_standardizes_each_channel_as_the_formula_says():
    from mmbook.data.loaders import CIFAR10_MEAN, CIFAR10_STD

    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    out = normalize_images(images)
    assert out.dtype == torch.float32 and out.shape == images.shape
    torch.testing.assert_close(out, (images.float() / 255 - mean) / std)
    # A channels-last input gives the same values (it is only slower).
    torch.testing.assert_close(normalize_images(images.contiguous(memory_format=torch.channels_last)), out)


def test_device_loader_batches_are_the_indexed_samples_in_channels_last_when_asked():
    images = torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8)
    tensors = {"image": images, "label": torch.arange(12)}
    for batch in DeviceLoader(tensors, batch_size=5, shuffle=True, seed=4, channels_last=True):
        assert batch["image"].is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(batch["image"], normalize_images(images[batch["label"]]))


def test_device_loader_drop_last_and_errors():
    assert len(DeviceLoader(make_tensors(10), batch_size=4, drop_last=True)) == 2
    with pytest.raises(ValueError, match="batch_size"):
        DeviceLoader(make_tensors(10), batch_size=0)
    bad = make_tensors(10)
    bad["label"] = bad["label"][:9]
    with pytest.raises(ValueError, match="same number of samples"):
        DeviceLoader(bad, batch_size=2)


def test_statistics_are_cifar10s_only_for_cifar10_shaped_images_and_otherwise_required():
    from mmbook.data.loaders import CIFAR10_MEAN, CIFAR10_STATS, CIFAR10_STD, image_statistics

    # CIFAR-10's shape, one image per sample: CIFAR-10's statistics, as normalize_images' default.
    cifar = DeviceLoader(make_tensors(4), 4)
    assert (cifar.mean, cifar.std) == (CIFAR10_MEAN, CIFAR10_STD)
    # Any other uint8 images: an error that names the arguments and the remedies, before any batch.
    images = torch.randint(0, 256, (6, 3, 64, 64), dtype=torch.uint8)
    other = {"image": images, "label": torch.arange(6)}
    with pytest.raises(ValueError, match=r"needs mean= and std= .*\(3, 64, 64\).*image_statistics.*CIFAR10_STATS"):
        DeviceLoader(other, 2)
    # An image table (several texts per image) of 32x32 images is own data too.
    table = {"image": make_tensors(3)["image"], "image_id": torch.tensor([0, 0, 1, 2]), "label": torch.arange(4)}
    with pytest.raises(ValueError, match="in an image table"):
        DeviceLoader(table, 2)
    with pytest.raises(ValueError, match="give both mean= and std="):
        DeviceLoader(other, 2, mean=(0.5, 0.5, 0.5))
    # Given statistics are used; CIFAR-10's can be asked for by name.
    mean, std = image_statistics(images)
    batch = next(iter(DeviceLoader(other, 6, mean=mean, std=std)))
    torch.testing.assert_close(batch["image"], normalize_images(images, mean, std))
    assert DeviceLoader(other, 2, **CIFAR10_STATS).mean == CIFAR10_MEAN
    # Float images are already normalized: they need no statistics.
    assert DeviceLoader({"image": images.float(), "label": torch.arange(6)}, 2).mean is None


def test_device_loader_loads_data_without_labels():
    tensors = {"image": make_tensors(3)["image"], "image_id": torch.tensor([2, 0, 0, 1, 2]),
               "text": torch.arange(5).view(5, 1)}
    loader = DeviceLoader(tensors, 2, shuffle=True, seed=0, mean=(0.0,) * 3, std=(1.0,) * 3)
    assert loader.num_samples == 5 and len(loader) == 3
    assert sorted(torch.cat([batch["text"].view(-1) for batch in loader]).tolist()) == [0, 1, 2, 3, 4]
    batches = list(DeviceLoader(tensors, 2, mean=(0.0,) * 3, std=(1.0,) * 3))
    assert [set(batch) for batch in batches] == [{"image", "image_id", "text"}] * 3
    ids = torch.cat([batch["image_id"] for batch in batches])
    images = torch.cat([batch["image"][:, 0, 0, 0] for batch in batches])
    torch.testing.assert_close(images, ids.float() / 255)  # each text gets its own image
    with pytest.raises(ValueError, match="at least one tensor with one row per sample"):
        DeviceLoader({}, 2)


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


def _shards(loader_args, world_size, epoch=0):
    return [DeviceLoader(*loader_args[0], **loader_args[1], rank=r, world_size=world_size).indices(epoch).tolist()
            for r in range(world_size)]


@pytest.mark.parametrize("world_size", [2, 3])
def test_training_shards_are_disjoint_equal_and_slices_of_one_seeded_order(world_size):
    tensors = make_tensors(12)
    args = ((tensors, 6), {"shuffle": True, "seed": 5})
    for epoch in (0, 1):
        shards = _shards(args, world_size, epoch)
        order = DeviceLoader(tensors, 6, shuffle=True, seed=5).indices(epoch).tolist()  # one process
        assert sorted(sum(shards, [])) == list(range(12))
        assert all(shards[r] == order[r::world_size] for r in range(world_size))
    assert _shards(args, 2, 0) != _shards(args, 2, 1)


def test_training_shards_drop_the_remainder_so_every_rank_runs_the_same_steps():
    loaders = [DeviceLoader(make_tensors(11), 6, shuffle=True, rank=r, world_size=3) for r in range(3)]
    assert [loader.shard_size for loader in loaders] == [3, 3, 3]
    assert [loader.batch_size for loader in loaders] == [2, 2, 2]  # 6 is the global batch
    assert [len(loader) for loader in loaders] == [2, 2, 2]
    seen = [int(i) for loader in loaders for batch in loader for i in batch["label"]]
    assert len(seen) == len(set(seen)) == 9


def test_evaluation_shards_hold_every_sample_once_without_padding():
    loaders = [DeviceLoader(make_tensors(11), 2, rank=r, world_size=3) for r in range(3)]
    assert [loader.shard_size for loader in loaders] == [4, 4, 3]
    seen = sorted(int(i) for loader in loaders for batch in loader for i in batch["label"])
    assert seen == list(range(11))


def test_set_epoch_chooses_the_order_and_iterations_count_epochs():
    loader = DeviceLoader(make_tensors(10), 10, shuffle=True, seed=2)
    first, second = (next(iter(loader))["label"].tolist() for _ in range(2))
    loader.set_epoch(1)
    assert next(iter(loader))["label"].tolist() == second
    loader.set_epoch(0)
    assert next(iter(loader))["label"].tolist() == first
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        loader.set_epoch(-1)


def test_augmentation_differs_between_ranks_and_epochs_and_repeats_with_set_epoch():
    images = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8).expand(16, 3, 32, 32).contiguous()
    tensors = {"image": images, "label": torch.zeros(16, dtype=torch.int64)}

    def augmented(rank, epoch):
        loader = DeviceLoader(tensors, 16, augment=True, seed=0, rank=rank, world_size=2)
        loader.set_epoch(epoch)
        return next(iter(loader))["image"]  # the same 8 identical images on every rank

    assert torch.equal(augmented(0, 0), augmented(0, 0))
    assert not torch.equal(augmented(0, 0), augmented(1, 0))
    assert not torch.equal(augmented(0, 0), augmented(0, 1))


def test_bad_shard_arguments_are_refused():
    with pytest.raises(ValueError, match="rank must be in"):
        DeviceLoader(make_tensors(10), 2, rank=2, world_size=2)
    with pytest.raises(ValueError, match="cannot be split evenly"):
        DeviceLoader(make_tensors(2), 3, shuffle=True, rank=0, world_size=3)
    with pytest.raises(ValueError, match=r"global batch \(--batch-size\) and must be divisible by the 3 processes"):
        DeviceLoader(make_tensors(12), 4, shuffle=True, rank=0, world_size=3)


def test_curriculum_loader_gives_the_first_loader_then_the_second_and_follows_set_epoch():
    from mmbook.data import CurriculumLoader

    easy, hard = make_tensors(8), make_tensors(8)
    hard["label"] = hard["label"] + 100
    loader = CurriculumLoader(DeviceLoader(easy, 4, shuffle=True, seed=0), DeviceLoader(hard, 4, shuffle=True, seed=0), 2)
    assert len(loader) == 2
    labels = []
    for epoch in range(4):
        loader.set_epoch(epoch)
        labels.append(sorted(torch.cat([batch["label"] for batch in loader]).tolist()))
    assert labels[0] == labels[1] == list(range(8)) and labels[2] == labels[3] == list(range(100, 108))
    loader.set_epoch(1)  # a run resumed in the first phase goes on in it
    assert max(torch.cat([batch["label"] for batch in loader]).tolist()) < 100
    never = CurriculumLoader(DeviceLoader(easy, 4), DeviceLoader(hard, 4), 0)
    assert min(torch.cat([batch["label"] for batch in never]).tolist()) >= 100


def test_curriculum_loader_refuses_loaders_of_other_lengths_and_bad_epochs():
    from mmbook.data import CurriculumLoader

    with pytest.raises(ValueError, match="as many batches per epoch: 2 and 3"):
        CurriculumLoader(DeviceLoader(make_tensors(8), 4), DeviceLoader(make_tensors(12), 4), 1)
    with pytest.raises(ValueError, match="first_epochs must be a whole number"):
        CurriculumLoader(DeviceLoader(make_tensors(8), 4), DeviceLoader(make_tensors(8), 4), -1)
