"""Objectives: each is a head (a model), a loss and a metric, trainable with :func:`mmbook.training.fit`.

=================  ==========================  ==========================  ===============================
objective          model                       loss (``loss_fn``)          metric
=================  ==========================  ==========================  ===============================
classification     ``captioned_cifar_model``   cross-entropy (+ smoothing)  accuracy, :func:`expected_calibration_error`
detection          :class:`GridDetector`       :func:`detection_loss`      :func:`mean_average_precision` (mAP@0.5)
grounding          :class:`GroundingModel`     :func:`grounding_loss`      :func:`grounding_accuracy` (IoU >= 0.5)
role tagging       :class:`SceneTagger`        :func:`tagging_loss`        :func:`entity_scores` (entity F1)
=================  ==========================  ==========================  ===============================
"""

from mmbook.objectives.backbone import LargeSceneBackbone, SceneBackbone, coordinate_channels
from mmbook.objectives.calibration import calibration_bins, expected_calibration_error, plot_reliability
from mmbook.objectives.checks import check_entity_f1, check_iou
from mmbook.objectives.detection import (
    GridDetector,
    average_precision,
    decode_boxes,
    decode_detections,
    detection_accuracy,
    detection_loss,
    flip_scenes,
    grid_targets,
    ground_truth_list,
    match_detections,
    mean_average_precision,
)
from mmbook.objectives.grounding import (
    FiLM,
    GroundingModel,
    grounding_accuracy,
    grounding_boxes,
    grounding_loss,
)
from mmbook.objectives.tagging import (
    SceneTagger,
    bio_spans,
    decode_tags,
    entity_scores,
    tagging_accuracy,
    tagging_loss,
)

__all__ = [
    "FiLM", "GridDetector", "GroundingModel", "LargeSceneBackbone", "SceneBackbone", "SceneTagger",
    "average_precision", "bio_spans", "calibration_bins", "check_entity_f1", "check_iou", "coordinate_channels",
    "decode_boxes", "decode_detections", "decode_tags", "detection_accuracy", "detection_loss",
    "entity_scores", "expected_calibration_error", "flip_scenes", "grid_targets", "ground_truth_list", "grounding_accuracy",
    "grounding_boxes", "grounding_loss", "match_detections", "mean_average_precision", "plot_reliability",
    "tagging_accuracy", "tagging_loss",
]
