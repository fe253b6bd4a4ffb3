"""Image encoders built from convolution, pooling and fully connected layers.

:class:`LeNet` is the image branch of the book's worked example, exactly as in the
source: conv 3->6 (5x5), max-pool, conv 6->16 (5x5), max-pool, then fully
connected 400->120->84->10 (LeCun et al., 1998).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class LeNet(nn.Module):
    """LeNet-5 for 32x32 RGB images.

    Shapes::

        input   (B, 3, 32, 32)   float images
        conv1   (B, 6, 28, 28)   -> max-pool (B, 6, 14, 14)
        conv2   (B, 16, 10, 10)  -> max-pool (B, 16, 5, 5) -> flatten (B, 400)
        fc1     (B, 120)
        fc2     (B, 84)
        fc3     (B, out_features)

    Args:
        out_features: size of the output; 10 for CIFAR-10 logits, or the size of
            the image feature when LeNet is one branch of a multimodal model.
    """

    def __init__(self, out_features: int = 10) -> None:
        super().__init__()
        self.out_features = out_features
        self.conv1 = nn.Conv2d(3, 6, kernel_size=5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, out_features)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The 84-dimensional penultimate features, shape ``(B, 84)``."""
        check_images(images)
        x = self.pool(F.relu(self.conv1(images)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return F.relu(self.fc2(x))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 32, 32)`` float images -> ``(B, out_features)``."""
        return self.fc3(self.features(images))


def check_images(images: torch.Tensor, size: int = 32) -> None:
    """Raise a clear error unless ``images`` is a float batch of shape ``(B, 3, size, size)``."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"expected images as a torch.Tensor of shape (B, 3, {size}, {size}), got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[2:] != (size, size):
        hint = " (add a batch dimension with images.unsqueeze(0))" if images.ndim == 3 else ""
        raise ValueError(f"expected images of shape (B, 3, {size}, {size}), got {tuple(images.shape)}{hint}")
    if not images.is_floating_point():
        raise TypeError(
            f"expected float images, got dtype {images.dtype}; convert uint8 images with "
            f"mmbook.data.loaders.normalize_images(images)"
        )


def lenet(out_features: int = 10) -> LeNet:
    """Build the worked example's LeNet image branch."""
    return LeNet(out_features=out_features)
