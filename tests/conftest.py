"""Fixtures for the unit tests: a tiny CIFAR-10-shaped ImageFolder built in a temporary directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmbook.data.cifar10 import CIFAR10_CLASSES


def write_imagefolder(root: Path, per_class: dict[str, int], seed: int = 0) -> Path:
    """Write ``root/cifar10/<split>/<class>/NNNN.png``; each class has its own mean colour, so it is learnable."""
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for label, name in enumerate(CIFAR10_CLASSES):
            folder = root / "cifar10" / split / name
            folder.mkdir(parents=True, exist_ok=True)
            base = np.array([label * 25, 255 - label * 25, (label * 70) % 256], dtype=np.float64)
            for i in range(count):
                noise = rng.normal(0, 20, size=(32, 32, 3))
                pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:04d}.png")
    return root


@pytest.fixture
def tiny_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny data root (6 train and 2 test images per class), with MMBOOK_DATA and MMBOOK_CACHE pointed at it."""
    root = write_imagefolder(tmp_path / "data", {"train": 6, "test": 2})
    monkeypatch.setenv("MMBOOK_DATA", str(root))
    monkeypatch.setenv("MMBOOK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MMBOOK_OFFLINE", "1")
    # Quick mode keeps a fixed number per class; make it fit the tiny data.
    monkeypatch.setattr("mmbook.data.cifar10.QUICK_PER_CLASS", {"train": 4, "test": 2})
    return root


def tiny_cifar(n: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    """``n`` CIFAR-shaped uint8 images ``(n, 3, 32, 32)`` whose mean colour gives the class, and labels ``(n,)``."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    # Class-dependent mean colour, so that a model can learn something in a few steps.
    base = (labels.view(-1, 1, 1, 1).float() * 25).expand(n, 3, 32, 32)
    noise = torch.randint(0, 30, (n, 3, 32, 32), generator=generator).float()
    return {"image": (base + noise).clamp(0, 255).to(torch.uint8), "label": labels}


def random_scenes(count: int, per_class: int, seed: int):
    """``count`` scenes (:func:`mmbook.data.scenes.make_scenes`, ``seed``) pasted from random-pixel images,
    ``per_class`` per CIFAR-10 class: real layouts, classes and counts, no data files needed."""
    from mmbook.data.scenes import make_scenes

    labels = torch.arange(10).repeat_interleave(per_class)
    images = torch.randint(0, 256, (len(labels), 3, 32, 32), generator=torch.Generator().manual_seed(0),
                           dtype=torch.uint8)
    return make_scenes(count, images, labels, seed=seed)


@pytest.fixture
def tiny_imagefolder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A 200-image CIFAR-10 look-alike (10 images per class and split), in full mode, offline."""
    root = write_imagefolder(tmp_path / "data", {"train": 10, "test": 10})
    monkeypatch.setenv("MMBOOK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MMBOOK_OFFLINE", "1")
    monkeypatch.delenv("MMBOOK_QUICK", raising=False)
    return root
