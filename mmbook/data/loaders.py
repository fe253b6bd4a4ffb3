"""Batch loaders that keep the whole data set on the device, with image normalization and augmentation.

A batch is a dict of tensors, e.g. ``{"image": (B, 3, 32, 32) float, "text": (B, T) int64,
"label": (B,) int64}`` (caption-only data has no ``"label"``).

:class:`DeviceLoader` is the fast path. CIFAR-10 is small (50,000 x 3 x 32 x 32 bytes =
150 MB as uint8), so it fits on any GPU. Keeping it there removes the per-batch copy
from host memory and the worker processes; shuffling is one ``randperm`` per epoch
and augmentation (random crop, horizontal flip) is done on the whole batch at once,
on the device, instead of image by image in Python.

Under torchrun (see :mod:`mmbook.distributed`) each process loads its own shard:
every rank draws the same permutation, seeded with ``seed + epoch``, and takes every
``world_size``-th sample of it, starting at its rank. A rank's batch ``k`` is then one
slice of the global batch ``k`` that a single process with ``world_size`` times the
batch would load, so DDP takes the single-process optimizer steps on the same samples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from mmbook import distributed

# Per-channel statistics of the CIFAR-10 training images.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
#: CIFAR-10's statistics as keyword arguments: ``DeviceLoader(..., **CIFAR10_STATS)`` for images made of
#: CIFAR-10 images that are not 32x32 (the book's scenes), where the loader has no default.
CIFAR10_STATS = {"mean": CIFAR10_MEAN, "std": CIFAR10_STD}
#: The shape ``(C, H, W)`` of a CIFAR-10 image: uint8 images of this shape default to CIFAR-10's statistics.
CIFAR10_SHAPE = (3, 32, 32)


#: The key of the per-sample image index when several samples share one image (see :class:`DeviceLoader`).
IMAGE_ID = "image_id"


def normalize_images(
    images: torch.Tensor, mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD,
) -> torch.Tensor:
    """uint8 images ``(B, C, H, W)`` in 0..255 -> float, standardized per channel.

    Args:
        mean, std: per-channel statistics of images scaled to ``[0, 1]`` (default CIFAR-10's;
            :func:`image_statistics` computes them for other images).
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images (values 0..255), got dtype {images.dtype}")
    channels = images.shape[1] if images.ndim == 4 else -1
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"expected one mean and one std per channel ({channels}), got {len(mean)} and {len(std)}")
    mean = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    std = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
    # (x / 255 - mean) / std as one in-place scale and shift. Call it before any change to
    # channels-last, where broadcasting a (1, 3, 1, 1) tensor is much slower on a CPU.
    return images.float().mul_(1.0 / (255.0 * std)).sub_(mean / std)


def image_statistics(images: torch.Tensor, chunk: int = 1024) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images ``(N, C, H, W)`` scaled to ``[0, 1]``.

    Computed from the training images, these are the ``mean`` and ``std`` of :func:`normalize_images`
    and :class:`DeviceLoader`. Sums run in float64, a chunk of images at a time.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"expected uint8 images (N, C, H, W) with N >= 1, got {images.dtype} {tuple(images.shape)}")
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros(images.shape[1], dtype=torch.float64)
    for start in range(0, images.shape[0], chunk):
        part = images[start : start + chunk].to(torch.float64) / 255.0
        total += part.sum(dim=(0, 2, 3)).cpu()
        squares += part.square().sum(dim=(0, 2, 3)).cpu()
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp(min=1e-12).sqrt()
    return tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std)


