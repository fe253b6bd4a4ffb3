"""CIFAR-10 with one generated caption per image: the worked example's data set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mmbook.data.captions import CaptionGenerator
from mmbook.data.cifar10 import ImageSet, load_cifar10
from mmbook.text.vocab import Vocabulary


@dataclass
class CaptionedSplit:
    """One split of captioned CIFAR-10.

    Attributes:
        images: uint8 ``(N, 3, 32, 32)``.
        labels: int64 ``(N,)``.
        captions: ``N`` strings.
        tokens: int64 ``(N, T)``, caption ids right-padded with 0.
        classes: class names.
    """

    images: torch.Tensor
    labels: torch.Tensor
    captions: list[str]
    tokens: torch.Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def tensors(self) -> dict[str, torch.Tensor]:
        """The batch-dict form that the loaders take: ``image``, ``text``, ``label``."""
        return {"image": self.images, "text": self.tokens, "label": self.labels}


@dataclass
class CaptionedCIFAR10:
    """Both splits and the caption vocabulary (built from the training captions only)."""

    train: CaptionedSplit
    test: CaptionedSplit
    caption_vocab: Vocabulary
    noise: float
    seed: int


def load_captioned_cifar10(
    *,
    quick: bool = False,
    noise: float = 0.1,
    seed: int = 0,
    root: Path | str | None = None,
    download: bool = False,
    progress: bool = True,
) -> CaptionedCIFAR10:
    """Load CIFAR-10 and caption every image.

    Args:
        quick: use the fixed class-balanced quick subset.
        noise: caption noise rate (see :class:`~mmbook.data.captions.CaptionGenerator`).
        seed: caption seed.
        root, download, progress: as in :func:`~mmbook.data.cifar10.load_cifar10`.
    """
    def captioned(split: str, caption_seed: int) -> tuple[ImageSet, list[str]]:
        images = load_cifar10(split, quick=quick, root=root, download=download, progress=progress)
        generator = CaptionGenerator(noise=noise, seed=caption_seed, classes=images.classes)
        return images, generator.captions(images.labels.tolist())

    # Test captions have another seed, so the model is tested on wordings it has not memorised image by image.
    splits = captioned("train", seed), captioned("test", seed + 1)
    caption_vocab = Vocabulary.build(splits[0][1])
    train, test = (CaptionedSplit(images.images, images.labels, captions, caption_vocab.encode_batch(captions)[0],
                                  images.classes) for images, captions in splits)
    return CaptionedCIFAR10(train, test, caption_vocab, noise, seed)
