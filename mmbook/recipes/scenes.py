"""The objectives chapter's recipe: detection, grounding or role tagging on synthetic scenes."""

from __future__ import annotations

from pathlib import Path

import torch

from mmbook.data import AugmentedLoader, DeviceLoader
from mmbook.data.loaders import CIFAR10_STATS
from mmbook.data.scenes import load_scenes, scene_vocabulary
from mmbook.objectives.tasks import build_scene_task, scene_metrics
from mmbook.runtime import pick_device, seed_everything
from mmbook.recipes.run import Run
from mmbook.training import fit


def train_scene_task(
    name: str,
    modalities: str = "image+text",
    *,
    train_count: int,
    test_count: int,
    epochs: int = 8,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    quick: bool = False,
    root: Path | str | None = None,
    download: bool = False,
    device: torch.device | str | None = None,
    progress: bool = True,
    **fit_options,
) -> Run:
    """Load scenes for the scene task ``name`` (:func:`mmbook.objectives.tasks.build_scene_task`), train it, measure it.

    Args:
        name: ``"scene-detection"``, ``"scene-grounding"`` or ``"scene-tagging"``.
        modalities: what the model reads (detection: ``"image"`` only); checked before any data is loaded.
        train_count, test_count: scenes per split, from :func:`mmbook.data.scenes.load_scenes` with the
            task's ``min_objects``.
        seed: seeds the scenes, the weights and the batch order.
        quick, root, download: as in :func:`mmbook.data.scenes.load_scenes`.
        fit_options: passed to :func:`mmbook.training.fit` (e.g. ``amp``, ``checkpoint_dir``, ``resume``).

    Returns:
        A :class:`~mmbook.recipes.Run` whose ``metrics`` hold the task's own metric: ``map50``
        (detection), ``accuracy_iou50`` (grounding), or ``entity_f1`` and ``image_entity_f1`` (tagging).
    """
    device = pick_device(device)
    seed_everything(seed)
    task = build_scene_task(name, modalities, len(scene_vocabulary()))
    train, test = (load_scenes(split, count, seed=seed, quick=quick, min_objects=task.min_objects, root=root,
                               download=download, progress=progress)
                   for split, count in (("train", train_count), ("test", test_count)))
    # The scenes are made of CIFAR-10 images: they are normalized with CIFAR-10's statistics.
    train_loader = DeviceLoader(train.tensors(), batch_size, shuffle=True, device=device, seed=seed, **CIFAR10_STATS)
    if task.augment is not None:
        train_loader = AugmentedLoader(train_loader, task.augment)
    test_loader = DeviceLoader(test.tensors(), 500, device=device, **CIFAR10_STATS)
    history = fit(task.model, train_loader, test_loader, epochs=epochs, lr=lr, device=device, progress=progress,
                  loss_fn=task.loss_fn, accuracy_fn=task.accuracy_fn, description=name,
                  extra_state={"task": name, "modalities": modalities}, **fit_options)
    # The task's own metric on the whole test set in every process (rank 0 reports it).
    whole_test = DeviceLoader(test.tensors(), 500, device=device, rank=0, world_size=1, **CIFAR10_STATS)
    return Run(task.model, history, scene_metrics(task, whole_test) if len(history) else {})
