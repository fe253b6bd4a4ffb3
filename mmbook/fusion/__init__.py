"""Fusion: combine a list of modality features into one tensor.

Every fusion module has the same interface, so any of them can sit in
:class:`mmbook.multimodal.MultimodalModel`::

    fusion(features: list[Tensor (B, D_i)]) -> Tensor (B, fusion.out_features)

``out_features`` is known at construction from the input sizes, so the head that
follows can be built to match. Two class attributes tell a model builder what a
fusion needs: ``produces_logits = True`` (late fusion: no head after it) and
``needs_sequences = True`` (cross-attention: region and token features
``(B, L_i, D_i)`` instead of vectors). :data:`FUSIONS` maps each name to its class.

:class:`TwoStageFusion` is not in :data:`FUSIONS`: it needs trained unimodal encoders and a
fitted reliability estimator, so it is built by its recipe, :func:`mmbook.recipes.train_two_stage`
(``mmbook train --fusion two_stage``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from mmbook.fusion.aids import (
    ModalityDropout,
    extract_features,
    linear_probe,
    mean_modality_weights,
    missing_modalities,
    modality_dropout_mask,
)
from mmbook.fusion.attention import CrossAttentionFusion, check_sequences
from mmbook.fusion.base import ConcatFusion, check_features
from mmbook.fusion.checks import check_fusion_module
from mmbook.fusion.co_attention import CoAttentionFusion
from mmbook.fusion.film import FiLMFusion
from mmbook.fusion.late import AverageLateFusion, LateFusion, LearnedLateFusion
from mmbook.fusion.robustness import area_under_curve, corrupt_images, noisy_caption_tokens
from mmbook.fusion.tensor import LowRankTensorFusion, TensorFusion
from mmbook.fusion.weighted import (
    GatedMultimodalUnit,
    GlobalWeightFusion,
    ReliabilityEstimator,
    TwoStageFusion,
    fit_reliability_estimator,
    freeze,
    reliability_targets,
)

FUSIONS: dict[str, type[nn.Module]] = {
    "concat": ConcatFusion,
    "weighted": GlobalWeightFusion,
    "gmu": GatedMultimodalUnit,
    "late_average": AverageLateFusion,
    "late_learned": LearnedLateFusion,
    "tfn": TensorFusion,
    "lowrank_tfn": LowRankTensorFusion,
    "cross_attention": CrossAttentionFusion,
    "co_attention": CoAttentionFusion,
    "film": FiLMFusion,
}


def build_fusion(name: str, in_features: Sequence[int], num_classes: int | None = None, **options) -> nn.Module:
    """Build the fusion called ``name`` (see :data:`FUSIONS`) for the given feature sizes.

    Args:
        name: a key of :data:`FUSIONS`.
        in_features: the feature size of each modality.
        num_classes: passed on to fusions that produce logits (late fusion); ignored by the others.
        options: keyword arguments of the fusion class (e.g. ``hidden=64``).
    """
    if name not in FUSIONS:
        raise ValueError(f"unknown fusion {name!r}; expected one of {sorted(FUSIONS)}")
    cls = FUSIONS[name]
    if num_classes is not None and getattr(cls, "produces_logits", False):
        options["num_classes"] = num_classes
    return cls(in_features, **options)


__all__ = [
    "FUSIONS", "AverageLateFusion", "CoAttentionFusion", "ConcatFusion", "CrossAttentionFusion", "FiLMFusion", "GatedMultimodalUnit", "GlobalWeightFusion",
    "LateFusion", "LearnedLateFusion", "LowRankTensorFusion", "ModalityDropout",
    "ReliabilityEstimator", "TensorFusion", "TwoStageFusion", "area_under_curve",
    "build_fusion", "check_features", "check_fusion_module", "check_sequences", "corrupt_images", "extract_features",
    "fit_reliability_estimator", "freeze", "linear_probe", "mean_modality_weights",
    "missing_modalities", "modality_dropout_mask", "noisy_caption_tokens", "reliability_targets",
]
