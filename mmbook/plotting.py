"""The book's figures: training curves, image grids with captions, confusion matrices, scenes with boxes."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import torch

from mmbook.data.loaders import CIFAR10_MEAN, CIFAR10_STD

if TYPE_CHECKING:  # for the annotation only
    from mmbook.data.scenes import SceneSet


def plot_history(histories: Mapping[str, object], metrics: Sequence[str] = ("train_loss", "test_accuracy")):
    """Plot metrics against epoch, one line per run.

    Args:
        histories: run name -> :class:`mmbook.training.History`.
        metrics: which columns to plot, one panel each.

    Returns:
        The matplotlib figure.
    """
    figure, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.2), squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        for name, history in histories.items():
            records = [r for r in history.records if metric in r]  # type: ignore[attr-defined]
            axis.plot([r["epoch"] for r in records], [r[metric] for r in records], marker="o", label=name)
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric.replace("_", " "))
        axis.grid(alpha=0.3)
    axes[0][-1].legend()
    figure.tight_layout()
    return figure


def to_displayable(
    images: torch.Tensor, mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD,
) -> torch.Tensor:
    """Images ``(B, 3, H, W)``, uint8 or normalized float -> float ``(B, H, W, 3)`` in ``[0, 1]``.

    Args:
        mean, std: the statistics the float images were normalized with (the loader's
            ``mean`` and ``std``; default CIFAR-10's). uint8 images ignore them.
    """
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    else:
        mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        images = (images.detach().float().cpu() * std + mean).clamp(0, 1)
    return images.permute(0, 2, 3, 1).cpu()


def show_images(
    images: torch.Tensor, titles: Sequence[str] = (), columns: int = 4, width: float = 3.2,
    mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD,
):
    """A grid of images ``(B, 3, H, W)`` with wrapped titles (e.g. label and caption). Returns the figure.

    ``mean`` and ``std`` undo the normalisation of float images (see :func:`to_displayable`).
    """
    images = to_displayable(images, mean, std)
    rows = -(-len(images) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(width * columns, width * 1.15 * rows), squeeze=False)
    for k, axis in enumerate(axes.flat):
        axis.axis("off")
        if k < len(images):
            axis.imshow(images[k])
            if k < len(titles):
                axis.set_title(textwrap.fill(titles[k], 28), fontsize=8)
    figure.tight_layout()
    return figure


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts ``(C, C)``: row = true class, column = predicted class."""
    index = labels.long() * num_classes + predictions.long()
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, num_classes)


def plot_confusion(matrix: torch.Tensor, classes: Sequence[str], title: str = ""):
    """Draw a confusion matrix, normalized per true class. Returns the figure."""
    rates = matrix.float() / matrix.sum(dim=1, keepdim=True).clamp(min=1)
    figure, axis = plt.subplots(figsize=(5.2, 4.6))
    image = axis.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=8)
    axis.set_yticks(range(len(classes)), classes, fontsize=8)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if title:
        axis.set_title(title)
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    return figure


class LivePlot:
    """Loss and accuracy curves, redrawn in place in a notebook after every epoch."""

    def __init__(self) -> None:
        self.handle = None
        self.figure = None

    def update(self, history) -> None:
        """Redraw the curves of ``history`` (a :class:`mmbook.training.History`)."""
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            return
        if get_ipython() is None:
            return
        if self.figure is not None:
            plt.close(self.figure)
        self.figure = plot_history({"model": history})
        if self.handle is None:
            self.handle = display(self.figure, display_id=True)
        else:
            self.handle.update(self.figure)

    def close(self) -> None:
        """Close the figure (the displayed image stays in the notebook)."""
        if self.figure is not None:
            plt.close(self.figure)


def show_scenes(
    scenes: "SceneSet",
    indices: list[int],
    predicted: list[dict[str, torch.Tensor]] | None = None,
    text: str = "expression",
    columns: int = 4,
):
    """Draw scenes with their ground-truth boxes (green) and, optionally, predicted boxes (red).

    Args:
        scenes: the scene set.
        indices: which scenes to draw.
        predicted: one dict per drawn scene with ``boxes`` ``(K, 4)`` and optionally ``labels`` ``(K,)``.
        text: the title under each scene: ``"expression"``, ``"caption"`` or ``"classes"``.
        columns: scenes per row.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.patches as patches

    from mmbook.data.cifar10 import CIFAR10_CLASSES

    rows = -(-len(indices) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.9 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for n, (axis, i) in enumerate(zip(axes.flat, indices)):
        axis.imshow(scenes.images[i].permute(1, 2, 0).numpy())
        count = int(scenes.counts[i])
        for j in range(count):
            x1, y1, x2, y2 = scenes.boxes[i, j].tolist()
            axis.add_patch(patches.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, color="lime", linewidth=1.5))
            if text == "classes":
                axis.text(x1, y1 - 1, CIFAR10_CLASSES[int(scenes.classes[i, j])], color="lime", fontsize=7)
        if predicted is not None:
            for k, box in enumerate(predicted[n]["boxes"].tolist()):
                x1, y1, x2, y2 = box
                axis.add_patch(patches.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, color="red",
                                                 linewidth=1.2, linestyle="--"))
                if "labels" in predicted[n]:
                    axis.text(x1, y2 + 4, CIFAR10_CLASSES[int(predicted[n]["labels"][k])], color="red", fontsize=7)
        title = {"expression": scenes.expressions[i], "caption": scenes.captions[i]}.get(text, "")
        axis.set_title(textwrap.fill(title, 28), fontsize=8)
    figure.tight_layout()
    return figure
