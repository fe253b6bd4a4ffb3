"""``fastcnn``: a fast trainer for the chapter's small CNN on CIFAR-10.

The ideas come from airbench (Jordan, 2024), rewritten here in plain code and
sized for a laptop CPU as much as for a GPU. Each one is here for a reason:

* **The data set lives on the device** (:class:`mmbook.data.DeviceLoader`): no worker
  processes, no per-image Python, one ``randperm`` per epoch, flip and crop of the
  whole batch at once.
* **Large batches** (512): one Python step per 512 images instead of per 4, and
  matrix products big enough to keep every core (or GPU) busy.
* **A whitened first layer**: the 2x2 stem convolution is initialized from the
  eigenvectors of the covariance of 2x2 image patches, scaled so that its outputs are
  uncorrelated with unit variance, and is not trained. The next layers then see
  decorrelated inputs from the first step, which is what lets the net learn in a
  few epochs.
* **A triangular learning-rate schedule** (warm up, then decay linearly to zero)
  with Nesterov SGD: high learning rates early, a cool-down at the end
  (Smith and Topin, 2019).
* **Label smoothing** (0.2): the targets keep a little mass on every class, so the
  network is not pushed toward overconfident logits; it generalizes better in short runs.
* **Mixed precision and channels-last** on GPUs (bf16 autocast; NHWC memory layout
  that cuDNN's tensor-core kernels want). On CPUs, channels-last still helps the
  oneDNN convolutions; bf16 usually does not, so ``amp=None`` turns it on for CUDA only.
* **Test-time augmentation**: average the logits of each test image and its mirror
  image; free accuracy at twice the (small) cost of evaluation.

airbench's other details (alternating flips, Lookahead, a learning rate with non-zero ends,
a whitening bias trained for a few epochs, GELU after the stem, its BatchNorm momentum and
eps, decay on BatchNorm's shifts, weight averaging) were each measured on an H200 and none
moved the accuracy on the JPEG copy beyond the spread between seeds
(``benchmarks/RESULTS.md``), so they are not here.

:func:`mmbook.recipes.train_fastcnn` trains the network with :func:`mmbook.training.fit`;
this module holds the pieces: the settings, the whitened network, and evaluation with
test-time augmentation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from mmbook.cnn import SmallCNN
from mmbook.data.loaders import DeviceLoader, normalize_images
from mmbook.runtime import autocast, evaluating, pick_device


# The recipe for CUDA GPUs, measured with benchmarks/gpu_check.py on an H200 (see
# benchmarks/RESULTS.md): 92.1% test accuracy (six-view TTA) after 10.6 s of training.
# What differs from the CPU defaults, and why:
#   * no pooling after the stem and airbench's pooled blocks: the first convolution sees all
#     31x31 pixels, the second runs after a pool; a GPU has the arithmetic to spare;
#   * 128/512/512 channels and 24 epochs: 64/256/256 for 10 epochs gave 90.4% in 2.6 s;
#   * BatchNorm's scale fixed at 1 and its shift learning 64x faster (airbench), weight decay 1.3e-3;
#   * crops from 4 pixels of padding, since the wider net overfits (99% training accuracy);
#   * batch 1024 at learning rate 1.5.
GPU_RECIPE: dict = {
    "widths": (128, 512, 512), "stem_pool": False, "block": "pooled", "train_norm_scale": False,
    "norm_bias_lr_scale": 64.0, "batch_size": 1024, "epochs": 24, "lr": 1.5, "weight_decay": 1.3e-3,
    "crop_padding": 4, "tta_shift": 1,
}

# A wider, longer recipe for large GPUs: four times GPU_RECIPE's arithmetic per image (widths
# 256/1024/1024), 32 epochs and cutout 12. See benchmarks/RESULTS.md for its measured accuracy.
GPU_RECIPE_93: dict = {**GPU_RECIPE, "widths": (256, 1024, 1024), "epochs": 32, "cutout": 12}

#: The named recipes of :meth:`FastCNNConfig.for_device` and ``mmbook train --recipe``.
RECIPES: dict[str, dict] = {"cpu": {}, "gpu": GPU_RECIPE, "gpu-93": GPU_RECIPE_93}


@dataclass
class FastCNNConfig:
    """Settings of :func:`train_fastcnn`; the defaults are the CPU recipe (see :meth:`for_device`)."""

    epochs: int = 8
    batch_size: int = 512
    lr: float = 0.4
    momentum: float = 0.85
    weight_decay: float = 5e-4
    warmup: float = 0.2
    label_smoothing: float = 0.2
    widths: tuple[int, int, int] = (32, 64, 128)
    stem_pool: bool = True
    block: str = "residual"
    train_norm_scale: bool = True
    norm_bias_lr_scale: float = 1.0
    whiten: bool = True
    crop_padding: int = 2
    cutout: int = 0
    tta: bool = True
    tta_shift: int = 0
    amp: bool | None = None
    channels_last: bool = True
    compile: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive int, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 2:
            raise ValueError(f"batch_size must be an int >= 2 (BatchNorm needs 2 samples), got {self.batch_size!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"warmup is a fraction of training in [0, 1), got {self.warmup}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")
        if not (self.norm_bias_lr_scale > 0 and math.isfinite(self.norm_bias_lr_scale)):
            raise ValueError(f"norm_bias_lr_scale must be positive, got {self.norm_bias_lr_scale}")
        if not isinstance(self.cutout, int) or self.cutout < 0:
            raise ValueError(f"cutout is a square's side in pixels (0 for none), got {self.cutout!r}")
        if not isinstance(self.tta_shift, int) or not 0 <= self.tta_shift <= 4:
            raise ValueError(f"tta_shift is a pixel shift in 0..4, got {self.tta_shift!r}")

    @classmethod
    def for_device(cls, device: torch.device | str | None = None, recipe: str | None = None,
                   **overrides) -> FastCNNConfig:
        """The recipe for ``device``: :data:`GPU_RECIPE` on CUDA, the CPU defaults elsewhere (CPU, MPS).

        ``recipe`` names one of :data:`RECIPES` instead (``"cpu"``, ``"gpu"``, or ``"gpu-93"`` for
        :data:`GPU_RECIPE_93`, which needs a large GPU to be quick). ``overrides`` replace single
        settings, e.g. ``FastCNNConfig.for_device("cuda", epochs=10)``.
        """
        if recipe is None:
            recipe = "gpu" if pick_device(device).type == "cuda" else "cpu"
        if recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {sorted(RECIPES)}, got {recipe!r}")
        return cls(**{**RECIPES[recipe], **overrides})


def patch_whitening_weights(images: torch.Tensor, kernel_size: int = 2, eps: float = 5e-4) -> torch.Tensor:
    """Convolution weights that whiten the ``kernel_size x kernel_size`` patches of ``images``.

    Args:
        images: normalized float images ``(N, C, H, W)``; a few thousand are plenty.
        kernel_size: patch size.
        eps: added to the eigenvalues, so that nearly constant directions are not blown up.

    Returns:
        Weights ``(2 * D, C, k, k)`` with ``D = C * k * k``: the ``D`` whitening filters
        and their negatives (so that a following ReLU/GELU keeps both signs).
    """
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"expected normalized float images (N, C, H, W), got {tuple(images.shape)} {images.dtype}")
    channels = images.shape[1]
    patches = F.unfold(images.float(), kernel_size)  # (N, D, L)
    patches = patches.transpose(1, 2).reshape(-1, channels * kernel_size * kernel_size)  # (N * L, D)
    patches = patches - patches.mean(dim=0)
    covariance = patches.T @ patches / patches.shape[0]  # (D, D)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    filters = eigenvectors.T / torch.sqrt(eigenvalues + eps).view(-1, 1)  # (D, D): row d whitens direction d
    filters = filters.flip(0).view(-1, channels, kernel_size, kernel_size)  # largest variance first
    return torch.cat([filters, -filters])


def build_fastcnn(config: FastCNNConfig, train_images: torch.Tensor | None = None) -> SmallCNN:
    """The small CNN, with its stem whitened on ``train_images`` (uint8 ``(N, 3, 32, 32)``) if asked."""
    stem_channels = 2 * 3 * 2 * 2  # whitening filters and their negatives for 2x2 RGB patches
    model = SmallCNN(widths=config.widths, stem_channels=stem_channels, stem_pool=config.stem_pool, block=config.block)
    if not config.train_norm_scale:
        # BatchNorm's scale stays 1, as in airbench. Before a ReLU the next layer's weights could
        # absorb it anyway (before a GELU nearly so), and fixing it is one less thing to tune.
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.requires_grad_(False)
    if config.whiten:
        if train_images is None:
            raise ValueError("whiten=True needs the training images to compute the whitening filters")
        sample = normalize_images(train_images[:5000].cpu())
        with torch.no_grad():
            model.stem.weight.copy_(patch_whitening_weights(sample, kernel_size=2))
            model.stem.bias.zero_()
        # A fixed whitening layer: training it would undo the decorrelation it gives.
        model.stem.weight.requires_grad_(False)
    return model


def _mirror_logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Logits ``(B, C)`` of ``images`` ``(B, 3, H, W)`` plus those of their mirror images."""
    return model(images).float() + model(images.flip(3)).float()


