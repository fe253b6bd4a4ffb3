"""A pretrained, frozen image encoder for the captioners: a scene backbone first trained to classify CIFAR-10 objects.

Captioners are rarely trained from pixels: Show and Tell and Show, Attend and Tell read a CNN
pretrained on ImageNet classification, ClipCap and LLaVA a frozen CLIP image tower. The scenes'
captioners do the same at small scale. :func:`pretrain_backbone` trains the objectives chapter's
:class:`~mmbook.objectives.backbone.SceneBackbone` to classify CIFAR-10 training images, each shrunk
to a random side of 18-30 pixels and pasted on a noisy 32x32 background, as objects appear in the
scenes; the classifier reads the backbone's grid through a global max-pool, so each cell of the grid
learns to say which class it sees. Applied to a 64x64 scene, the backbone gives an 8x8 grid of such
cells, pooled to 4x4 regions: :func:`region_features` ``(N, 16, C)``, computed once and kept fixed while a decoder learns.

Two encoders (:data:`ENCODERS`): the pages read the ``"small"`` one, the objectives chapter's backbone pretrained
for 4 epochs (under a minute on a 2-core CPU); the ``"large"`` one,
:class:`~mmbook.objectives.backbone.LargeSceneBackbone`, sees the pixels at twice the resolution in its first
convolutions, has one stage more and twice the channels in its last two, and is pretrained for 16 epochs (about
six times the cost per image: several minutes on a CPU), for the benchmarks that ask how far better recognition
moves the captions.

:func:`oracle_region_features` gives the same 16 regions as a perfect recogniser would: which classes cover each
region, and how big their objects are, read from the scene's ground truth. A decoder trained on them shows what
captioning would be if recognition were solved, and so how much of a captioner's hallucination is the encoder's.

Learning to recognise the objects from captions alone, in the few minutes a CPU gives a page, left the
decoders nearly blind (they wrote the same caption for every scene): the labels of CIFAR-10 are a far
denser signal than a caption's one mention of each object.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from mmbook.data.cache import atomic_save
from mmbook.data.scenes import noisy_background
from mmbook.objectives.backbone import LargeSceneBackbone, SceneBackbone

#: The image encoders :func:`pretrain_backbone` can train: the pages' ``"small"`` one, and a ``"large"`` one about six
#: times its cost per image (:class:`~mmbook.objectives.backbone.LargeSceneBackbone`) that recognises more objects.
ENCODERS: dict[str, type[nn.Module]] = {"small": SceneBackbone, "large": LargeSceneBackbone}
#: Full (``False``) and quick (``True``) settings of :func:`pretrain_backbone`, per encoder.
PRETRAIN_DEFAULTS = {
    "small": {False: {"epochs": 4, "width": 32, "batch_size": 128, "lr": 4e-3},
              True: {"epochs": 1, "width": 32, "batch_size": 128, "lr": 4e-3}},
    "large": {False: {"epochs": 16, "width": 32, "batch_size": 128, "lr": 4e-3},
              True: {"epochs": 1, "width": 32, "batch_size": 128, "lr": 4e-3}},
}


def shrink_onto_canvas(images: torch.Tensor, seed: int = 0, low: int = 18, high: int = 30) -> torch.Tensor:
    """uint8 ``(N, 3, 32, 32)`` -> uint8 ``(N, 3, 32, 32)``: each image resized to a random side in ``[low, high]``
    and pasted at a random place on a plain noisy background, as :mod:`mmbook.data.scenes` paints its objects."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    size = images.shape[-1]
    generator = torch.Generator().manual_seed(seed)
    n = len(images)
    out = noisy_background(n, size, generator)
    sides = torch.randint(low, high + 1, (n,), generator=generator)
    for side in sides.unique().tolist():
        index = (sides == side).nonzero().squeeze(1)
        resized = F.interpolate(images[index].float(), size=(side, side), mode="bilinear", antialias=True,
                                align_corners=False).round().clamp(0, 255).to(torch.uint8)
        xs = torch.randint(0, size - side + 1, (len(index),), generator=generator).tolist()
        ys = torch.randint(0, size - side + 1, (len(index),), generator=generator).tolist()
        for k, i in enumerate(index.tolist()):
            out[i, :, ys[k] : ys[k] + side, xs[k] : xs[k] + side] = resized[k]
    return out


def check_encoder(encoder: str) -> None:
    """A clear error for an image encoder that is not one of :data:`ENCODERS`."""
    if encoder not in ENCODERS:
        raise ValueError(f"unknown image encoder {encoder!r}; expected one of {', '.join(ENCODERS)}")


