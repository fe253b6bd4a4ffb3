"""The image+text recipe: a classifier of images and texts with any fusion (the worked example's, and your own data's)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from mmbook.data import DeviceLoader
from mmbook.data.loaders import CIFAR10_MEAN, CIFAR10_STD, image_statistics
from mmbook.fusion import ModalityDropout
from mmbook.multimodal import fusion_options_with_defaults, image_text_model
from mmbook.runtime import pick_device, seed_everything
from mmbook.recipes.run import Run
from mmbook.training import fit


def check_labels(train: Mapping[str, torch.Tensor], test: Mapping[str, torch.Tensor], num_classes: int | None) -> int:
    """The number of classes: ``num_classes``, or inferred as ``max(train label) + 1``; checks every label.

    Raises:
        ValueError: a label (train or test) outside ``0 .. num_classes - 1``, before any training.
    """
    for split, tensors in (("train", train), ("test", test)):
        if "label" not in tensors:
            raise KeyError(f"the {split} data has no 'label' entry, got keys {sorted(tensors)}")
    if train["label"].numel() == 0:
        raise ValueError("the training data holds no samples")
    num_classes = int(train["label"].max()) + 1 if num_classes is None else num_classes
    for split, tensors in (("train", train), ("test", test)):
        if tensors["label"].numel() == 0:
            continue
        low, high = int(tensors["label"].min()), int(tensors["label"].max())
        if low < 0 or high >= num_classes:
            raise ValueError(f"the {split} labels run {low}..{high}, outside the head's {num_classes} classes "
                             f"(0..{num_classes - 1}); pass num_classes= the number of classes (e.g. "
                             f"len(data.label_vocab)), and encode test labels with the training label vocabulary")
    return num_classes


def train_image_text(
    train: Mapping[str, torch.Tensor],
    test: Mapping[str, torch.Tensor],
    vocab_size: int,
    modalities: str = "image+text",
    fusion: str = "concat",
    *,
    num_classes: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    feature_size: int = 32,
    augment: bool = False,
    text_encoder: str = "rnn",
    fusion_options: Mapping[str, object] | None = None,
    epochs: int = 3,
    batch_size: int = 128,
    lr: float = 3e-3,
    modality_dropout: float | Sequence[float] = 0.0,
    seed: int = 0,
    device: torch.device | str | None = None,
    channels_last: bool = False,
    **fit_options,
) -> Run:
    """Build ``image_text_model(modalities, fusion=...)`` and train it with :func:`mmbook.training.fit`.

    Args:
        train, test: batch dicts ``{"image": uint8 (N, 3, S, S), "text": (N, T), "label": (N,)}``, or
            with an image table ``{"image": (M, 3, S, S), "image_id": (N,), ...}`` (as
            :meth:`mmbook.data.PairSplit.tensors` returns); every image is stored once.
        vocab_size: text vocabulary size.
        modalities, fusion, text_encoder, feature_size, fusion_options: as in
            :func:`mmbook.multimodal.image_text_model` (``fusion_options`` are the fusion class's keyword
            arguments, e.g. ``{"normalize": False}`` for the GMU of the paper's equations); the image size is read from the images.
        num_classes: number of classes; ``None`` infers it as the largest training label + 1. A
            label outside ``0 .. num_classes - 1`` (train or test) is an error before training.
        mean, std: per-channel image statistics for normalisation, of both loaders; ``None`` computes
            them from the training images (:func:`mmbook.data.image_statistics`).
        augment: random crop and flip of the training images.
        epochs, batch_size, lr: the schedule (one-cycle AdamW, as in :func:`mmbook.training.fit`).
        modality_dropout: if nonzero, wrap the fusion in :class:`mmbook.fusion.ModalityDropout` with this ``p``
            (a float, or one probability per modality, e.g. ``(0.0, 0.5)`` to drop only the text).
        seed: seeds the weights and the batch order.
        device, channels_last, fit_options: passed to ``fit`` (e.g. ``label_smoothing``, ``amp``, ``compile``,
            ``checkpoint_dir``, ``resume``, ``progress``).

    Returns:
        A :class:`~mmbook.recipes.Run`; ``metrics["test_accuracy"]`` is the last epoch's test accuracy.
    """
    num_classes = check_labels(train, test, num_classes)
    image_size = 32
    if "image" in modalities and "image" not in train:
        raise KeyError(f"modalities {modalities!r} read images, but the data has no 'image' entry: {sorted(train)}")
    if "image" in train:
        image_size = int(train["image"].shape[-1])
        if (mean is None or std is None) and train["image"].dtype == torch.uint8:
            mean, std = image_statistics(train["image"])
    normalisation = {"mean": mean, "std": std}
    device = pick_device(device)
    seed_everything(seed)
    model = image_text_model(modalities, vocab_size, num_classes=num_classes, fusion=fusion,
                             text_encoder=text_encoder, feature_size=feature_size, image_size=image_size,
                             fusion_options=fusion_options)
    if (modality_dropout if isinstance(modality_dropout, (int, float)) else sum(modality_dropout)) > 0:
        model.fusion = ModalityDropout(model.fusion, p=modality_dropout)
    history = fit(model, DeviceLoader(train, batch_size, shuffle=True, augment=augment, device=device, seed=seed,
                                      channels_last=channels_last, **normalisation),
                  DeviceLoader(test, 1000, device=device, channels_last=channels_last, **normalisation),
                  epochs=epochs, lr=lr, device=device, channels_last=channels_last,
                  description=f"{modalities} {fusion}",
                  extra_state={"modalities": modalities, "fusion": fusion, "text_encoder": text_encoder,
                               "num_classes": num_classes,
                               # every option, defaults filled in: {} and {"normalize": True} resume each other
                               "fusion_settings": fusion_options_with_defaults(fusion, fusion_options)},
                  **fit_options)
    metrics = {"test_accuracy": history.last["test_accuracy"]} if len(history) else {}
    return Run(model, history, metrics)


def train_captioned(
    train: Mapping[str, torch.Tensor],
    test: Mapping[str, torch.Tensor],
    vocab_size: int,
    modalities: str = "image+text",
    fusion: str = "concat",
    **options,
) -> Run:
    """The worked example's recipe: :func:`train_image_text` with the worked example's model and statistics.

    Branches of 10 features (``captioned_cifar_model``) and CIFAR-10's mean and standard deviation;
    ``options`` are :func:`train_image_text`'s.
    """
    options = {"feature_size": 10, "mean": CIFAR10_MEAN, "std": CIFAR10_STD, **options}
    return train_image_text(train, test, vocab_size, modalities, fusion, **options)
