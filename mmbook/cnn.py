"""Image encoders built from convolution, pooling and fully connected layers.

:class:`LeNet` is the image branch of the book's worked example, exactly as in the
source: conv 3->6 (5x5), max-pool, conv 6->16 (5x5), max-pool, then fully
connected 400->120->84->10 (LeCun et al., 1998). Every encoder here takes an
``image_size`` (default 32, CIFAR-10's).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mmbook.runtime import evaluating


class LeNet(nn.Module):
    """LeNet-5 for RGB images, 32x32 as in the source (any square size from 32 up).

    Shapes (``image_size=32``)::

        input   (B, 3, 32, 32)   float images
        conv1   (B, 6, 28, 28)   -> max-pool (B, 6, 14, 14)
        conv2   (B, 16, 10, 10)  -> max-pool (B, 16, 5, 5) -> flatten (B, 400)
        fc1     (B, 120)
        fc2     (B, 84)
        fc3     (B, out_features)

    For a larger ``image_size`` S the trunk ends in ``(B, 16, s, s)`` with
    ``s = ((S - 4) // 2 - 4) // 2`` (13 for S = 64), which an adaptive max-pool reduces
    to ``(B, 16, 5, 5)``; the fully connected layers are the same as at 32x32.

    Args:
        out_features: size of the output; 10 for CIFAR-10 logits, or the size of
            the image feature when LeNet is one branch of a multimodal model.
        image_size: side of the square input images, at least 32.
    """

    def __init__(self, out_features: int = 10, image_size: int = 32) -> None:
        super().__init__()
        self.image_size = check_image_size(image_size, minimum=32, name="LeNet")
        self.out_features = out_features
        self.conv1 = nn.Conv2d(3, 6, kernel_size=5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, out_features)

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """The convolutional trunk: ``(B, 3, S, S)`` -> ``(B, 16, 5, 5)``, one 16-channel cell per region."""
        check_images(images, self.image_size)
        # Max-pooling and ReLU commute (max(relu(a), relu(b)) = relu(max(a, b))), so pooling first is exactly
        # the source's conv -> ReLU -> pool, with the ReLU and its backward pass on 4x fewer values.
        x = F.relu(self.pool(self.conv1(images)))
        x = F.relu(self.pool(self.conv2(x)))
        if x.shape[-1] != 5:  # images larger than 32x32: pool the grid down to LeNet's 5x5
            x = F.adaptive_max_pool2d(x, 5)
        return x

    def dense(self, feature_map: torch.Tensor) -> torch.Tensor:
        """The fully connected layers before the last: ``(B, 16, 5, 5)`` -> ``(B, 84)``."""
        x = F.relu(self.fc1(torch.flatten(feature_map, 1)))
        return F.relu(self.fc2(x))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The 84-dimensional penultimate features, shape ``(B, 84)``."""
        return self.dense(self.feature_map(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` float images -> ``(B, out_features)``."""
        return self.fc3(self.features(images))


def check_image_size(image_size: int, minimum: int, name: str) -> int:
    """``image_size`` as an int; a clear error unless it is an int of at least ``minimum``."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < minimum:
        raise ValueError(f"{name} takes square images of side image_size >= {minimum}, got image_size={image_size!r}; "
                         f"resize smaller images, e.g. with mmbook.data.load_pairs(..., image_size={minimum})")
    return image_size


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


class ImageRegionEncoder(nn.Module):
    """LeNet as a region encoder, for attention over image regions: ``(B, 3, S, S)`` -> ``(B, 26, out_features)``.

    Regions 0..24 are the cells of LeNet's last 5x5 feature map (:meth:`LeNet.feature_map`,
    16 channels each, projected, plus a learned position embedding); region 25 is LeNet's
    own output, its global feature. The trunk runs once for both.

    Args:
        out_features: size of each region vector.
        image_size: side of the square input images (see :class:`LeNet`); the regions are
            always the 5x5 grid, so larger images give coarser cells.
    """

    num_regions = 26
    returns_sequences = True  # for MultimodalModel's check: a sequence fusion may follow

    def __init__(self, out_features: int = 16, image_size: int = 32) -> None:
        super().__init__()
        self.lenet = LeNet(out_features=out_features, image_size=image_size)
        self.image_size = image_size
        self.cell_proj = nn.Linear(16, out_features)
        self.position = nn.Parameter(torch.zeros(25, out_features))
        nn.init.normal_(self.position, std=0.1)
        self.out_features = out_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` -> ``(B, 26, out_features)``."""
        grid = self.lenet.feature_map(images)  # (B, 16, 5, 5)
        cells = self.cell_proj(grid.flatten(2).transpose(1, 2)) + self.position  # (B, 25, D)
        pooled = self.lenet.fc3(self.lenet.dense(grid))  # (B, D)
        return torch.cat([cells, pooled.unsqueeze(1)], dim=1)


class ImageClassifier(nn.Module):
    """Reads ``batch["image"]`` and returns logits, so an image network fits :func:`mmbook.training.fit`.

    Shapes: ``batch["image"]`` ``(B, 3, 32, 32)`` float -> ``(B, num_classes)`` logits.
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, batch) -> torch.Tensor:
        """Batch dict with an ``"image"`` entry -> ``(B, num_classes)`` logits."""
        if not isinstance(batch, dict) or "image" not in batch:
            got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
            raise KeyError(f"expected a batch dict with an 'image' entry (B, 3, 32, 32), got {got}")
        return self.network(batch["image"])


class ConvBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and ReLU, the second one residual.

    ``x = relu(bn1(conv1(x)))``, then ``x = x + relu(bn2(conv2(x)))``.

    Shapes: ``(B, in_channels, H, W)`` -> ``(B, out_channels, H, W)``.

    The convolutions have no bias: the BatchNorm that follows would cancel it. The
    residual (skip) connection lets the gradient reach the earlier layers directly,
    which makes the short training runs of this chapter converge faster (He et al., 2016).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W)`` -> ``(B, C_out, H, W)``."""
        x = F.relu(self.norm1(self.conv1(x)))
        return x + F.relu(self.norm2(self.conv2(x)))


class PooledConvBlock(ConvBlock):
    """A 3x3 convolution, a 2x2 max-pool, then a second 3x3 convolution at half the resolution.

    ``x = gelu(bn1(max_pool(conv1(x))))``, then ``x = gelu(bn2(conv2(x)))``: airbench's
    block (Jordan, 2024), the GPU alternative to :class:`ConvBlock`.

    Shapes: ``(B, in_channels, H, W)`` -> ``(B, out_channels, H // 2, W // 2)``.

    Pooling between the convolutions makes the second one four times cheaper than in
    :class:`ConvBlock`. There is no skip connection; instead each convolution starts
    partly as the identity: its first ``min(in_channels, out_channels)`` filters copy one
    input channel through (``nn.init.dirac_``), so the untrained block already passes its
    input forward and its gradient back, which is what a residual connection is for.

    It has the same layers as :class:`ConvBlock`, used in a different order.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels)
        for conv in (self.conv1, self.conv2):
            identity = min(conv.in_channels, conv.out_channels)
            nn.init.dirac_(conv.weight.data[:identity])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W)`` -> ``(B, C_out, H // 2, W // 2)``."""
        x = F.gelu(self.norm1(F.max_pool2d(self.conv1(x), 2)))
        return F.gelu(self.norm2(self.conv2(x)))


class SmallCNN(nn.Module):
    """A small modern CNN for 32x32 images (other sizes with ``image_size``), sized for CPUs.

    Shapes (default widths)::

        input   (B, 3, 32, 32)
        stem    (B, 24, 31, 31)   2x2 convolution, no padding (whitened in fastcnn), ReLU
        pool    (B, 24, 15, 15)
        block1  (B, 32, 15, 15)   -> max-pool (B, 32, 7, 7)
        block2  (B, 64, 7, 7)     -> max-pool (B, 64, 3, 3)
        block3  (B, 128, 3, 3)    -> global max-pool (B, 128)
        head    (B, num_classes)

    Pooling right after the cheap stem means every 3x3 convolution runs on at most
    15x15 pixels: a quarter of the work of starting at 32x32, which is what makes
    the network trainable to 80% on two CPU cores in minutes.

    With ``stem_pool=False`` (the layout for GPUs, as in airbench) the first block sees
    the full-resolution stem output instead, four times the work and more accuracy::

        stem    (B, 24, 31, 31)
        block1  (B, w1, 31, 31)   -> max-pool (B, w1, 15, 15)
        block2  (B, w2, 15, 15)   -> max-pool (B, w2, 7, 7)
        block3  (B, w3, 7, 7)     -> global max-pool (B, w3)

    With ``block="pooled"`` the blocks are :class:`PooledConvBlock`, which pool between
    their two convolutions; block3's output is then ``(B, w3, 3, 3)`` before the global pool.

    Args:
        widths: output channels of the three blocks.
        stem_channels: output channels of the 2x2 stem convolution.
        stem_pool: max-pool the stem's output (CPU layout) or not (GPU layout).
        block: ``"residual"`` (:class:`ConvBlock`, then a max-pool) or ``"pooled"``
            (:class:`PooledConvBlock`).
        num_classes: number of logits.
        image_size: side of the square input images (the layers do not depend on it: the
            last pooling is global; larger images cost more arithmetic), at least 16.
        logit_scale: the head's output is multiplied by this; a small value (airbench
            uses 1/9) keeps the early logits small, which trains more stably at high
            learning rates with label smoothing.
    """

    def __init__(
        self,
        widths: tuple[int, int, int] = (32, 64, 128),
        stem_channels: int = 24,
        num_classes: int = 10,
        logit_scale: float = 1 / 9,
        stem_pool: bool = True,
        block: str = "residual",
        image_size: int = 32,
    ) -> None:
        super().__init__()
        self.image_size = check_image_size(image_size, minimum=16, name="SmallCNN")
        blocks = {"residual": ConvBlock, "pooled": PooledConvBlock}
        if block not in blocks:
            raise ValueError(f"block must be one of {sorted(blocks)}, got {block!r}")
        if len(widths) != 3 or any(int(w) <= 0 for w in widths):
            raise ValueError(f"widths must be three positive channel counts, e.g. (32, 64, 128); got {widths!r}")
        if stem_channels <= 0:
            raise ValueError(f"stem_channels must be positive, got {stem_channels}")
        self.out_features = num_classes
        self.logit_scale = logit_scale
        self.stem_pool = stem_pool
        self.block = block
        self.stem = nn.Conv2d(3, stem_channels, kernel_size=2, padding=0, bias=True)
        self.block1 = blocks[block](stem_channels, widths[0])
        self.block2 = blocks[block](widths[0], widths[1])
        self.block3 = blocks[block](widths[1], widths[2])
        self.head = nn.Linear(widths[2], num_classes, bias=False)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` -> pooled features ``(B, widths[-1])``."""
        check_images(images, self.image_size)
        x = F.relu(self.stem(images))
        if self.stem_pool:
            x = F.max_pool2d(x, 2)
        if self.block == "pooled":  # each block halves the resolution itself
            x = self.block3(self.block2(self.block1(x)))
        else:
            x = F.max_pool2d(self.block1(x), 2)
            x = F.max_pool2d(self.block2(x), 2)
            x = self.block3(x)
        return torch.amax(x, dim=(2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` float images -> ``(B, num_classes)`` logits."""
        return self.head(self.features(images)) * self.logit_scale


def count_flops(model: nn.Module, image_shape: tuple[int, int, int] = (3, 32, 32)) -> int:
    """Forward-pass FLOPs per image of ``model``, as PyTorch's ``FlopCounterMode`` counts them.

    One multiply-accumulate counts as 2 FLOPs (the usual convention). The counter covers the
    matrix products and convolutions; normalization, activations and pooling are left out:
    they are a few percent of the total. Training costs about three times this (forward,
    plus two matrix products backward).

    Args:
        model: a network taking an image batch ``(B, *image_shape)``.
        image_shape: ``(C, H, W)`` of one image.

    Returns:
        FLOPs for one image, as an int.
    """
    from torch.utils.flop_counter import FlopCounterMode

    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (C, H, W), got {image_shape!r}")
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    counter = FlopCounterMode(display=False)
    with evaluating(model), torch.no_grad(), counter:
        model(torch.zeros(1, *image_shape, device=device))
    return int(counter.get_total_flops())


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (elements) of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)

# (batch, in_channels, height, width, out_channels, kernel, stride, padding, bias)
_CONV2D_CASES = (
    (1, 1, 5, 5, 1, 3, 1, 0, False),
    (2, 3, 8, 8, 4, 3, 1, 1, True),
    (2, 3, 9, 7, 2, 3, 2, 0, True),
    (1, 2, 8, 8, 3, 5, 2, 2, False),
    (3, 4, 6, 10, 5, (3, 1), (1, 2), (1, 0), True),
)


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def check_conv2d(conv2d, atol: float = 1e-4, verbose: bool = True) -> None:
    """Check a reader's ``conv2d(images, weight, bias, stride, padding)`` against ``F.conv2d``.

    The function must take ``images`` ``(B, C_in, H, W)``, ``weight``
    ``(C_out, C_in, kH, kW)``, ``bias`` ``(C_out,)`` or ``None``, ``stride`` and
    ``padding`` (an int or a pair ``(rows, columns)``), and return ``(B, C_out, H_out, W_out)``
    with ``H_out = (H + 2 * padding - kH) // stride + 1`` (the same for the width).

    Raises:
        AssertionError: naming the first case that fails and what differs.
    """
    if not callable(conv2d):
        raise TypeError(f"check_conv2d expects a function, got {type(conv2d).__name__}")
    generator = torch.Generator().manual_seed(0)
    for batch, c_in, height, width, c_out, kernel, stride, padding, has_bias in _CONV2D_CASES:
        kernel_h, kernel_w = _pair(kernel)
        images = torch.randn(batch, c_in, height, width, generator=generator)
        weight = torch.randn(c_out, c_in, kernel_h, kernel_w, generator=generator)
        bias = torch.randn(c_out, generator=generator) if has_bias else None
        case = (f"images {tuple(images.shape)}, weight {tuple(weight.shape)}, bias {'yes' if has_bias else 'None'}, "
                f"stride={stride}, padding={padding}")
        expected = F.conv2d(images, weight, bias, stride=stride, padding=padding)
        try:
            got = conv2d(images.clone(), weight.clone(), None if bias is None else bias.clone(), stride, padding)
        except Exception as error:
            raise AssertionError(f"conv2d raised {error.__class__.__name__}: {error}\n  case: {case}") from error
        if not isinstance(got, torch.Tensor):
            raise AssertionError(f"conv2d must return a torch.Tensor, got {type(got).__name__}\n  case: {case}")
        if tuple(got.shape) != tuple(expected.shape):
            # Name the dimensions that are off, not the expected shape: computing H_out is part of the exercise.
            if got.dim() != expected.dim():
                off = f"{got.dim()} dimensions instead of 4 (B, C_out, H_out, W_out)"
            else:
                off = ", ".join(f"{axis} {'too small' if size < want else 'too large'}" for axis, size, want in
                                zip(("batch", "channels", "height", "width"), got.shape, expected.shape) if size != want)
            raise AssertionError(
                f"wrong output shape {tuple(got.shape)}: {off}\n  case: {case}\n"
                f"  hint: H_out = (H + 2 * padding - kH) // stride + 1; pad both sides before sliding the kernel"
            )
        difference = (got.double() - expected.double()).abs().max().item()
        if not difference <= atol:
            hint = ""
            if bias is not None and torch.allclose(got.double(), (expected - bias.view(1, -1, 1, 1)).double(), atol=atol):
                hint = "\n  hint: the bias is missing (add bias[c] to every value of output channel c)"
            elif torch.allclose(got.double(), F.conv2d(images, weight.flip(2, 3), bias, stride=stride,
                                                       padding=padding).double(), atol=atol):
                hint = "\n  hint: you flipped the kernel (true convolution); deep learning's conv is a cross-correlation"
            raise AssertionError(f"values differ from F.conv2d by up to {difference:.3g} (tolerance {atol})\n  case: {case}{hint}")
    if verbose:
        print(f"All checks passed ({len(_CONV2D_CASES)} cases against torch.nn.functional.conv2d).")
