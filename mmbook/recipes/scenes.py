"""The objectives chapter's recipe: detection, grounding or role tagging on synthetic scenes."""

from __future__ import annotations

from pathlib import Path

import torch

from mmbook.data import AugmentedLoader, DeviceLoader
from mmbook.data.scenes import SceneSet
from mmbook.objectives.tasks import build_scene_task, scene_metrics
from mmbook.runtime import pick_device, seed_everything
from mmbook.recipes.run import Run
from mmbook.training import fit


def train_scene_task(
    name: str,
    train: SceneSet,
    test: SceneSet,
    modalities: str = "image+text",
    *,
    epochs: int = 8,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    device: torch.device | str | None = None,
    amp: bool | None = None,
    checkpoint_dir: Path | str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> Run:
    """Train the scene task ``name`` (see :func:`mmbook.objectives.tasks.build_scene_task`) and measure it.

    Args:
        name: ``"scene-detection"``, ``"scene-grounding"`` or ``"scene-tagging"``.
        train, test: scenes from :func:`mmbook.data.scenes.load_scenes` (with the task's ``min_objects``).
        modalities: what the model reads (detection: ``"image"`` only).

    Returns:
        A :class:`~mmbook.recipes.Run` whose ``metrics`` hold the task's own metric: ``map50``
        (detection), ``accuracy_iou50`` (grounding), or ``entity_f1`` and ``image_entity_f1`` (tagging).
    """
    device = pick_device(device)
    seed_everything(seed)
    task = build_scene_task(name, modalities, len(train.vocab))
    for split, scenes in (("train", train), ("test", test)):
        if int(scenes.counts.min()) < task.min_objects:
            raise ValueError(f"{name} needs scenes with at least {task.min_objects} objects; the {split} scenes have "
                             f"{int(scenes.counts.min())}. Load them with load_scenes(..., min_objects={task.min_objects})")
    train_loader = DeviceLoader(train.tensors(), batch_size, shuffle=True, device=device, seed=seed)
    if task.augment is not None:
        train_loader = AugmentedLoader(train_loader, task.augment)
    test_loader = DeviceLoader(test.tensors(), 500, device=device)
    history = fit(task.model, train_loader, test_loader, epochs=epochs, lr=lr, device=device, amp=amp,
                  checkpoint_dir=checkpoint_dir, resume=resume, progress=progress, loss_fn=task.loss_fn,
                  accuracy_fn=task.accuracy_fn, description=name,
                  extra_state={"task": name, "modalities": modalities})
    # The task's own metric on the whole test set in every process (rank 0 reports it).
    whole_test = DeviceLoader(test.tensors(), 500, device=device, rank=0, world_size=1)
    return Run(task.model, history, scene_metrics(task, whole_test) if len(history) else {})