class GridClassifier(nn.Module):
    """A backbone of :data:`ENCODERS` and a linear classifier of its max-pooled grid: ``(B, 3, S, S)`` -> ``(B, 10)``."""

    def __init__(self, width: int = 32, classes: int = 10, encoder: str = "small") -> None:
        super().__init__()
        check_encoder(encoder)
        self.backbone = ENCODERS[encoder](width)
        self.classifier = nn.Linear(self.backbone.out_channels, classes)

    def forward(self, batch) -> torch.Tensor:
        return self.classifier(self.backbone(batch["image"]).amax(dim=(2, 3)))


# Bump whenever pretraining changes, so that encoders cached on disk by an older version are retrained.
_CACHE_VERSION = 2


@functools.lru_cache(maxsize=2)
def pretrain_backbone(seed: int = 0, quick: bool = False, root: Path | str | None = None,
                      download: bool = False, encoder: str = "small") -> tuple[nn.Module, dict[str, float]]:
    """Train :class:`GridClassifier` on shrunk CIFAR-10 training images; return its backbone, frozen, and facts.

    ``encoder`` picks the backbone of :data:`ENCODERS` and its :data:`PRETRAIN_DEFAULTS`: the pages read the
    ``"small"`` one; the ``"large"`` one takes several minutes on a CPU and is for benchmarks and exercises.

    The facts: ``pretrain_accuracy`` (CIFAR-10 test images, shrunk the same way), ``pretrain_seconds``,
    ``pretrain_images``, ``pretrain_epochs``. Training is deterministic given ``seed`` and ``quick``, so
    the trained weights are cached in :func:`mmbook.data.cifar10.cache_dir` (the pages of the Generation
    chapter share one encoder) and in memory; delete the file to train it again.
    """
    from mmbook.data.cifar10 import cache_dir

    check_encoder(encoder)
    name = "generation_encoder" + ("" if encoder == "small" else f"_{encoder}")
    path = cache_dir() / f"{name}_v{_CACHE_VERSION}_seed{seed}_{'quick' if quick else 'full'}.pt"
    backbone = ENCODERS[encoder](PRETRAIN_DEFAULTS[encoder][bool(quick)]["width"])
    if path.exists():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            backbone.load_state_dict(saved["backbone"])
            return backbone.eval().requires_grad_(False), dict(saved["facts"])
        except Exception:  # a partial or corrupt file: train again and overwrite it
            path.unlink(missing_ok=True)
    backbone, facts = _pretrain(seed, quick, root, download, encoder)
    # atomic, with a temporary name per process: an interrupted save never leaves a half-written
    # encoder behind, and two kernels that train it at once do not write into one file
    atomic_save({"backbone": backbone.state_dict(), "facts": facts}, path)
    return backbone, facts


def _pretrain(seed: int, quick: bool, root: Path | str | None, download: bool,
              encoder: str) -> tuple[nn.Module, dict[str, float]]:
    from mmbook.data import DeviceLoader
    from mmbook.data.cifar10 import load_cifar10
    from mmbook.data.loaders import CIFAR10_STATS
    from mmbook.runtime import seed_everything
    from mmbook.training import fit

    settings = PRETRAIN_DEFAULTS[encoder][bool(quick)]
    train = load_cifar10("train", quick=quick, root=root, download=download, progress=False)
    test = load_cifar10("test", quick=quick, root=root, download=download, progress=False)
    seed_everything(seed)
    model = GridClassifier(settings["width"], encoder=encoder)
    train_loader = DeviceLoader({"image": shrink_onto_canvas(train.images, seed), "label": train.labels},
                                settings["batch_size"], shuffle=True, drop_last=True, augment=True, seed=seed,
                                **CIFAR10_STATS)
    test_loader = DeviceLoader({"image": shrink_onto_canvas(test.images, seed + 1), "label": test.labels}, 1000,
                               rank=0, world_size=1, **CIFAR10_STATS)
    started = time.perf_counter()
    history = fit(model, train_loader, test_loader, epochs=settings["epochs"], lr=settings["lr"], progress=False,
                  description=f"pretraining the {encoder} image encoder")
    backbone = model.backbone.eval().requires_grad_(False)
    return backbone, {"pretrain_accuracy": history.last["test_accuracy"],
                      "pretrain_seconds": time.perf_counter() - started,
                      "pretrain_images": len(train.labels), "pretrain_epochs": settings["epochs"]}


#: The side of the grid of regions a decoder attends over (16 regions of 16x16 pixels).
REGION_GRID = 4


