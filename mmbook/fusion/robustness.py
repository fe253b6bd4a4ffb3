"""Corrupting one modality at test time, and summarising accuracy-vs-noise curves.

In the spirit of MultiBench's robustness measures (Liang et al., 2021): evaluate a
trained model while one modality is made noisier and noisier, and report the area
under the accuracy-vs-noise curve.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mmbook.data.captions import CaptionGenerator


def corrupt_images(images: torch.Tensor, level: float, seed: int = 0) -> torch.Tensor:
    """Blend uint8 images ``(N, 3, H, W)`` with uniform random pixels.

    ``(1 - level) * image + level * noise``: ``level = 0`` leaves the images alone,
    ``level = 1`` replaces them with pure noise. Returns uint8 of the same shape.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise TypeError(f"expected uint8 images (N, 3, H, W), got dtype {images.dtype} and shape {tuple(images.shape)}")
    if not 0.0 <= level <= 1.0:
        raise ValueError(f"noise level must lie in [0, 1], got {level}")
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randint(0, 256, images.shape, generator=generator, dtype=torch.uint8)
    mixed = (1.0 - level) * images.float() + level * noise.float()
    return mixed.round().clamp(0, 255).to(torch.uint8)


def noisy_caption_tokens(labels: torch.Tensor, vocab, level: float, seed: int = 1, classes: Sequence[str] | None = None) -> torch.Tensor:
    """Token ids ``(N, T)`` of fresh captions in which a fraction ``level`` describe a random class.

    Uses the data set's own :class:`~mmbook.data.captions.CaptionGenerator` noise
    (at ``level = 1`` every caption describes a random class) and the training
    vocabulary ``vocab``.
    """
    if not 0.0 <= level <= 1.0:
        raise ValueError(f"noise level must lie in [0, 1], got {level}")
    kwargs = {"classes": classes} if classes is not None else {}
    captions = CaptionGenerator(noise=level, seed=seed, **kwargs).captions(labels.tolist())
    tokens, _ = vocab.encode_batch(captions)
    return tokens


def area_under_curve(levels: Sequence[float], accuracies: Sequence[float]) -> float:
    """Trapezoidal area under accuracy-vs-noise, normalised by the level range (so in ``[0, 1]``)."""
    levels = [float(x) for x in levels]
    accuracies = [float(a) for a in accuracies]
    if len(levels) != len(accuracies) or len(levels) < 2:
        raise ValueError(f"need at least two (level, accuracy) pairs of equal length, got {len(levels)} and {len(accuracies)}")
    if any(b <= a for a, b in zip(levels, levels[1:])):
        raise ValueError(f"levels must increase, got {levels}")
    area = torch.trapezoid(torch.tensor(accuracies, dtype=torch.float64), torch.tensor(levels, dtype=torch.float64))
    return float(area) / (levels[-1] - levels[0])
