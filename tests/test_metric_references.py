"""The book's hand-written metrics against reference implementations (torchmetrics, COCO's evaluation).

The chapters write ECE and mAP from scratch to teach them; these tests check them against the
libraries a reader would use instead.
"""

from __future__ import annotations

import pytest
import torch

from mmbook.objectives import expected_calibration_error, mean_average_precision

torchmetrics = pytest.importorskip("torchmetrics")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_expected_calibration_error_matches_torchmetrics(seed):
    from torchmetrics.classification import MulticlassCalibrationError

    generator = torch.Generator().manual_seed(seed)
    probabilities = (torch.randn(500, 10, generator=generator) * 2).softmax(dim=1)
    labels = torch.randint(0, 10, (500,), generator=generator)
    reference = MulticlassCalibrationError(num_classes=10, n_bins=15, norm="l1")(probabilities, labels)
    assert expected_calibration_error(probabilities, labels, bins=15) == pytest.approx(float(reference), abs=1e-6)


def _scenes(seed: int, images: int = 60) -> tuple[list[dict], list[dict]]:
    """Ground truth boxes and noisy detections of them (some shifted, some of the wrong class, some spurious)."""
    generator = torch.Generator().manual_seed(seed)
    detections, truths = [], []
    for _ in range(images):
        count = int(torch.randint(1, 5, (1,), generator=generator))
        corner = torch.rand(count, 2, generator=generator) * 40
        size = 8 + torch.rand(count, 2, generator=generator) * 16
        boxes = torch.cat([corner, corner + size], dim=1)
        labels = torch.randint(0, 3, (count,), generator=generator)
        truths.append({"boxes": boxes, "labels": labels})
        jitter = torch.randn(count, 4, generator=generator) * 1.5
        wrong = torch.rand(count, generator=generator) < 0.2
        spurious = torch.rand(2, 4, generator=generator).sort(dim=1).values * 60
        detections.append({
            "boxes": torch.cat([boxes + jitter, spurious]),
            "scores": torch.cat([0.4 + 0.6 * torch.rand(count, generator=generator),
                                 0.7 * torch.rand(2, generator=generator)]),
            "labels": torch.cat([torch.where(wrong, (labels + 1) % 3, labels), torch.randint(0, 3, (2,), generator=generator)]),
        })
    return detections, truths


@pytest.mark.parametrize("seed", [0, 1])
def test_mean_average_precision_matches_coco_at_iou_half(seed):
    pytest.importorskip("pycocotools")
    from torchmetrics.detection import MeanAveragePrecision

    detections, truths = _scenes(seed)
    ours = mean_average_precision(detections, truths, num_classes=3, iou_threshold=0.5)
    reference = MeanAveragePrecision(iou_thresholds=[0.5], class_metrics=True, backend="pycocotools")
    reference.update(detections, truths)
    coco = reference.compute()
    # COCO interpolates precision at 101 recall points, ours at every recall step (PASCAL VOC 2010+):
    # with ~80 objects per class the two agree to about one hundredth.
    assert ours["map"] == pytest.approx(float(coco["map"]), abs=0.015)
    for label, ap in ours["per_class"].items():
        index = coco["classes"].tolist().index(label)
        assert ap == pytest.approx(float(coco["map_per_class"][index]), abs=0.02)
    assert 0.3 < ours["map"] < 0.95  # a data set where matching matters: neither all right nor all wrong
