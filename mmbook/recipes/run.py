"""``Run``: a trained model and its numbers, what every recipe returns."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from mmbook.training import History


@dataclass
class Run:
    """A trained model and its numbers: what every recipe in :mod:`mmbook.recipes` returns.

    Attributes:
        model: the trained model.
        history: its :class:`History` (for a recipe with several stages, the last stage's).
        metrics: final figures by name, e.g. ``{"test_accuracy": 0.78}``; a recipe documents its keys.
    """

    model: nn.Module
    history: History
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        """Final test accuracy in ``[0, 1]``: ``metrics["test_accuracy"]``, else the last epoch's."""
        if "test_accuracy" in self.metrics:
            return float(self.metrics["test_accuracy"])
        return float(self.history.last["test_accuracy"])

    @property
    def seconds(self) -> float:
        """Training time of all stages (evaluation excluded)."""
        return float(self.metrics.get("train_seconds", self.history.train_seconds))

    @property
    def parameters(self) -> int:
        """Number of parameters of the model, trainable and frozen."""
        return sum(p.numel() for p in self.model.parameters())
