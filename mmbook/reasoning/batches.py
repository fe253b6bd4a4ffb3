"""The batch contract of the VQA models: images as the CNN reads them, and ``K`` questions per image.

A batch dict holds ``"image"`` ``(B, 3, 64, 64)`` (normalised floats from :class:`mmbook.data.DeviceLoader`,
or uint8) and ``"question"`` int64 token ids right-padded with 0, ``(B, T)`` or ``(B, K, T)``. Both
:mod:`mmbook.reasoning.models` and :mod:`mmbook.reasoning.vit` read batches through these helpers.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

#: How the VQA loader normalises images (both sources: bright objects, a mid-grey background).
PIXEL_MEAN, PIXEL_STD = 0.5, 0.25


def pixels(images: torch.Tensor) -> torch.Tensor:
    """Images as the CNN reads them: float ``(B, 3, H, W)`` as normalised by the loader pass through;
    uint8 ones are scaled to ``[0, 1]`` and normalised with mean 0.5, standard deviation 0.25."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return (images.float() / 255 - PIXEL_MEAN) / PIXEL_STD
    return images


def flat_questions(batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """``batch["question"]`` as ``(N, T)``, and ``K``, the questions per image (1 for ``(B, T)``)."""
    questions = batch["question"]
    if questions.ndim == 2:
        return questions, 1
    if questions.ndim == 3:
        return questions.reshape(-1, questions.shape[-1]), questions.shape[1]
    raise ValueError(f"questions must be (B, T) or (B, K, T) token ids, got shape {tuple(questions.shape)}")


def per_question(features: torch.Tensor, k: int) -> torch.Tensor:
    """Image features ``(B, ...)`` repeated for each of the image's ``k`` questions: ``(B * k, ...)``."""
    return features.repeat_interleave(k, dim=0) if k > 1 else features