def augment_images(
    images: torch.Tensor, generator: torch.Generator | None = None, crop_padding: int = 4, flip: bool = True,
    cutout: int = 0,
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

    Returns:
        Augmented images of the same shape and dtype.
    """
    batch, _, height, width = images.shape
    device = images.device
    if flip:
        flip_mask = torch.rand(batch, device=device, generator=generator) < 0.5
        images = torch.where(flip_mask.view(-1, 1, 1, 1), images.flip(3), images)
    if crop_padding > 0:
        padded = F.pad(images.float(), (crop_padding,) * 4, mode="reflect").to(images.dtype)
        # One random offset per image; gather every crop at once with index arithmetic.
        dy = torch.randint(0, 2 * crop_padding + 1, (batch,), device=device, generator=generator)
        dx = torch.randint(0, 2 * crop_padding + 1, (batch,), device=device, generator=generator)
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
        fill = [round(255 * m) for m in CIFAR10_MEAN] if images.dtype == torch.uint8 else [0] * images.shape[1]
        fill = torch.tensor(fill, dtype=images.dtype, device=device).view(1, -1, 1, 1)
        images = torch.where(square.unsqueeze(1), fill, images)
    return images


def augmentation_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of one rank's augmentation in one epoch: different for every ``(seed, epoch, rank)``."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _statistics(
    tensors: Mapping[str, torch.Tensor], image_keys: Sequence[str], tables: bool,
    mean: Sequence[float] | None, std: Sequence[float] | None,
) -> tuple[Sequence[float] | None, Sequence[float] | None]:
    """The ``mean`` and ``std`` a :class:`DeviceLoader` normalizes its uint8 images with (see its docstring)."""
    if (mean is None) != (std is None):
        raise ValueError("give both mean= and std= (per-channel statistics of the training images), or neither")
    if mean is not None:
        return mean, std
    uint8 = {key: tuple(tensors[key].shape[1:]) for key in image_keys if tensors[key].dtype == torch.uint8}
    if not uint8:
        return None, None
    if not tables and all(shape == CIFAR10_SHAPE for shape in uint8.values()):
        return CIFAR10_MEAN, CIFAR10_STD
    shapes = ", ".join(f"{key!r} {shape}" for key, shape in uint8.items())
    table = " in an image table" if tables else ""
    raise ValueError(f"DeviceLoader needs mean= and std= to normalize uint8 images{table} of shape {shapes} (only "
                     f"CIFAR-10's 3x32x32 images, one per sample, default to CIFAR-10's statistics): pass the "
                     f"statistics of your training images to the training and the test loader, e.g. "
                     f"mean=data.mean, std=data.std from mmbook.data.load_pairs, or "
                     f"mean, std = mmbook.data.image_statistics(train['image']); for images made of CIFAR-10 images "
                     f"pass **mmbook.data.loaders.CIFAR10_STATS")


class DeviceLoader:
    """Iterate over batches of a data set that lives entirely on ``device``.

    Each iteration is the next epoch ``e``: its order is a permutation seeded with ``seed + e``, its
    augmentation is seeded with ``(seed, e, rank)``; :meth:`set_epoch` sets ``e``, so a resumed run
    continues with the order and augmentation it would have had.

    Under torchrun the loader loads only this rank's shard: training loaders (``shuffle=True``)
    give every rank ``N // world_size`` samples, so all ranks take the same steps; evaluation
    loaders split every sample exactly once, unpadded, so counts summed over ranks are exact.

    Several samples may share one image (e.g. many questions per image): then ``tensors``
    holds an ``"image_id"`` entry ``(N,)`` int64, and each image key holds an image *table*
    ``(M, C, H, W)`` indexed by it. The table is stored once on the device, and each batch
    gathers its images from it (then augments and normalizes them) by ``image_id``.

    A ``"label"`` entry is not required: caption-only data (e.g. ``{"image", "image_id", "text"}``
    from ``load_pairs(..., label_column=None)``) is loaded the same way, for losses that need no label.

    Args:
        tensors: name -> tensor with samples along dim 0. The ``image_keys`` entries are
            uint8 ``(N, C, H, W)``, normalized (and augmented) per batch on the device, or
            float images that are already normalized (augmented only); with an ``"image_id"``
            entry they are tables ``(M, C, H, W)`` instead (see above).
        batch_size: samples per batch over all ranks (the global batch); a training loader
            needs it divisible by the number of processes.
        shuffle: draw a new random order every epoch.
        augment: random crop and flip of the images (training only).
        device: where to keep the data; default CPU.
        seed: seed of the shuffling and augmentation.
        drop_last: drop a last, smaller batch.
        channels_last: return images in channels-last memory format (faster convolutions
            on recent GPUs with mixed precision).
        crop_padding: padding of the random crop, in pixels (see :func:`augment_images`).
        cutout: side of the cutout square, in pixels; 0 disables (see :func:`augment_images`).
        rank, world_size: this process's shard; default from the process group
            (``torch.distributed``), or ``0`` and ``1`` without one. ``rank=0, world_size=1``
            loads everything, even under torchrun.
        mean, std: per-channel statistics that uint8 images are normalized with, the same for the
            training and the evaluation loaders: for your own images those of the training images
            (:func:`image_statistics`; ``load_pairs`` returns them as ``data.mean`` and ``data.std``).
            Given neither, uint8 images of CIFAR-10's shape ``(3, 32, 32)``, one per sample, get
            CIFAR-10's (:data:`CIFAR10_MEAN`, :data:`CIFAR10_STD`); any other uint8 images are an
            error that asks for them (``**CIFAR10_STATS`` keeps CIFAR-10's explicitly). The ones in
            use are :attr:`mean` and :attr:`std`.
        image_keys: the keys that hold images; default ``("image",)``. Each one must be in
            ``tensors``, except the default ``"image"`` (a text-only data set has none).
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
        rank: int | None = None,
        world_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        image_keys: Sequence[str] | None = None,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        missing = [key for key in image_keys or () if key not in tensors]
        if missing:
            raise KeyError(f"image_keys {missing} are not in the data, which has keys {sorted(tensors)}")
        self.image_keys = [key for key in (image_keys or ("image",)) if key in tensors]
        tables = self.image_keys if IMAGE_ID in tensors else ()
        sizes = {name: int(t.shape[0]) for name, t in tensors.items() if name not in tables}
        if not sizes:
            raise ValueError(f"the data needs at least one tensor with one row per sample (e.g. 'label', 'text' or "
                             f"'image_id'), got keys {sorted(tensors)}")
        if len(set(sizes.values())) != 1:
            raise ValueError(f"all tensors must have the same number of samples, got {sizes}")
        self.num_samples = next(iter(sizes.values()))
        for key in self.image_keys:
            images = tensors[key]
            if images.ndim != 4 or not (images.dtype == torch.uint8 or images.is_floating_point()):
                raise TypeError(f"tensors[{key!r}] must be uint8 images 0..255 or normalized float images "
                                f"(N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if tables:
            ids = tensors[IMAGE_ID]
            count = min(int(tensors[key].shape[0]) for key in tables)
            if ids.dtype != torch.int64 or ids.ndim != 1:
                raise TypeError(f"tensors['image_id'] must be int64 (N,), got {ids.dtype} {tuple(ids.shape)}")
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= count):
                raise ValueError(f"image_id values must index the image table (0..{count - 1}), "
                                 f"got {int(ids.min())}..{int(ids.max())}")
        mean, std = _statistics(tensors, self.image_keys, bool(tables), mean, std)
        #: The per-channel statistics uint8 images are normalized with (``None`` when no uint8 images need them).
        self.mean: tuple[float, ...] | None = None if mean is None else tuple(float(m) for m in mean)
        self.std: tuple[float, ...] | None = None if std is None else tuple(float(s) for s in std)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.tensors = {name: t.to(self.device) for name, t in tensors.items()}
        self.shuffle = shuffle
        self.augment = augment
        self.drop_last = drop_last
        self.channels_last = channels_last
        self.crop_padding = crop_padding
        self.cutout = cutout
        self.rank = distributed.rank() if rank is None else rank
        self.world_size = distributed.world_size() if world_size is None else world_size
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank must be in 0..world_size-1, got rank {self.rank} of world_size {self.world_size}")
        if shuffle and self.num_samples < self.world_size:
            raise ValueError(f"{self.num_samples} samples cannot be split evenly over {self.world_size} processes")
        #: Samples per batch on this rank (an evaluation loader's last ranks may load one fewer).
        self.batch_size = (distributed.per_rank_batch_size(batch_size, self.world_size) if shuffle
                           else -(-batch_size // self.world_size))
        self.seed = seed
        self.epoch = 0
        # The augmentation's generator; re-seeded at the start of every epoch. AugmentedLoader uses it too.
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(augmentation_seed(seed, 0, self.rank))

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (0-based): its order and its augmentation."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    @property
    def shard_size(self) -> int:
        """Samples this rank loads per epoch (``N`` on one process); equal on all ranks for training."""
        if self.shuffle:
            return self.num_samples // self.world_size
        return len(range(self.rank, self.num_samples, self.world_size))

    def __len__(self) -> int:
        if self.drop_last:
            return self.shard_size // self.batch_size
        return -(-self.shard_size // self.batch_size)

    def indices(self, epoch: int | None = None) -> torch.Tensor:
        """The sample indices ``(M,)`` this rank loads in ``epoch`` (default: the next epoch), in order."""
        if self.shuffle:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(self.seed + (self.epoch if epoch is None else epoch))
            order = torch.randperm(self.num_samples, device=self.device, generator=generator)
        else:
            order = torch.arange(self.num_samples, device=self.device)
        return order[self.rank :: self.world_size][: self.shard_size]

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        epoch = self.epoch
        self.epoch += 1
        order = self.indices(epoch)
        tables = self.image_keys if IMAGE_ID in self.tensors else ()
        self.generator.manual_seed(augmentation_seed(self.seed, epoch, self.rank))
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            # index_select is a plain gather, much faster on a CPU than t[index] (advanced indexing).
            batch = {name: t.index_select(0, index) for name, t in self.tensors.items() if name not in tables}
            for key in self.image_keys:
                # With an image table, gather this batch's images by id (each image is stored once).
                images = self.tensors[key].index_select(0, batch[IMAGE_ID]) if tables else batch[key]
                if self.augment:
                    images = augment_images(images, self.generator, crop_padding=self.crop_padding,
                                            cutout=self.cutout)
                if images.dtype == torch.uint8:
                    images = normalize_images(images, self.mean, self.std)
                if self.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                batch[key] = images
            yield batch


class AugmentedLoader:
    """Pass every batch of a loader through ``augment(batch, generator)``, e.g. to flip scenes with their boxes.

    It uses the wrapped loader's ``generator``, re-seeded every epoch from ``(seed, epoch, rank)``,
    so a resumed run replays the same augmentation, and ranks differ.

    Args:
        loader: a :class:`DeviceLoader`.
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

    def set_epoch(self, epoch: int) -> None:
        """Forwarded to the wrapped loader (see :meth:`DeviceLoader.set_epoch`)."""
        self.loader.set_epoch(epoch)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for batch in self.loader:
            yield self.augment(batch, self.generator)


class CurriculumLoader:
    """A curriculum of two loaders: ``first`` for the first ``first_epochs`` epochs, then ``then``.

    For instance the same scenes asked only the easier questions first (curriculum learning, Bengio et al.
    2009). Both must give the same number of batches per epoch, since :func:`mmbook.training.fit` sets its
    learning-rate schedule from ``len(loader)``. The phase follows :meth:`set_epoch`, which ``fit`` calls at
    every epoch, so a resumed run goes on in the phase it was in.

    Raises:
        ValueError: the loaders' lengths differ, or ``first_epochs`` is not a whole number >= 0.
    """

    def __init__(self, first: DeviceLoader, then: DeviceLoader, first_epochs: int) -> None:
        if len(first) != len(then):
            raise ValueError(f"a curriculum's loaders must give as many batches per epoch: {len(first)} and "
                             f"{len(then)}; build both from the same number of samples and the same batch size")
        if not isinstance(first_epochs, int) or isinstance(first_epochs, bool) or first_epochs < 0:
            raise ValueError(f"first_epochs must be a whole number >= 0, got {first_epochs!r}")
        self.first, self.then, self.first_epochs = first, then, first_epochs
        self.active = first if first_epochs > 0 else then
        self.generator = then.generator

    def __len__(self) -> int:
        return len(self.then)

    def set_epoch(self, epoch: int) -> None:
        """Pick this epoch's loader and forward the epoch to it (see :meth:`DeviceLoader.set_epoch`)."""
        self.active = self.first if epoch < self.first_epochs else self.then
        self.active.set_epoch(epoch)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return iter(self.active)
