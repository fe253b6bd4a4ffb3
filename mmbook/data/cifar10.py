"""CIFAR-10 as uint8 tensors: found offline, or downloaded with checksums, then cached.

Where the images come from, in order:

1. ``$MMBOOK_DATA/cifar10/{train,test}/<class>/*.jpg`` -- the ImageFolder layout of
   the offline copy that tests and CI use (a JPEG copy of CIFAR-10);
2. ``$MMBOOK_DATA/cifar-10-batches-py`` -- torchvision's official files, which a
   reader gets with ``download=True`` (torchvision checks their MD5 checksums).

Decoding 60,000 JPEGs takes a while, so the decoded tensors are cached once in
:func:`cache_dir` (see :mod:`mmbook.data.cache`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mmbook.data.cache import cached

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
SPLITS = ("train", "test")
# Quick mode keeps the first images of each class (in file-name order): a fixed,
# class-balanced subset, so quick runs are repeatable and every class is present.
QUICK_PER_CLASS = {"train": 500, "test": 100}
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


class DataNotFoundError(FileNotFoundError):
    """No copy of a data set could be found or downloaded."""


class CorruptDataError(RuntimeError):
    """A data file exists but cannot be read."""


@dataclass
class ImageSet:
    """A split of an image classification data set, held in memory.

    Attributes:
        images: ``uint8`` tensor of shape ``(N, 3, 32, 32)``, values 0..255.
        labels: ``int64`` tensor of shape ``(N,)``, values in ``0..len(classes)-1``.
        classes: class names; ``classes[k]`` is the name of label ``k``.
        source: where the images came from, for reports.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    source: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def data_root() -> Path:
    """The data directory: ``$MMBOOK_DATA`` if set, else ``~/.cache/mmbook/data``."""
    return _directory("MMBOOK_DATA", "data")


def cache_dir() -> Path:
    """Where decoded tensors are cached: ``$MMBOOK_CACHE``, else ``~/.cache/mmbook/tensors``.

    It is separate from :func:`data_root` because the data directory may be
    read-only (CI mounts the offline copy without write permission).
    """
    return _directory("MMBOOK_CACHE", "tensors")


