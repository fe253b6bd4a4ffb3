"""Detection: a single-stage grid detector, its loss, decoding with NMS, and average precision.

The detector divides a 64x64 scene into an 8x8 grid of 8-pixel cells. The cell that
holds an object's centre is responsible for it and predicts, from its feature vector:

- an objectness logit (is an object centred here?),
- the box: centre offset inside the cell (two sigmoids) and width and height as
  fractions of the canvas (two sigmoids),
- class logits.

This is the YOLO recipe (Redmon et al., 2016) with one box per cell, which is enough
because objects in the scenes do not overlap (so no two centres share a cell).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import batched_nms, box_iou, generalized_box_iou_loss

from mmbook.data.scenes import CANVAS
from mmbook.objectives.backbone import SceneBackbone


class GridDetector(nn.Module):
    """Backbone plus a 1x1-convolution head: ``batch["image"]`` -> ``(B, 5 + C, S, S)``.

    Channels of the output: ``[objectness, tx, ty, tw, th, class logits...]`` (see :func:`decode_boxes`).

    Args:
        num_classes: number of object classes.
        width: backbone width.
    """

    def __init__(self, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = SceneBackbone(width)
        channels = self.backbone.out_channels
        self.head = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(channels, 5 + num_classes, 1))

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Batch dict with ``image`` ``(B, 3, 64, 64)`` -> raw outputs ``(B, 5 + C, 8, 8)``."""
        return self.head(self.backbone(batch["image"]))


