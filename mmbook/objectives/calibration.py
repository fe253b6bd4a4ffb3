"""Calibration of a classifier: does a confidence of 0.8 mean right 80% of the time?

The predictions are split into equal-width bins by confidence (the top softmax
probability). In each bin we compare the mean confidence with the accuracy; the
reliability diagram draws the two, and the expected calibration error (ECE) is
their gap averaged over bins, weighted by how many predictions fall in each
(Guo et al., 2017)::

    ECE = sum_b  |B_b| / N  *  | accuracy(B_b) - confidence(B_b) |
"""

from __future__ import annotations

import torch


def _check(probabilities: torch.Tensor, labels: torch.Tensor, bins: int) -> None:
    if probabilities.ndim != 2:
        raise ValueError(f"expected probabilities of shape (N, C), got {tuple(probabilities.shape)}; apply softmax to logits first")
    if labels.shape != probabilities.shape[:1]:
        raise ValueError(f"expected labels of shape ({probabilities.shape[0]},), got {tuple(labels.shape)}")
    if probabilities.numel() and (float(probabilities.min()) < 0 or not torch.allclose(probabilities.sum(1), torch.ones(()), atol=1e-3)):
        raise ValueError("probabilities must be non-negative and sum to 1 per row; pass logits.softmax(dim=1)")
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive int, got {bins!r}")


def calibration_bins(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> dict[str, torch.Tensor]:
    """Per-bin statistics for a reliability diagram.

    Args:
        probabilities: ``(N, C)`` predicted class probabilities (rows sum to 1).
        labels: ``(N,)`` true labels.
        bins: number of equal-width confidence bins on ``[0, 1]``.

    Returns:
        ``edges`` ``(bins + 1,)``, and per bin ``count``, ``confidence`` (mean top probability)
        and ``accuracy`` (fraction correct), each ``(bins,)``; empty bins have 0 confidence and accuracy.
    """
    _check(probabilities, labels, bins)
    confidence, predicted = probabilities.float().max(dim=1)
    correct = (predicted == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    # Bin b holds confidences in (edges[b], edges[b+1]]; a confidence of exactly 0 goes to bin 0.
    index = (torch.bucketize(confidence, edges, right=False) - 1).clamp(0, bins - 1)
    count = torch.bincount(index, minlength=bins).float()
    confidence_sum = torch.bincount(index, weights=confidence, minlength=bins)
    correct_sum = torch.bincount(index, weights=correct, minlength=bins)
    safe = count.clamp(min=1)
    return {"edges": edges, "count": count, "confidence": confidence_sum / safe, "accuracy": correct_sum / safe}


def expected_calibration_error(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """Expected calibration error of ``(N, C)`` probabilities against ``(N,)`` labels, in ``[0, 1]``."""
    stats = calibration_bins(probabilities, labels, bins)
    total = float(stats["count"].sum())
    if total == 0:
        raise ValueError("no predictions: ECE is undefined for an empty set")
    gap = (stats["accuracy"] - stats["confidence"]).abs()
    return float((stats["count"] / total * gap).sum())


def plot_reliability(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 15, title: str = "", axis=None):
    """Draw a reliability diagram (accuracy per confidence bin against the diagonal); returns the axis."""
    import matplotlib.pyplot as plt

    stats = calibration_bins(probabilities, labels, bins)
    if axis is None:
        _, axis = plt.subplots(figsize=(3.6, 3.4))
    centres = (stats["edges"][:-1] + stats["edges"][1:]) / 2
    width = 1.0 / bins
    filled = stats["count"] > 0
    axis.bar(centres[filled], stats["accuracy"][filled], width=width * 0.95, color="tab:blue", label="accuracy")
    axis.bar(centres[filled], (stats["confidence"] - stats["accuracy"])[filled], bottom=stats["accuracy"][filled],
             width=width * 0.95, color="tab:red", alpha=0.35, label="gap to confidence")
    axis.plot([0, 1], [0, 1], "k--", linewidth=1)
    ece = expected_calibration_error(probabilities, labels, bins)
    axis.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title=f"{title} ECE={ece:.3f}".strip())
    axis.legend(loc="upper left", fontsize=8)
    return axis
