"""The CNN chapter's fast trainer: the whitened small CNN of :mod:`mmbook.fastcnn`, trained by ``fit``."""

from __future__ import annotations

import torch

from mmbook.cnn import ImageClassifier
from mmbook.data.loaders import DeviceLoader
from mmbook.fastcnn import FastCNNConfig, build_fastcnn, evaluate_images, parameter_groups
from mmbook.runtime import pick_device, resolve_amp, seed_everything
from mmbook.recipes.run import Run
from mmbook.training import fit


def train_fastcnn(
    train: dict[str, torch.Tensor],
    test: dict[str, torch.Tensor] | None = None,
    config: FastCNNConfig | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> Run:
    """Train the chapter's small CNN fast (see :mod:`mmbook.fastcnn` for what makes it fast).

    Args:
        train: ``{"image": uint8 (N, 3, 32, 32), "label": int64 (N,)}``, e.g. from
            ``load_cifar10("train")`` as ``{"image": s.images, "label": s.labels}``.
        test: the same for the test images; ``None`` skips evaluation.
        config: the recipe; default :class:`~mmbook.fastcnn.FastCNNConfig` (the CPU recipe).
        device, progress: as in :func:`mmbook.training.fit`.

    Returns:
        A :class:`~mmbook.recipes.Run` whose model is the :class:`~mmbook.cnn.SmallCNN` (in eval mode)
        and whose ``metrics`` hold ``test_accuracy`` (no test-time augmentation) and
        ``test_accuracy_tta`` (mirror images, and shifted copies if ``config.tta_shift > 0``;
        only if ``config.tta``), when ``test`` is given.
    """
    config = config or FastCNNConfig()
    for name, tensors in (("train", train), ("test", test)):
        if tensors is None:
            continue
        if "image" not in tensors or "label" not in tensors:
            raise KeyError(f"{name} must be a dict with 'image' (N, 3, 32, 32) uint8 and 'label' (N,) entries")
        if tensors["image"].dtype != torch.uint8:
            raise TypeError(f"{name}['image'] must be uint8 images 0..255, got {tensors['image'].dtype}")
    device = pick_device(device)
    amp = resolve_amp(config.amp, device)
    if device.type == "cuda":
        # Every training batch has the same shape (drop_last): cuDNN may time its algorithms once and keep the fastest.
        torch.backends.cudnn.benchmark = True
    seed_everything(config.seed)
    network = build_fastcnn(config, train["image"])
    train_loader = DeviceLoader(train, config.batch_size, shuffle=True, augment=True, device=device, seed=config.seed,
                                drop_last=True, channels_last=config.channels_last, crop_padding=config.crop_padding,
                                cutout=config.cutout)
    history = fit(ImageClassifier(network), train_loader, epochs=config.epochs, optimizer="sgd",
                  parameters=parameter_groups(network, config), lr=config.lr, momentum=config.momentum,
                  warmup=config.warmup, label_smoothing=config.label_smoothing, device=device, amp=amp,
                  channels_last=config.channels_last, compile=config.compile, progress=progress,
                  description="fastcnn")
    network.eval()
    metrics: dict[str, float] = {}
    if test is not None:
        # Every process evaluates the whole test set (rank 0 reports), so the figures do not depend on --nproc.
        test_loader = DeviceLoader(test, 1000, device=device, channels_last=config.channels_last, rank=0, world_size=1)
        metrics["test_accuracy"] = evaluate_images(network, test_loader, tta=False, amp=amp)
        if config.tta:
            metrics["test_accuracy_tta"] = evaluate_images(network, test_loader, tta=True, amp=amp,
                                                           shift=config.tta_shift)
    return Run(network, history, metrics)
