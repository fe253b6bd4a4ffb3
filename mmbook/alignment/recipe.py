"""The recipe behind ``mmbook train --task scene-retrieval``: scene-caption pairs, a two-tower model, its report."""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch

from mmbook.alignment.compositional import swap_accuracy
from mmbook.alignment.geometry import modality_gap
from mmbook.alignment.losses import contrastive_loss, in_batch_accuracy, negclip_loss, sigmoid_contrastive_loss
from mmbook.alignment.model import INIT_TEMPERATURE, TwoTower, clamp_logit_scale_, contrastive_parameter_groups
from mmbook.alignment.retrieval import embed, embed_images, embed_texts, retrieval_report
from mmbook.alignment.zero_shot import class_embeddings, zero_shot_accuracy
from mmbook.runtime import evaluating

#: The losses of ``train_scene_retrieval(loss=...)``.
LOSSES = {"info_nce": contrastive_loss, "sigmoid": sigmoid_contrastive_loss}

# 30% of the training captions leave out sizes and places, so that a caption can often be matched only by
# the classes it names and the model cannot get by on layout alone. Measured in full mode (6000 scenes,
# 8 epochs, one seed each), zero-shot accuracy / text-to-image recall@10: dropout 0.15: 0.21 / 0.67;
# 0.3: 0.22 / 0.66 (0.5, 6 epochs: 0.25 / 0.43).
TRAIN_LAYOUT_DROPOUT = 0.3
# Quick and full defaults of train_scene_retrieval (the CLI reads them).
RETRIEVAL_DEFAULTS: dict[bool, dict[str, Any]] = {
    False: {"scenes": 6000, "test_scenes": 1000, "zero_shot_scenes": 3000, "epochs": 8, "batch_size": 128, "lr": 3e-3},
    True: {"scenes": 2000, "test_scenes": 300, "zero_shot_scenes": 600, "epochs": 5, "batch_size": 64, "lr": 3e-3},
}


def scene_pairs(split: str, count: int, *, seed: int = 0, quick: bool = False, caption_seed: int | None = None,
                exclude_classes: Sequence[int] = (), layout_dropout: float | None = None, download: bool = False,
                progress: bool = False, hard_negatives: bool = False, root: Path | str | None = None):
    """Scenes with their :func:`~mmbook.data.scene_captions.describe_scenes` captions, ready for a loader.

    Args:
        split: ``"train"`` or ``"test"``.
        count: scenes to generate (fewer are returned when ``exclude_classes`` drops some).
        exclude_classes: drop every scene that holds one of these CIFAR-10 classes.
        root: the data directory (default ``$MMBOOK_DATA``).
        layout_dropout: share of captions without sizes and places; default :data:`TRAIN_LAYOUT_DROPOUT`
            for training scenes (so that the model must learn the classes, not only the layout) and 0 for
            test scenes (every test caption is complete).

        hard_negatives: add ``"hard_text"``, one swapped (false) caption per pair
            (:func:`~mmbook.data.scene_negatives.hard_negative_captions`), for :func:`negclip_loss`.

    Returns:
        ``(scenes, captions, tensors)``: the :class:`~mmbook.data.scenes.SceneSet`, the ``N`` captions,
        and the loader dict ``{"image": uint8 (N, 3, 64, 64), "text": (N, T), "classes": (N, 4),
        "label": (N,)}`` (and ``"hard_text": (N, T')``) where ``label`` is the class of the first object.
    """
    from mmbook.data.scene_captions import describe_scenes, encode_captions
    from mmbook.data.scenes import load_scenes

    scenes = load_scenes(split, count, seed=seed, quick=quick, root=root, download=download, progress=progress)
    if exclude_classes:
        keep = ~torch.isin(scenes.classes, torch.tensor(list(exclude_classes))).any(dim=1)
        scenes = scenes.subset(keep)
    if layout_dropout is None:
        layout_dropout = TRAIN_LAYOUT_DROPOUT if split == "train" else 0.0
    caption_seed = seed + (7 if split == "test" else 0) if caption_seed is None else caption_seed
    if hard_negatives:
        from mmbook.data.scene_negatives import hard_negative_captions

        captions, negatives = hard_negative_captions(scenes, seed=caption_seed, layout_dropout=layout_dropout)
    else:
        captions = describe_scenes(scenes, seed=caption_seed, layout_dropout=layout_dropout)
    tensors = {"image": scenes.images, "text": encode_captions(captions), "classes": scenes.classes,
               "label": scenes.classes[:, 0]}
    if hard_negatives:
        tensors["hard_text"] = encode_captions(negatives)
    return scenes, captions, tensors