@torch.no_grad()
def region_features(backbone: nn.Module, images: torch.Tensor, batch_size: int = 500,
                    mirror: bool = False) -> torch.Tensor:
    """uint8 scenes ``(N, 3, 64, 64)`` -> region features ``(N, 16, C)``, row by row.

    The backbone's 8x8 grid is max-pooled to :data:`REGION_GRID` x :data:`REGION_GRID` regions of 16x16
    pixels: an object (18-30 pixels) then spans one to four regions, and a decoder attends over 16 regions
    instead of 64 at every word, which makes its training step several times cheaper.

    ``mirror=True`` averages each region's features with those of the same region in the scene's mirror image
    (flipped left to right, its grid flipped back): test-time flip augmentation, as image classifiers average
    their predictions over flips. It costs a second pass of the backbone; the regions keep their places.
    """
    from mmbook.data.loaders import CIFAR10_STATS, normalize_images

    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 scene images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    device = next(backbone.parameters()).device

    def grid(batch: torch.Tensor) -> torch.Tensor:  # (B, C, 4, 4)
        return F.adaptive_max_pool2d(backbone(normalize_images(batch.to(device), **CIFAR10_STATS)), REGION_GRID)

    chunks = []
    for i in range(0, len(images), batch_size):
        batch = images[i : i + batch_size]
        features = grid(batch)
        if mirror:
            features = (features + grid(batch.flip(-1)).flip(-1)) / 2
        chunks.append(features.flatten(2).transpose(1, 2))
    return torch.cat(chunks).cpu()


#: The channels of :func:`oracle_region_features`: the area share of each CIFAR-10 class, then the size of the objects.
ORACLE_CHANNELS = 11


def oracle_region_features(boxes: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Ground-truth region features, as a perfect recogniser would give them: ``(N, 16, 11)``.

    Args:
        boxes: float ``(N, K, 4)`` ``(x1, y1, x2, y2)`` in pixels of a 64x64 scene (a
            :class:`~mmbook.data.scenes.SceneSet`'s ``boxes``).
        classes: int64 ``(N, K)`` CIFAR-10 labels, ``-1`` for no object.

    Region ``r`` is the ``r``-th 16x16 cell of the 4x4 grid, row by row, as in :func:`region_features`. Its
    channel ``c < 10`` is the share of the region's area covered by an object of class ``c``; channel 10 is the
    sum over the region's objects of that share times the object's side scaled to ``[0, 1]`` over the scenes'
    18-30 pixels, so the size words can be read too. Places come from which regions are covered.
    """
    from mmbook.data.scenes import CANVAS, MAX_SIZE, MIN_SIZE

    if boxes.ndim != 3 or boxes.shape[-1] != 4 or classes.shape != boxes.shape[:2]:
        raise ValueError(f"expected boxes (N, K, 4) and classes (N, K), got {tuple(boxes.shape)} and "
                         f"{tuple(classes.shape)}")
    if int(classes.max()) >= ORACLE_CHANNELS - 1 or int(classes.min()) < -1:
        raise ValueError(f"classes must be CIFAR-10 labels 0..9 or -1 for no object, got {int(classes.min())}.."
                         f"{int(classes.max())}")
    cell = CANVAS // REGION_GRID
    starts = torch.arange(REGION_GRID, dtype=torch.float32) * cell
    boxes = boxes.float()
    # overlap of every object with every column (x) and row (y) of cells: (N, K, 4)
    overlap_x = (torch.minimum(boxes[..., 2:3], starts + cell) - torch.maximum(boxes[..., 0:1], starts)).clamp(min=0)
    overlap_y = (torch.minimum(boxes[..., 3:4], starts + cell) - torch.maximum(boxes[..., 1:2], starts)).clamp(min=0)
    share = overlap_y[..., :, None] * overlap_x[..., None, :] / cell**2  # (N, K, 4 rows, 4 columns)
    share = share.flatten(2) * (classes >= 0).unsqueeze(-1)  # (N, K, 16), no share for padding
    one_hot = F.one_hot(classes.clamp(min=0), ORACLE_CHANNELS - 1).float()  # (N, K, 10)
    side = ((boxes[..., 2] - boxes[..., 0] - MIN_SIZE) / (MAX_SIZE - MIN_SIZE)).unsqueeze(-1)  # (N, K, 1)
    per_object = torch.cat([one_hot, side], dim=-1)  # (N, K, 11)
    return torch.einsum("nkr,nkc->nrc", share, per_object)