def _shifted_logits(model: nn.Module, images: torch.Tensor, shift: int) -> torch.Tensor:
    """Mirror logits ``(B, C)`` of ``images`` moved ``shift`` pixels up-left and down-right, summed."""
    height, width = images.shape[-2:]
    padded = F.pad(images, (shift, shift, shift, shift), mode="reflect")
    return sum(_mirror_logits(model, padded[:, :, offset:offset + height, offset:offset + width])
               for offset in (0, 2 * shift))


@torch.no_grad()
def evaluate_images(model: nn.Module, loader: DeviceLoader, tta: bool = False, amp: bool = False,
                    shift: int = 0) -> float:
    """Accuracy of an image network ``(B, 3, 32, 32) -> (B, C)`` over ``loader``.

    ``tta`` averages the logits with those of the mirror images; ``shift > 0`` (with
    ``tta``) also averages in two copies moved by ``shift`` pixels diagonally, each with its
    mirror image: six views in all, the unshifted pair weighted as much as the four others.
    """
    correct, count = 0, 0
    with evaluating(model):
        for batch in loader:
            images, labels = batch["image"], batch["label"]
            with autocast(images.device, amp):
                if not tta:
                    logits = model(images).float()
                elif shift == 0:
                    logits = _mirror_logits(model, images)
                else:
                    logits = _mirror_logits(model, images) + 0.5 * _shifted_logits(model, images, shift)
            correct += int((logits.argmax(dim=1) == labels).sum())
            count += int(labels.shape[0])
    return correct / max(count, 1)


def parameter_groups(model: nn.Module, config: FastCNNConfig) -> list[dict]:
    """The optimizer's parameter groups for ``model`` under ``config``.

    Weight decay on convolution and linear weights only; BatchNorm's scales and shifts stay
    free of it. The shifts may learn faster: airbench multiplies their learning rate by 64
    (``norm_bias_lr_scale``).
    """
    norm_biases = [m.bias for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    norm_bias_ids = {id(p) for p in norm_biases}
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in trainable if p.ndim > 1], "weight_decay": config.weight_decay},
        {"params": [p for p in trainable if p.ndim <= 1 and id(p) not in norm_bias_ids], "weight_decay": 0.0},
        {"params": norm_biases, "weight_decay": 0.0, "lr": config.lr * config.norm_bias_lr_scale},
    ]
