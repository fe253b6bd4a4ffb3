"""Batch loaders: a fast one that keeps the whole data set on the device, and the standard one.

A batch is a dict of tensors, e.g. ``{"image": (B, 3, 32, 32) float, "text": (B, T) int64,
"label": (B,) int64}``.

:class:`DeviceLoader` is the fast path. CIFAR-10 is small (50,000 x 3 x 32 x 32 bytes =
150 MB as uint8), so it fits on any GPU. Keeping it there removes the per-batch copy
from host memory and the worker processes; shuffling is one ``randperm`` per epoch
and augmentation (random crop, horizontal flip) is done on the whole batch at once,
on the device, instead of image by image in Python.

:func:`make_dataloader` is the standard ``torch.utils.data.DataLoader`` path that most
tutorials use, kept for comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

# Per-channel statistics of the CIFAR-10 training images.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 images ``(B, 3, H, W)`` in 0..255 -> float, standardized per channel."""
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images (values 0..255), got dtype {images.dtype}")
    mean = torch.tensor(CIFAR10_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD, device=images.device).view(1, 3, 1, 1)
    # (x / 255 - mean) / std as one scale and one shift, applied in place: two passes over
    # the batch and no new tensors. Call it before any change to channels-last: broadcasting
    # a (1, 3, 1, 1) tensor over channels-last memory loops over 3 values at a time, which
    # made this step 6x slower on a CPU.
    return images.float().mul_(1.0 / (255.0 * std)).sub_(mean / std)