def flip_scenes(batch: Mapping[str, torch.Tensor], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Mirror a random half of the scenes left-right, boxes included: training augmentation for detection.

    A flipped cat is still a cat, so flipping doubles the variety of objects the detector
    sees for free; its boxes must be mirrored too, ``x -> W - x`` (and ``x1``, ``x2`` swap).

    Args:
        batch: ``image`` ``(B, 3, H, W)``, ``boxes`` ``(B, K, 4)`` ``(x1, y1, x2, y2)`` pixels and
            ``classes`` ``(B, K)`` (``-1`` for empty slots, which are left as they are).
        generator: random generator on the batch's device.

    Returns:
        A new batch dict; other keys pass through unchanged.
    """
    images, boxes = batch["image"], batch["boxes"]
    width = images.shape[-1]
    flip = torch.rand(images.shape[0], device=images.device, generator=generator) < 0.5  # (B,)
    mirrored = torch.stack([width - boxes[..., 2], boxes[..., 1], width - boxes[..., 0], boxes[..., 3]], dim=-1)
    flip_box = flip.view(-1, 1, 1) & (batch["classes"] >= 0).unsqueeze(-1)  # (B, K, 1)
    return {**batch, "image": torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images),
            "boxes": torch.where(flip_box, mirrored, boxes)}


def decode_boxes(raw: torch.Tensor) -> torch.Tensor:
    """Boxes of every cell from the four box channels ``(B, 4, S, S)`` -> ``(B, S, S, 4)`` ``(x1, y1, x2, y2)`` pixels."""
    size = raw.shape[-1]
    cell = CANVAS / size
    grid = torch.arange(size, device=raw.device, dtype=raw.dtype)
    cx = (grid.view(1, 1, -1) + torch.sigmoid(raw[:, 0])) * cell
    cy = (grid.view(1, -1, 1) + torch.sigmoid(raw[:, 1])) * cell
    w = torch.sigmoid(raw[:, 2]) * CANVAS
    h = torch.sigmoid(raw[:, 3]) * CANVAS
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def centre_cells(boxes: torch.Tensor, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid row and column ``(...,)`` of the centre of boxes ``(..., 4)``."""
    cell = CANVAS / size
    cx = (boxes[..., 0] + boxes[..., 2]) / 2
    cy = (boxes[..., 1] + boxes[..., 3]) / 2
    return (cy / cell).long().clamp(0, size - 1), (cx / cell).long().clamp(0, size - 1)


def grid_targets(boxes: torch.Tensor, classes: torch.Tensor, size: int = 8) -> dict[str, torch.Tensor]:
    """Per-cell targets from ground truth.

    Args:
        boxes: ``(B, K, 4)`` pixels; classes: ``(B, K)`` with ``-1`` for padding rows.

    Returns:
        ``objectness`` ``(B, S, S)`` float 0/1, ``boxes`` ``(B, S, S, 4)`` and ``classes`` ``(B, S, S)``
        (``-100`` in cells without an object, ignored by ``cross_entropy``).
    """
    batch = boxes.shape[0]
    objectness = torch.zeros(batch, size, size, device=boxes.device)
    target_boxes = torch.zeros(batch, size, size, 4, device=boxes.device)
    target_classes = torch.full((batch, size, size), -100, dtype=torch.long, device=boxes.device)
    b, k = torch.nonzero(classes >= 0, as_tuple=True)
    rows, cols = centre_cells(boxes[b, k], size)
    objectness[b, rows, cols] = 1.0
    target_boxes[b, rows, cols] = boxes[b, k].float()
    target_classes[b, rows, cols] = classes[b, k]
    return {"objectness": objectness, "boxes": target_boxes, "classes": target_classes}


def detection_loss(output: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Objectness BCE over all cells + (GIoU loss + L1) on boxes + class cross-entropy, the last two at object cells."""
    targets = grid_targets(batch["boxes"], batch["classes"], output.shape[-1])
    objectness_loss = F.binary_cross_entropy_with_logits(output[:, 0], targets["objectness"])
    mask = targets["objectness"] > 0
    predicted = decode_boxes(output[:, 1:5])[mask]  # (P, 4)
    wanted = targets["boxes"][mask]
    box_loss = generalized_box_iou_loss(predicted, wanted, reduction="mean") + F.l1_loss(predicted, wanted) / 8
    class_logits = output[:, 5:].permute(0, 2, 3, 1)  # (B, S, S, C)
    class_loss = F.cross_entropy(class_logits.reshape(-1, class_logits.shape[-1]), targets["classes"].reshape(-1))
    return objectness_loss * 5 + box_loss + class_loss


@torch.no_grad()
def detection_accuracy(output: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """``(correct, count)``: objects whose cell fires (objectness > 0) with the right class and IoU >= 0.5."""
    targets = grid_targets(batch["boxes"], batch["classes"], output.shape[-1])
    mask = targets["objectness"] > 0
    predicted = decode_boxes(output[:, 1:5])[mask]
    iou = box_iou(predicted, targets["boxes"][mask]).diagonal()
    fires = output[:, 0][mask] > 0
    right_class = output[:, 5:].permute(0, 2, 3, 1)[mask].argmax(dim=1) == targets["classes"][mask]
    return (fires & right_class & (iou >= 0.5)).sum(), int(mask.sum())


@torch.no_grad()
def decode_detections(
    output: torch.Tensor, score_threshold: float = 0.05, nms_iou: float = 0.5, max_detections: int = 20
) -> list[dict[str, torch.Tensor]]:
    """Turn raw outputs ``(B, 5 + C, S, S)`` into detections per image, after per-class NMS.

    A cell's score for class ``c`` is ``sigmoid(objectness) * softmax(class logits)[c]``.

    Returns:
        One dict per image: ``boxes`` ``(K, 4)``, ``scores`` ``(K,)``, ``labels`` ``(K,)``, best first.
    """
    output = output.float()
    boxes = decode_boxes(output[:, 1:5]).flatten(1, 2)  # (B, S*S, 4)
    scores = torch.sigmoid(output[:, :1]) * output[:, 5:].softmax(dim=1)  # (B, C, S, S)
    scores = scores.flatten(2).transpose(1, 2)  # (B, S*S, C)
    results = []
    for image_boxes, image_scores in zip(boxes, scores):
        cell, label = torch.nonzero(image_scores > score_threshold, as_tuple=True)
        kept_scores = image_scores[cell, label]
        kept_boxes = image_boxes[cell].clamp(0, CANVAS)
        keep = batched_nms(kept_boxes, kept_scores, label, nms_iou)[:max_detections]
        results.append({"boxes": kept_boxes[keep], "scores": kept_scores[keep], "labels": label[keep]})
    return results


def ground_truth_list(boxes: torch.Tensor, classes: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """Padded ground truth ``(B, K, 4)``, ``(B, K)`` (``-1`` = none) -> one ``{"boxes", "labels"}`` dict per image."""
    return [{"boxes": b[c >= 0], "labels": c[c >= 0]} for b, c in zip(boxes, classes)]


def average_precision(scores: torch.Tensor, true_positive: torch.Tensor, num_ground_truth: int) -> float:
    """Area under the precision-recall curve of ranked detections (all-point interpolation, as PASCAL VOC 2010+).

    Args:
        scores: ``(D,)`` detection scores.
        true_positive: ``(D,)`` bool, whether each detection matched an unmatched ground truth.
        num_ground_truth: number of ground-truth objects (recall's denominator).

    Returns:
        AP in ``[0, 1]``; ``0.0`` when there are ground truths but no detections.

    Raises:
        ValueError: if ``num_ground_truth`` is 0 (AP is undefined) or the shapes differ.
    """
    if num_ground_truth <= 0:
        raise ValueError("average precision is undefined without ground-truth objects (num_ground_truth must be > 0)")
    if scores.shape != true_positive.shape or scores.ndim != 1:
        raise ValueError(f"scores and true_positive must both be (D,), got {tuple(scores.shape)} and {tuple(true_positive.shape)}")
    if scores.numel() == 0:
        return 0.0
    order = torch.argsort(scores, descending=True, stable=True)
    tp = true_positive[order].double()
    cumulative_tp = torch.cumsum(tp, 0)
    precision = cumulative_tp / torch.arange(1, len(tp) + 1, dtype=torch.float64)
    recall = cumulative_tp / num_ground_truth
    # Precision envelope: the best precision at this recall or any higher recall.
    envelope = torch.flip(torch.cummax(torch.flip(precision, [0]), 0).values, [0])
    recall_steps = torch.diff(recall, prepend=torch.zeros(1, dtype=torch.float64))
    return float((recall_steps * envelope).sum())


def match_detections(
    detections: dict[str, torch.Tensor], ground_truth: dict[str, torch.Tensor], label: int, iou_threshold: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Greedy matching of one image's detections of class ``label``, highest score first.

    Each detection is a true positive if its best-overlapping ground truth of the class
    has IoU >= ``iou_threshold`` and has not been matched already (PASCAL VOC rule).

    Returns:
        ``scores`` ``(D,)``, ``true_positive`` ``(D,)`` bool and the number of ground truths of the class.
    """
    d_mask = detections["labels"] == label
    g_mask = ground_truth["labels"] == label
    scores = detections["scores"][d_mask]
    d_boxes = detections["boxes"][d_mask][torch.argsort(scores, descending=True, stable=True)]
    scores = scores.sort(descending=True, stable=True).values
    g_boxes = ground_truth["boxes"][g_mask]
    tp = torch.zeros(len(scores), dtype=torch.bool)
    if len(g_boxes) and len(d_boxes):
        iou = box_iou(d_boxes.float(), g_boxes.float())
        taken = torch.zeros(len(g_boxes), dtype=torch.bool)
        for i in range(len(d_boxes)):
            best_iou, best = iou[i].max(dim=0)
            if best_iou >= iou_threshold and not taken[best]:
                tp[i] = True
                taken[best] = True
    return scores, tp, int(g_mask.sum())


def mean_average_precision(
    detections: Sequence[dict[str, torch.Tensor]],
    ground_truths: Sequence[dict[str, torch.Tensor]],
    num_classes: int,
    iou_threshold: float = 0.5,
) -> dict[str, object]:
    """mAP at one IoU threshold over a data set.

    Args:
        detections: per image, ``boxes`` ``(D, 4)``, ``scores`` ``(D,)``, ``labels`` ``(D,)``.
        ground_truths: per image, ``boxes`` ``(G, 4)`` and ``labels`` ``(G,)``.
        num_classes: classes ``0..num_classes-1``; classes without ground truth are left out of the mean.
        iou_threshold: the IoU a detection needs to count as correct (0.5 for mAP@0.5).

    Returns:
        ``{"map": float, "per_class": {label: AP}}``.
    """
    if len(detections) != len(ground_truths):
        raise ValueError(f"got detections for {len(detections)} images but ground truth for {len(ground_truths)}")
    per_class: dict[int, float] = {}
    for label in range(num_classes):
        all_scores, all_tp, total = [], [], 0
        for det, gt in zip(detections, ground_truths):
            scores, tp, count = match_detections(det, gt, label, iou_threshold)
            all_scores.append(scores.cpu())
            all_tp.append(tp)
            total += count
        if total > 0:
            per_class[label] = average_precision(torch.cat(all_scores), torch.cat(all_tp), total)
    mean = sum(per_class.values()) / len(per_class) if per_class else float("nan")
    return {"map": mean, "per_class": per_class}
