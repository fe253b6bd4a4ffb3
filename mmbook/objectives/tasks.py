"""The scene objectives as named tasks, for :func:`mmbook.recipes.train_scene_task` and notebooks.

Each task bundles what :func:`mmbook.training.fit` needs (a model, ``loss_fn``, ``accuracy_fn``)
with the data it trains on and its own metric.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from mmbook.objectives.detection import (
    GridDetector,
    decode_detections,
    detection_accuracy,
    detection_loss,
    flip_scenes,
    ground_truth_list,
    mean_average_precision,
)
from mmbook.objectives.grounding import GroundingModel, grounding_accuracy, grounding_loss
from mmbook.objectives.tagging import SceneTagger, decode_tags, entity_scores, tagging_accuracy, tagging_loss
from mmbook.runtime import evaluating

SCENE_TASKS = ("scene-detection", "scene-grounding", "scene-tagging")


@dataclass
class SceneTask:
    """A model with its loss and accuracy, the fewest objects its scenes need, and its training augmentation.

    ``augment(batch, generator) -> batch`` (or ``None``) is applied to training batches,
    e.g. through :class:`mmbook.data.AugmentedLoader`.
    """

    name: str
    model: nn.Module
    loss_fn: Callable
    accuracy_fn: Callable
    min_objects: int
    augment: Callable | None = None


def build_scene_task(name: str, modalities: str = "image+text", vocab_size: int | None = None, width: int = 32) -> SceneTask:
    """Build task ``name`` (one of :data:`SCENE_TASKS`).

    Args:
        modalities: ``"image"``, ``"text"`` or ``"image+text"`` for grounding; tagging takes
            ``"text"`` or ``"image+text"``; detection reads the image only.
        vocab_size: size of the scene vocabulary (grounding and tagging).
    """
    if name == "scene-detection":
        if modalities != "image":
            raise ValueError("scene-detection reads the image only: use --modalities image")
        return SceneTask(name, GridDetector(10, width), detection_loss, detection_accuracy, 1, augment=flip_scenes)
    if vocab_size is None:
        raise ValueError(f"{name} needs the vocabulary size")
    if name == "scene-grounding":
        # Referring needs distractors: grounding scenes hold 2 to 4 objects.
        return SceneTask(name, GroundingModel(vocab_size, modalities, width), grounding_loss, grounding_accuracy, 2)
    if name == "scene-tagging":
        from mmbook.data.scenes import TAGS

        return SceneTask(name, SceneTagger(vocab_size, len(TAGS), modalities, width=width),
                         tagging_loss, tagging_accuracy, 1)
    raise ValueError(f"unknown scene task {name!r}; expected one of {SCENE_TASKS}")


@torch.no_grad()
def scene_metrics(task: SceneTask, loader: Iterable[Mapping[str, torch.Tensor]]) -> dict[str, float]:
    """The task's own metric over ``loader``: ``map50`` (detection), ``accuracy_iou50`` (grounding),
    or ``entity_f1`` and ``image_entity_f1`` (tagging: all tags, and the image-dependent ones)."""
    from mmbook.data.scenes import IMAGE_TAG_TYPES, TAGS

    model = task.model
    device = next(model.parameters()).device
    detections, truths, true_tags, predicted_tags = [], [], [], []
    correct, count = 0, 0
    with evaluating(model):
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            output = model(batch)
            if task.name == "scene-detection":
                detections += [{k: v.cpu() for k, v in d.items()} for d in decode_detections(output)]
                truths += ground_truth_list(batch["boxes"].cpu(), batch["classes"].cpu())
            elif task.name == "scene-grounding":
                right, seen = grounding_accuracy(output, batch)
                correct, count = correct + int(right), count + seen
            else:
                true_tags += decode_tags(batch["tags"].cpu(), batch["tags"].cpu(), TAGS)
                predicted_tags += decode_tags(output.argmax(-1).cpu(), batch["tags"].cpu(), TAGS)
    if task.name == "scene-detection":
        return {"map50": float(mean_average_precision(detections, truths, 10)["map"])}
    if task.name == "scene-grounding":
        return {"accuracy_iou50": correct / max(count, 1)}
    return {"entity_f1": entity_scores(true_tags, predicted_tags)["f1"],
            "image_entity_f1": entity_scores(true_tags, predicted_tags, IMAGE_TAG_TYPES)["f1"]}