def augment_images(
    images: torch.Tensor, generator: torch.Generator | None = None, crop_padding: int = 4, flip: bool = True,
    cutout: int = 0, flip_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Random crop (after reflect-padding), random horizontal flip and cutout of a whole batch.

    Args:
        images: ``(B, C, H, W)``, any dtype.
        generator: random generator on ``images.device``, for repeatable augmentation.
        crop_padding: pixels of padding on each side before cropping back to ``H x W``; 0 disables.
        flip: flip each image left-right with probability 1/2.
        cutout: side of a square, centred at a random pixel, that is painted over with the
            mean CIFAR-10 colour (DeVries and Taylor, 2017); 0 disables. For uint8 images
            the colour is the mean in 0..255; for float images it is 0, the mean of
            normalized images.
        flip_mask: bool ``(B,)``: which images to flip, instead of a random half (``flip`` must be on);
            :class:`DeviceLoader` passes it for ``alternate_flip``.

    Returns:
        Augmented images of the same shape and dtype.
    """
    batch, _, height, width = images.shape
    device = images.device
    if flip:
        if flip_mask is None:
            flip_mask = torch.rand(batch, device=device, generator=generator) < 0.5
        elif flip_mask.shape != (batch,) or flip_mask.dtype != torch.bool:
            raise ValueError(f"flip_mask must be bool ({batch},), one entry per image; "
                             f"got {flip_mask.dtype} {tuple(flip_mask.shape)}")
        images = torch.where(flip_mask.view(-1, 1, 1, 1), images.flip(3), images)
    if crop_padding > 0:
        pad = crop_padding
        padded = F.pad(images.float(), (pad, pad, pad, pad), mode="reflect").to(images.dtype)
        # One random offset per image; gather every crop at once with index arithmetic.
        dy = torch.randint(0, 2 * pad + 1, (batch,), device=device, generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (batch,), device=device, generator=generator)
        rows = (dy.view(-1, 1) + torch.arange(height, device=device)).view(batch, 1, height, 1)
        cols = (dx.view(-1, 1) + torch.arange(width, device=device)).view(batch, 1, 1, width)
        index = torch.arange(batch, device=device).view(-1, 1, 1, 1)
        channel = torch.arange(images.shape[1], device=device).view(1, -1, 1, 1)
        images = padded[index, channel, rows, cols]
    if cutout > 0:
        # One square per image, centred anywhere, so it may hang over the edge (then it is smaller).
        cy = torch.randint(0, height, (batch, 1, 1), device=device, generator=generator)
        cx = torch.randint(0, width, (batch, 1, 1), device=device, generator=generator)
        top, left = cy - cutout // 2, cx - cutout // 2
        rows = torch.arange(height, device=device).view(1, -1, 1)
        cols = torch.arange(width, device=device).view(1, 1, -1)
        square = (rows >= top) & (rows < top + cutout) & (cols >= left) & (cols < left + cutout)  # (B, H, W)
        if images.dtype == torch.uint8:
            fill = torch.tensor([round(255 * m) for m in CIFAR10_MEAN], dtype=torch.uint8, device=device)
        else:
            fill = torch.zeros(images.shape[1], dtype=images.dtype, device=device)
        images = torch.where(square.unsqueeze(1), fill.view(1, -1, 1, 1), images)
    return images


def _check_tensors(tensors: Mapping[str, torch.Tensor]) -> int:
    if "label" not in tensors:
        raise KeyError(f"a data set needs a 'label' tensor, got keys {sorted(tensors)}")
    sizes = {name: int(t.shape[0]) for name, t in tensors.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"all tensors must have the same number of samples, got {sizes}")
    return next(iter(sizes.values()))


class DeviceLoader:
    """Iterate over batches of a data set that lives entirely on ``device``.

    Args:
        tensors: name -> tensor with samples along dim 0; ``"image"`` must be uint8
            ``(N, 3, H, W)`` and is normalized (and augmented) per batch on the device.
        batch_size: samples per batch.
        shuffle: draw a new random order every epoch.
        augment: random crop and flip of the images (training only).
        device: where to keep the data; default CPU.
        seed: seed of the shuffling and augmentation generator.
        drop_last: drop a last, smaller batch.
        channels_last: return images in channels-last memory format (faster convolutions
            on recent GPUs with mixed precision).
        crop_padding: padding of the random crop, in pixels (see :func:`augment_images`).
        cutout: side of the cutout square, in pixels; 0 disables (see :func:`augment_images`).
        alternate_flip: with ``augment``, flip each image in every other epoch instead of at
            random (airbench's scheme): a random half is flipped in the first epoch, and every
            image's flip alternates after that. Over any two epochs each image is then seen
            once each way, where random flips show about a quarter of the images the same way
            twice.
    """

    def __init__(
        self,
        tensors: Mapping[str, torch.Tensor],
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: bool = False,
        device: torch.device | str | None = None,
        seed: int = 0,
        drop_last: bool = False,
        channels_last: bool = False,
        crop_padding: int = 4,
        cutout: int = 0,
        alternate_flip: bool = False,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.num_samples = _check_tensors(tensors)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.tensors = {name: t.to(self.device) for name, t in tensors.items()}
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.drop_last = drop_last
        self.channels_last = channels_last
        self.crop_padding = crop_padding
        self.cutout = cutout
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self._epoch_count = 0
        # Which images are flipped in even epochs; odd epochs flip the others.
        self.flip_in_even_epochs = (torch.rand(self.num_samples, device=self.device, generator=self.generator) < 0.5
                                    if alternate_flip else None)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return -(-self.num_samples // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if self.shuffle:
            order = torch.randperm(self.num_samples, device=self.device, generator=self.generator)
        else:
            order = torch.arange(self.num_samples, device=self.device)
        odd_epoch = self._epoch_count % 2 == 1
        self._epoch_count += 1
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            # index_select is a plain gather; t[index] goes through advanced indexing, which
            # was 8x slower for a batch of uint8 images on a CPU.
            batch = {name: t.index_select(0, index) for name, t in self.tensors.items()}
            if "image" in batch:
                images = batch["image"]
                if self.augment:
                    flip_mask = None
                    if self.flip_in_even_epochs is not None:
                        flip_mask = self.flip_in_even_epochs.index_select(0, index) ^ odd_epoch
                    images = augment_images(images, self.generator, crop_padding=self.crop_padding,
                                            cutout=self.cutout, flip_mask=flip_mask)
                images = normalize_images(images)
                if self.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                batch["image"] = images
            yield batch


class AugmentedLoader:
    """Pass every batch of a loader through ``augment(batch, generator)``, e.g. to flip scenes with their boxes.

    Augmentations that touch more than the image (boxes, masks) cannot live in
    :class:`DeviceLoader`, which only knows about images; this wrapper applies them to
    the whole batch. It uses the wrapped loader's ``generator``, so a resumed run
    (:func:`mmbook.training.fit` with ``resume=True``) replays the same augmentation.

    Args:
        loader: a :class:`DeviceLoader` (or any loader with ``len()`` and a ``generator``).
        augment: ``augment(batch, generator) -> batch``.
    """

    def __init__(
        self,
        loader: DeviceLoader,
        augment: Callable[[dict[str, torch.Tensor], torch.Generator], dict[str, torch.Tensor]],
    ) -> None:
        self.loader = loader
        self.augment = augment
        self.generator = loader.generator

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for batch in self.loader:
            yield self.augment(batch, self.generator)


class TensorDictDataset(Dataset):
    """A map-style data set over a dict of tensors, one sample at a time (the standard path)."""

    def __init__(self, tensors: Mapping[str, torch.Tensor], augment: bool = False) -> None:
        self.num_samples = _check_tensors(tensors)
        self.tensors = dict(tensors)
        self.augment = augment

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = {name: t[index] for name, t in self.tensors.items()}
        if "image" in sample:
            image = sample["image"].unsqueeze(0)
            if self.augment:
                image = augment_images(image)
            sample["image"] = normalize_images(image)[0]
        return sample


def make_dataloader(
    tensors: Mapping[str, torch.Tensor],
    batch_size: int,
    *,
    shuffle: bool = False,
    augment: bool = False,
    num_workers: int = 0,
    seed: int = 0,
) -> DataLoader:
    """The standard ``DataLoader`` path over the same tensors, for comparison with :class:`DeviceLoader`."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        TensorDictDataset(tensors, augment=augment),
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        generator=generator,
    )