def _directory(variable: str, name: str) -> Path:
    """``$variable`` if set, else ``name`` in mmbook's per-user cache (``$XDG_CACHE_HOME`` or ``~/.cache``)."""
    if os.environ.get(variable):
        return Path(os.environ[variable]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mmbook" / name


def locate_cifar10(root: Path | None = None) -> tuple[str, Path] | None:
    """Find a local copy of CIFAR-10 under ``root`` (default :func:`data_root`).

    Returns:
        ``("imagefolder", path)`` or ``("official", path)``, or ``None`` if neither is there.
    """
    root = Path(root) if root is not None else data_root()
    folder = root / "cifar10"
    if all((folder / split).is_dir() for split in SPLITS):
        return "imagefolder", folder
    if (root / "cifar-10-batches-py").is_dir():
        return "official", root
    return None


def load_cifar10(
    split: str,
    *,
    quick: bool = False,
    root: Path | str | None = None,
    download: bool = False,
    progress: bool = True,
) -> ImageSet:
    """Load one split of CIFAR-10 as uint8 tensors.

    Args:
        split: ``"train"`` (50,000 images) or ``"test"`` (10,000 images).
        quick: keep a fixed, class-balanced subset (:data:`QUICK_PER_CLASS` per class).
        root: the data directory; default :func:`data_root`.
        download: if no local copy is found, download the official files
            (checksum-verified by torchvision) into ``root``.
        progress: show a progress bar while decoding.

    Returns:
        An :class:`ImageSet` with ``images`` of shape ``(N, 3, 32, 32)``.

    Raises:
        ValueError: for an unknown split.
        DataNotFoundError: if no copy is found and none could be downloaded.
        CorruptDataError: if an image file cannot be decoded.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(root).expanduser() if root is not None else data_root()
    found = locate_cifar10(root)
    # MMBOOK_OFFLINE=1 forbids downloads (tests set it: they never touch the network).
    offline = os.environ.get("MMBOOK_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
    if found is None and (not download or offline):
        raise DataNotFoundError(
            f"CIFAR-10 was not found under {root} (looked for {root / 'cifar10'}/{{train,test}}/<class>/*.jpg "
            f"and {root / 'cifar-10-batches-py'}). Either point MMBOOK_DATA at a directory that holds an "
            f"offline copy (for example export MMBOOK_DATA=../shared/data), or download the official files "
            f"with `mmbook data --download` (about 170 MB, checksum-verified; needs the network)."
        )
    if found is None:
        _download_official(root)
        found = "official", root
    kind, path = found
    per_class = QUICK_PER_CLASS[split] if quick else None
    if kind == "imagefolder":
        files, key = _imagefolder_listing(path / split, split, per_class)
        loader = lambda: _decode_files(files, progress=progress)  # noqa: E731
        source = f"CIFAR-10 (JPEG copy) {split}, {path}"
    else:
        key = _fingerprint(f"official:{split}:{per_class}", [str(path)])
        loader = lambda: _load_official(path, split, per_class)  # noqa: E731
        source = f"CIFAR-10 (official files) {split}, {path}"

    def valid(value: tuple[torch.Tensor, torch.Tensor]) -> bool:
        images, labels = value
        return images.dtype == torch.uint8 and images.ndim == 4 and labels.shape[0] == images.shape[0]

    stem = f"cifar10-{split}-{'quick' if quick else 'full'}"
    images, labels = cached(cache_dir() / f"{stem}-{key}.pt", key, loader, valid)
    return ImageSet(images=images, labels=labels, classes=CIFAR10_CLASSES, source=source)


def _download_official(root: Path) -> None:
    from torchvision.datasets import CIFAR10

    root.mkdir(parents=True, exist_ok=True)
    try:
        # torchvision checks the archive's MD5 before and after extraction.
        for train in (True, False):
            CIFAR10(root=str(root), train=train, download=True)
    except (OSError, RuntimeError) as error:
        raise DataNotFoundError(
            f"could not download CIFAR-10 into {root}: {error}. "
            f"Check the network connection, or point MMBOOK_DATA at an offline copy "
            f"(the ImageFolder layout cifar10/{{train,test}}/<class>/*.jpg)."
        ) from error


# The listing and fingerprint of a split folder, per process: listing and stat-ing 60,000 files takes seconds,
# and the scene recipes load CIFAR-10 several times per run. Keyed by the class folders' modification times,
# which change when a file is added, removed or renamed.
_LISTINGS: dict[tuple[str, str, int | None, tuple[int, ...]], tuple[list[tuple[Path, int]], str]] = {}


def _imagefolder_listing(split_dir: Path, split: str, per_class: int | None) -> tuple[list[tuple[Path, int]], str]:
    """``(files, fingerprint)`` of a split folder (see :func:`_imagefolder_files`), remembered in this process."""
    try:
        stamps = tuple((split_dir / name).stat().st_mtime_ns for name in CIFAR10_CLASSES)
    except OSError:
        stamps = ()
    memo = (str(split_dir.resolve()), split, per_class, stamps)
    if not stamps or memo not in _LISTINGS:
        files = _imagefolder_files(split_dir, per_class)
        key = _fingerprint(f"imagefolder:{split}", [f"{label}/{p.name}:{p.stat().st_size}" for p, label in files])
        if not stamps:
            return files, key
        _LISTINGS[memo] = files, key
    return _LISTINGS[memo]


def _imagefolder_files(split_dir: Path, per_class: int | None) -> list[tuple[Path, int]]:
    """List ``(file, label)`` pairs; labels follow :data:`CIFAR10_CLASSES`."""
    missing = [name for name in CIFAR10_CLASSES if not (split_dir / name).is_dir()]
    if missing:
        raise DataNotFoundError(
            f"{split_dir} is missing class folders {missing}; expected one folder per class: "
            f"{', '.join(CIFAR10_CLASSES)}. Re-copy the data set or download it with `mmbook data --download`."
        )
    files: list[tuple[Path, int]] = []
    for label, name in enumerate(CIFAR10_CLASSES):
        class_files = sorted(p for p in (split_dir / name).iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        if per_class is not None and len(class_files) < per_class:
            raise DataNotFoundError(f"{split_dir / name} holds {len(class_files)} images, fewer than the "
                                    f"{per_class} that quick mode needs per class")
        files.extend((p, label) for p in class_files[:per_class])
    if not files:
        raise DataNotFoundError(f"no images found under {split_dir}")
    return files


def _decode_files(files: list[tuple[Path, int]], progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from tqdm.auto import tqdm

    images = np.empty((len(files), 32, 32, 3), dtype=np.uint8)
    for i, (path, _) in enumerate(tqdm(files, desc="decoding images", disable=not progress, leave=False)):
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB"))
        except OSError as error:
            raise CorruptDataError(
                f"cannot decode image {path}: {error}. Replace the file from a fresh copy of the data set, "
                f"or delete the copy and run `mmbook data --download`."
            ) from error
        if array.shape != (32, 32, 3):
            raise CorruptDataError(f"image {path} has shape {array.shape}; expected a 32x32 RGB image")
        images[i] = array
    # (N, H, W, C) -> (N, C, H, W), the layout PyTorch's convolutions expect.
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.tensor([label for _, label in files])


def _load_official(root: Path, split: str, per_class: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision.datasets import CIFAR10

    try:
        dataset = CIFAR10(root=str(root), train=(split == "train"), download=False)
    except RuntimeError as error:  # torchvision: "Dataset not found or corrupted."
        raise CorruptDataError(
            f"the official CIFAR-10 files under {root} fail their checksum: {error}. "
            f"Delete {root / 'cifar-10-batches-py'} and run `mmbook data --download` again."
        ) from error
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor(dataset.targets, dtype=torch.int64)
    if per_class is not None:
        keep = torch.cat([torch.nonzero(labels == k).flatten()[:per_class] for k in range(len(CIFAR10_CLASSES))])
        images, labels = images[keep], labels[keep]
    return images, labels


def _fingerprint(kind: str, items: list[str]) -> str:
    return hashlib.sha256("".join([kind] + [f"{item}\0" for item in items]).encode()).hexdigest()[:16]