def single_object(scenes, tensors: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The scenes with exactly one object: their uint8 images ``(M, 3, 64, 64)`` and class labels ``(M,)``."""
    keep = scenes.counts == 1
    return tensors["image"][keep], scenes.classes[keep, 0]


# Sweeps train many models on the same scenes: the data of a run is built once per process (it is
# deterministic given these arguments, and nothing downstream changes it).
@functools.lru_cache(maxsize=4)
def _training_pairs(count: int, seed: int, quick: bool, hard_negatives: bool, root, download: bool) -> dict:
    return scene_pairs("train", count, seed=seed, quick=quick, download=download, hard_negatives=hard_negatives,
                       root=root)[2]


@functools.lru_cache(maxsize=4)
def _evaluation_sets(test_scenes: int, zero_shot_scenes: int, seed: int, quick: bool, root, download: bool):
    """The test gallery (scenes, captions, tensors, every true description, the swap benchmark) and the
    single-object zero-shot images and labels."""
    from mmbook.data.scene_captions import caption_relevance_to_scenes
    from mmbook.data.scene_negatives import swap_benchmark

    test_set, test_captions, test_tensors = scene_pairs("test", test_scenes, seed=seed, quick=quick, download=download,
                                                        root=root)
    zs_scenes, _, zs_tensors = scene_pairs("test", zero_shot_scenes, seed=seed + 100, quick=quick, download=download,
                                           root=root)
    zs_images, zs_labels = single_object(zs_scenes, zs_tensors)
    if len(zs_labels) == 0:
        raise ValueError(f"the {zero_shot_scenes} zero-shot scenes hold no single-object scene; ask for more")
    return (test_set, test_captions, test_tensors, caption_relevance_to_scenes(test_captions, test_set),
            swap_benchmark(test_set, seed=seed), zs_images, zs_labels)


def fit_two_tower(model: TwoTower, loader, loss_fn, *, epochs: int, lr: float, weight_decay: float,
                  device: torch.device, progress: bool, description: str):
    """:func:`mmbook.training.fit` as open_clip trains a two-tower model: no weight decay on the logit scale and
    biases (:func:`contrastive_parameter_groups`), the scale clamped after every step (:func:`clamp_logit_scale_`).

    Returns the :class:`~mmbook.training.History` and the training seconds.
    """
    from mmbook.training import fit

    started = time.perf_counter()
    history = fit(model, loader, epochs=epochs, lr=lr, device=device,
                  parameters=contrastive_parameter_groups(model, weight_decay), loss_fn=loss_fn,
                  accuracy_fn=in_batch_accuracy, after_step=clamp_logit_scale_, progress=progress,
                  description=description)
    return history, time.perf_counter() - started


def train_scene_retrieval(
    *,
    scenes: int | None = None,
    test_scenes: int | None = None,
    zero_shot_scenes: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = False,
    quick: bool = False,
    download: bool = False,
    temperature: float | None = None,
    learn_temperature: bool = True,
    loss: str = "info_nce",
    negatives: int | None = None,
    hard_negatives: bool = False,
    weight_decay: float = 5e-4,
    root: Path | str | None = None,
    init: TwoTower | None = None,
) -> dict[str, Any]:
    """Train a :class:`TwoTower` on scene-caption pairs and measure retrieval and zero-shot accuracy.

    ``None`` arguments take :data:`RETRIEVAL_DEFAULTS` ``[quick]``. Training runs through
    :func:`mmbook.training.fit` with :func:`contrastive_loss` (``loss="info_nce"``) or
    :func:`sigmoid_contrastive_loss` (``loss="sigmoid"``, SigLIP's initialisation: temperature 0.1, bias -10);
    ``negatives`` is the block size of the loss (``None``: the whole batch); ``hard_negatives=True`` trains
    with one swapped caption per pair (:func:`negclip_loss`, InfoNCE only); ``init`` fine-tunes a copy of a
    trained model instead of training a new one (NegCLIP fine-tunes CLIP this way). The logit scale is clamped
    after every step and kept out of weight decay, as in open_clip. The test gallery is ``test_scenes``
    scenes from CIFAR-10 test images, with every true caption of a scene counted as a correct answer
    (:func:`~mmbook.data.scene_captions.caption_relevance_to_scenes`); zero-shot accuracy is measured on
    the single-object scenes of a further test set, with the ensembled
    :data:`~mmbook.data.scene_captions.PROMPT_TEMPLATES`.

    Under torchrun (``mmbook train --nproc N``) each rank trains on its shard of every global batch and the
    loss gathers the embeddings of all ranks, so every pair has ``batch_size - 1`` negatives, as on one
    process; every rank then embeds the whole test gallery (no sharding) and reports the same figures.

    Returns:
        The :func:`retrieval_report` keys (``recall_at_1_text_to_image``, ``recall_at_5_image_to_text``,
        ...), the :func:`~mmbook.alignment.compositional.swap_accuracy` keys on the test gallery
        (``swap_accuracy``, ``swap_accuracy_relation``, ...), plus ``zero_shot_accuracy``, ``zero_shot_chance``, ``zero_shot_images``, ``modality_gap``,
        ``temperature`` (learned), ``shared_test_captions`` (captions used by more than one test scene),
        ``train_scenes``, ``epochs``, ``train_seconds``, and the ``model`` itself with its ``history``.
    """
    from mmbook.data import DeviceLoader
    from mmbook.data.cifar10 import CIFAR10_CLASSES
    from mmbook.data.loaders import CIFAR10_STATS
    from mmbook.data.scene_captions import PROMPT_TEMPLATES, caption_vocabulary, shared_captions
    from mmbook.runtime import pick_device, seed_everything

    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    defaults = RETRIEVAL_DEFAULTS[bool(quick)]
    scenes = defaults["scenes"] if scenes is None else scenes
    test_scenes = defaults["test_scenes"] if test_scenes is None else test_scenes
    zero_shot_scenes = defaults["zero_shot_scenes"] if zero_shot_scenes is None else zero_shot_scenes
    epochs = defaults["epochs"] if epochs is None else epochs
    batch_size = defaults["batch_size"] if batch_size is None else batch_size
    lr = defaults["lr"] if lr is None else lr
    if hard_negatives and (loss != "info_nce" or negatives is not None):
        raise ValueError("hard_negatives=True trains with negclip_loss: InfoNCE over the whole batch (loss='info_nce', "
                         "negatives=None)")
    if negatives is not None and batch_size % negatives:
        raise ValueError(f"negatives={negatives} must divide the batch size {batch_size}")
    device = pick_device(device)
    seed_everything(seed)
    train_tensors = _training_pairs(scenes, seed, quick, hard_negatives, root, download)
    test_set, test_captions, test_tensors, relevant, benchmark, zs_images, zs_labels = _evaluation_sets(
        test_scenes, zero_shot_scenes, seed, quick, root, download)
    sigmoid = loss == "sigmoid"
    if temperature is None:
        temperature = 0.1 if sigmoid else INIT_TEMPERATURE
    if init is None:
        model = TwoTower(len(caption_vocabulary()), temperature=temperature, learn_temperature=learn_temperature,
                         logit_bias=-10.0 if sigmoid else None)
    else:
        if sigmoid != (getattr(init, "logit_bias", None) is not None):
            raise ValueError(f"init was trained for another loss than loss={loss!r} (the sigmoid loss needs a logit bias)")
        model = copy.deepcopy(init)
    # The scenes are made of CIFAR-10 images: both loaders normalize with CIFAR-10's statistics.
    train_loader = DeviceLoader(train_tensors, batch_size, shuffle=True, drop_last=True, device=device, seed=seed,
                                **CIFAR10_STATS)
    history, train_seconds = fit_two_tower(
        model, train_loader, negclip_loss if hard_negatives else partial(LOSSES[loss], negatives=negatives),
        epochs=epochs, lr=lr, weight_decay=weight_decay, device=device, progress=progress,
        description="scene-retrieval")
    # The whole gallery on every rank (rank=0, world_size=1: no sharding), so every rank reports the same figures.
    gallery = DeviceLoader(test_tensors, 500, device=device, rank=0, world_size=1, **CIFAR10_STATS)
    image_embeddings, text_embeddings = embed(model, gallery, device)
    report: dict[str, Any] = retrieval_report(image_embeddings, text_embeddings, test_captions, relevant=relevant)
    report.update(swap_accuracy(model, test_tensors["image"], benchmark))
    classes = class_embeddings(model, CIFAR10_CLASSES, PROMPT_TEMPLATES)
    report.update({
        "zero_shot_accuracy": zero_shot_accuracy(embed_images(model, zs_images), classes, zs_labels),
        "zero_shot_chance": 1.0 / len(CIFAR10_CLASSES),
        "zero_shot_images": int(len(zs_labels)),
        "modality_gap": modality_gap(image_embeddings, text_embeddings),
        "temperature": model.temperature,
        "shared_test_captions": shared_captions(test_captions)["shared"],
        "train_scenes": int(train_tensors["label"].shape[0]),
        "epochs": epochs,
        "loss": "negclip" if hard_negatives else loss,
        "negatives": batch_size - 1 if negatives is None else negatives - 1,
        "train_seconds": train_seconds,
        "final_train_loss": history.last["train_loss"] if len(history) else float("nan"),
        "model": model,
        "history": history,
    })
    return report


# Defaults of train_pairs_retrieval and of ``mmbook train --task pairs-retrieval`` (quick mode: a smoke test).
PAIRS_RETRIEVAL_DEFAULTS: dict[bool, dict[str, Any]] = {
    False: {"epochs": 10, "batch_size": 64, "lr": 3e-3},
    True: {"epochs": 2, "batch_size": 32, "lr": 3e-3},
}


@torch.no_grad()
def _embed_split(model: TwoTower, split, mean: Sequence[float], std: Sequence[float],
                 batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit embeddings of a :class:`~mmbook.data.pairs.PairSplit`'s ``M`` images ``(M, d)`` and ``N`` texts ``(N, d)``."""
    from mmbook.data.loaders import normalize_images

    device = next(model.parameters()).device
    with evaluating(model):
        images = torch.cat([model.encode_image(normalize_images(split.images[i : i + batch_size].to(device), mean, std)).cpu()
                            for i in range(0, len(split.images), batch_size)])
    return images, embed_texts(model, split.tokens, batch_size)


def train_pairs_retrieval(
    data,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = False,
    quick: bool = False,
    loss: str = "info_nce",
    weight_decay: float = 5e-4,
    temperature: float | None = None,
) -> dict[str, Any]:
    """Train a :class:`TwoTower` on your own image-text pairs (no labels needed) and measure retrieval.

    Args:
        data: :func:`mmbook.data.load_pairs` of the pairs, e.g. ``load_pairs("pairs.jsonl", label_column=None,
            test_fraction=0.2)``: its vocabulary sizes the text tower, its image size the image tower (a
            multiple of 8), and its ``mean`` and ``std`` normalise the images. It needs a test split.
        epochs, batch_size, lr: ``None`` takes :data:`PAIRS_RETRIEVAL_DEFAULTS` ``[quick]``.
        loss: ``"info_nce"`` or ``"sigmoid"``.

    Every text of an image is a correct answer for it, and the image is a correct answer for each of its
    texts (a text that several images carry word for word is correct for all of them). In training, two texts of the same image in one batch are counted as negatives of each other (as
    in CLIP's training on data with several captions per image); shuffling makes that rare in large data.

    Returns:
        The :func:`retrieval_report` keys over the test split (``recall_at_10_text_to_image``, ...), plus
        ``modality_gap``, ``temperature``, ``train_texts``, ``train_images``, ``test_texts``, ``test_images``,
        ``epochs``, ``train_seconds``, ``final_train_loss``, the ``model`` and its ``history``.
    """
    from mmbook.data import DeviceLoader
    from mmbook.runtime import pick_device, seed_everything

    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    if data.test is None or len(data.test) == 0:
        raise ValueError("the pairs have no test split: load them with a test file or test_fraction > 0 "
                         "(CLI: --test-file or the task's held-out share)")
    defaults = PAIRS_RETRIEVAL_DEFAULTS[bool(quick)]
    epochs = defaults["epochs"] if epochs is None else epochs
    batch_size = defaults["batch_size"] if batch_size is None else batch_size
    lr = defaults["lr"] if lr is None else lr
    train_texts = len(data.train)
    if train_texts < 2:
        raise ValueError(f"contrastive training needs at least 2 training texts, got {train_texts}")
    batch_size = min(batch_size, train_texts)
    device = pick_device(device)
    seed_everything(seed)
    sigmoid = loss == "sigmoid"
    temperature = (0.1 if sigmoid else INIT_TEMPERATURE) if temperature is None else temperature
    model = TwoTower(len(data.vocab), image_size=data.image_size, temperature=temperature,
                     logit_bias=-10.0 if sigmoid else None)
    loader = DeviceLoader(data.train.tensors(), batch_size, shuffle=True, drop_last=True, device=device, seed=seed,
                          mean=data.mean, std=data.std)
    history, train_seconds = fit_two_tower(model, loader, LOSSES[loss], epochs=epochs, lr=lr,
                                           weight_decay=weight_decay, device=device, progress=progress,
                                           description="pairs-retrieval")
    image_embeddings, text_embeddings = _embed_split(model, data.test, data.mean, data.std)
    # (texts, images): a text is correct for every image that has that text, word for word, among its own texts.
    images_of: dict[str, set[int]] = {}
    for text, image_id in zip(data.test.texts, data.test.image_ids.tolist()):
        images_of.setdefault(text, set()).add(image_id)
    relevant = torch.zeros(len(data.test), len(data.test.images), dtype=torch.bool)
    for t, text in enumerate(data.test.texts):
        relevant[t, sorted(images_of[text])] = True
    report: dict[str, Any] = retrieval_report(image_embeddings, text_embeddings, data.test.texts, relevant=relevant)
    report.update({
        "modality_gap": modality_gap(image_embeddings, text_embeddings),
        "temperature": model.temperature,
        "train_texts": train_texts, "train_images": int(len(data.train.images)),
        "test_texts": len(data.test), "test_images": int(len(data.test.images)),
        "epochs": epochs, "batch_size": batch_size, "loss": loss,
        "train_seconds": train_seconds,
        "final_train_loss": history.last["train_loss"] if len(history) else float("nan"),
        "model": model, "history": history,
    })
    return report
