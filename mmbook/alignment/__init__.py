"""Alignment: one embedding space for images and their descriptions (CLIP-style contrastive learning).

A two-tower model encodes an image and a text separately and projects each into the same
``d``-dimensional space, L2-normalised, so that cosine similarity compares them::

    image  (B, 3, 64, 64) -> image tower -> linear -> normalise -> u (B, d)
    text   (B, T)         -> text tower  -> linear -> normalise -> v (B, d)
    logits = u @ v.T / temperature                                   (B, B)

The symmetric InfoNCE loss (:func:`info_nce`, van den Oord et al. 2018; CLIP, Radford et al.
2021) is the mean of two cross-entropies over that matrix: each image must pick out its own
caption among the ``B`` captions of the batch (image -> text), and each caption its own image
(text -> image). The other ``B - 1`` items of the batch are the *in-batch negatives*. SigLIP's
sigmoid loss (:func:`sigmoid_loss`, Zhai et al. 2023) makes each pair one binary decision instead.
The temperature is learned as a log scale, ``scale = exp(log_scale) = 1 / temperature``, initialised
to ``1 / 0.07`` and clamped to ``[1, 100]`` after every optimiser step, as open_clip does.

The modules, in the order the chapter uses them:

- :mod:`~mmbook.alignment.model`: :class:`TwoTower`, the temperature clamp, the weight-decay groups;
- :mod:`~mmbook.alignment.losses`: InfoNCE, the sigmoid loss, NegCLIP's hard negatives, a fixed number of negatives per pair,
  and the ``loss_fn`` of :func:`mmbook.training.fit` (which gathers embeddings across ranks under DDP);
- :mod:`~mmbook.alignment.retrieval`: recall@K in both directions with several correct answers;
- :mod:`~mmbook.alignment.zero_shot`: zero-shot classification from prompts, CLIP's linear probes,
  confidence intervals;
- :mod:`~mmbook.alignment.compositional`: accuracy on captions with swapped words (hard negatives);
- :mod:`~mmbook.alignment.elements`: word-region similarity maps, scored against the boxes (pointing game);
- :mod:`~mmbook.alignment.geometry`: the modality gap, alignment and uniformity, hubness;
- :mod:`~mmbook.alignment.baselines`: a matching classifier and a supervised image tower;
- :mod:`~mmbook.alignment.checkers`: the exercise checkers;
- :mod:`~mmbook.alignment.recipe`: ``mmbook train --task scene-retrieval``, and retrieval on your own
  caption-only pairs (:func:`train_pairs_retrieval`, ``--task pairs-retrieval``).
"""

from mmbook.alignment.baselines import (
    MatchingClassifier,
    PresenceClassifier,
    matching_accuracy,
    matching_loss,
    matching_similarity,
    presence_accuracy,
    presence_loss,
    presence_targets,
)
from mmbook.alignment.checkers import check_info_nce, check_recall_at_k
from mmbook.alignment.compositional import swap_accuracy
from mmbook.alignment.elements import pointing_game, region_embeddings, word_region_maps
from mmbook.alignment.geometry import (
    alignment_and_uniformity,
    close_modality_gap,
    hubness,
    modality_gap,
    shift_along_gap,
)
from mmbook.alignment.losses import (
    check_embeddings,
    contrastive_loss,
    in_batch_accuracy,
    info_nce,
    info_nce_loop,
    negclip_loss,
    sigmoid_contrastive_loss,
    sigmoid_loss,
)
from mmbook.alignment.model import (
    INIT_TEMPERATURE,
    MAX_SCALE,
    SceneImageTower,
    TwoTower,
    check_temperature,
    clamp_logit_scale_,
    contrastive_parameter_groups,
)
from mmbook.alignment.recipe import (
    LOSSES,
    PAIRS_RETRIEVAL_DEFAULTS,
    RETRIEVAL_DEFAULTS,
    TRAIN_LAYOUT_DROPOUT,
    scene_pairs,
    single_object,
    train_pairs_retrieval,
    train_scene_retrieval,
)
from mmbook.alignment.retrieval import (
    RECALL_DEFINITIONS,
    caption_relevance,
    chance_recall_at_k,
    check_gallery,
    embed,
    embed_images,
    embed_texts,
    recall_at_k,
    retrieval_report,
)
from mmbook.alignment.zero_shot import (
    PROBE_STRENGTHS,
    accuracy_interval,
    class_embeddings,
    logistic_probe,
    sample_per_class,
    zero_shot_accuracy,
)

__all__ = [
    "INIT_TEMPERATURE", "LOSSES", "MAX_SCALE", "PAIRS_RETRIEVAL_DEFAULTS", "PROBE_STRENGTHS", "RECALL_DEFINITIONS", "RETRIEVAL_DEFAULTS",
    "TRAIN_LAYOUT_DROPOUT", "MatchingClassifier", "PresenceClassifier", "SceneImageTower", "TwoTower",
    "accuracy_interval", "alignment_and_uniformity", "caption_relevance", "chance_recall_at_k", "check_embeddings",
    "check_gallery", "check_info_nce", "check_recall_at_k", "check_temperature", "clamp_logit_scale_",
    "class_embeddings", "close_modality_gap", "contrastive_loss", "contrastive_parameter_groups", "embed",
    "embed_images", "embed_texts", "hubness", "in_batch_accuracy", "info_nce", "info_nce_loop", "logistic_probe",
    "matching_accuracy", "matching_loss", "pointing_game", "region_embeddings", "word_region_maps", "matching_similarity", "modality_gap", "negclip_loss", "presence_accuracy",
    "presence_loss", "presence_targets", "recall_at_k", "retrieval_report", "sample_per_class", "scene_pairs",
    "shift_along_gap", "sigmoid_contrastive_loss", "sigmoid_loss", "single_object", "swap_accuracy",
    "train_pairs_retrieval", "train_scene_retrieval",
    "zero_shot_accuracy",
]
