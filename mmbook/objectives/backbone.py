"""A small convolutional backbone for 64x64 scenes: image in, a grid of features out."""

from __future__ import annotations

import torch
from torch import nn


def _block(in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1, padding: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def _checked_images(images: torch.Tensor) -> torch.Tensor:
    if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise ValueError(f"expected normalized float images (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    return images


class SceneBackbone(nn.Module):
    """A cheap convolutional backbone that downsamples a scene by 8 (cheap enough for a 2-core CPU).

    Shapes::

        images   (B, 3, 64, 64)     normalized floats
        patchify (B, w, 16, 16)     4x4 convolution with stride 4: one vector per 4x4 patch
        stage 2  (B, 2w, 16, 16)    3x3 convolution, then 2x2 max-pool -> (B, 2w, 8, 8)
        stage 3  (B, 2w, 8, 8)      3x3 convolution: one feature vector per 8x8-pixel cell

    Every convolution is followed by batch normalization and a ReLU.

    Args:
        width: channels ``w`` of the patch embedding; the output has ``2w`` channels.
    """

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.out_channels = 2 * width
        self.stride = 8
        self.net = nn.Sequential(
            _block(3, width, kernel=4, stride=4, padding=0),
            _block(width, 2 * width), nn.MaxPool2d(2),
            _block(2 * width, 2 * width),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(B, 2w, H/8, W/8)``."""
        return self.net(_checked_images(images))


class LargeSceneBackbone(nn.Module):
    """A larger backbone with the same stride as :class:`SceneBackbone` (8), about six times its cost: a 3x3
    stem at stride 2 instead of the 4x4 patchify, so the first convolutions see the pixels at half resolution,
    one stage more, and twice the channels in the last two stages.

    Shapes::

        images   (B, 3, 64, 64)     normalized floats
        stem     (B, w, 32, 32)     3x3 convolution with stride 2
        stage 2  (B, 2w, 32, 32)    3x3 convolution, then 2x2 max-pool -> (B, 2w, 16, 16)
        stage 3  (B, 4w, 16, 16)    3x3 convolution, then 2x2 max-pool -> (B, 4w, 8, 8)
        stage 4  (B, 4w, 8, 8)      3x3 convolution: one feature vector per 8x8-pixel cell

    Every convolution is followed by batch normalization and a ReLU.

    Args:
        width: channels ``w`` of the stem; the output has ``4w`` channels.
    """

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.out_channels = 4 * width
        self.stride = 8
        self.net = nn.Sequential(
            _block(3, width, stride=2),
            _block(width, 2 * width), nn.MaxPool2d(2),
            _block(2 * width, 4 * width), nn.MaxPool2d(2),
            _block(4 * width, 4 * width),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(B, 4w, H/8, W/8)``."""
        return self.net(_checked_images(images))


def coordinate_channels(features: torch.Tensor) -> torch.Tensor:
    """Append two channels holding each cell's x and y centre in ``[-1, 1]``: ``(B, C, S, S)`` -> ``(B, C+2, S, S)``."""
    batch, _, height, width = features.shape
    ys = torch.linspace(-1, 1, height, device=features.device, dtype=features.dtype)
    xs = torch.linspace(-1, 1, width, device=features.device, dtype=features.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    coords = torch.stack([grid_x, grid_y]).unsqueeze(0).expand(batch, -1, -1, -1)
    return torch.cat([features, coords], dim=1)
