"""Captioning without writing: borrow the caption of the nearest training scenes.

Devlin et al. (2015) showed that a captioner need not generate at all to score well on n-gram
metrics: find the training images nearest to the test image in a CNN's feature space, gather their
captions, and return the caption that best represents the *consensus* of those candidates. It is
fluent by construction (someone wrote it) and describes the neighbour, not the image, so it is the
baseline that shows what the metrics reward and what they miss. Here the consensus is the candidate
most similar to the others, similarity being CIDEr's: the cosine of two captions' TF-IDF n-gram
vectors, averaged over n = 1 to 4, with the IDF of the training scenes' references::

    test scene -> frozen encoder, regions averaged (C,) -> k nearest training scenes (cosine)
               -> their k x R references -> the one most similar to the other k x R - 1
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.nn import functional as F

from mmbook.generation.metrics import _CIDER_N, _document_frequency, _tfidf, _tokenise_references, caption_tokens


def pooled_features(features: torch.Tensor) -> torch.Tensor:
    """One unit vector per scene: region features ``(N, R, C)`` averaged over the regions, or ``(N, C)`` as
    they are, then L2-normalised -> ``(N, C)``."""
    if features.dim() == 3:
        features = features.float().mean(dim=1)
    elif features.dim() != 2:
        raise ValueError(f"features must be (N, R, C) region features or (N, C) vectors, got shape "
                         f"{tuple(features.shape)}")
    return F.normalize(features.float(), dim=1)


def nearest_scenes(train_features: torch.Tensor, test_features: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` training scenes nearest to each test scene by cosine similarity of :func:`pooled_features`:
    ``(M, k)`` indices into the training scenes, nearest first."""
    train, test = pooled_features(train_features), pooled_features(test_features)
    if train.shape[1] != test.shape[1]:
        raise ValueError(f"training features have {train.shape[1]} channels and test features {test.shape[1]}; "
                         "encode both with the same encoder")
    if not 1 <= k <= len(train):
        raise ValueError(f"k must be between 1 and the number of training scenes ({len(train)}), got {k}")
    return (test @ train.T).topk(k, dim=1).indices


def nearest_neighbour_captions(train_features: torch.Tensor, train_references: Sequence[Sequence[str]],
                               test_features: torch.Tensor, k: int = 3) -> list[str]:
    """One borrowed caption per test scene: the consensus caption of its ``k`` nearest training scenes.

    Args:
        train_features: ``(N, R, C)`` region features (or ``(N, C)``) of the training scenes.
        train_references: ``N`` lists of reference captions, one list per training scene.
        test_features: ``(M, R, C)`` (or ``(M, C)``) features of the test scenes, from the same encoder.
        k: neighbours pooled; their references are the candidates.

    Returns:
        ``M`` captions, each copied from a training reference: the candidate with the highest summed CIDEr
        similarity to the other candidates of its pool (ties: the nearer scene's, then the earlier reference).
    """
    if len(train_references) != len(train_features):
        raise ValueError(f"{len(train_features)} training scenes have features but {len(train_references)} have "
                         "references; pass one list of references per training scene")
    if any(len(references) == 0 for references in train_references):
        raise ValueError("every training scene needs at least one reference caption")
    neighbours = nearest_scenes(train_features, test_features, k).tolist()
    tokenised = _tokenise_references(train_references)  # clear errors for empty captions
    frequency, log_scenes = _document_frequency(tokenised), math.log(len(tokenised))
    vectors: dict[str, tuple[list[dict], list[float]]] = {}

    def vector(caption: str) -> tuple[list[dict], list[float]]:
        if caption not in vectors:
            vectors[caption] = _tfidf(caption_tokens(caption), frequency, log_scenes)
        return vectors[caption]

    chosen = []
    for scenes in neighbours:
        pool = [caption for scene in scenes for caption in train_references[scene]]
        pooled = [vector(caption) for caption in pool]
        totals = [0.0] * len(pool)
        for i in range(len(pool)):
            for j in range(i + 1, len(pool)):
                similarity = _cider_similarity(pooled[i], pooled[j])
                totals[i] += similarity
                totals[j] += similarity
        chosen.append(pool[max(range(len(pool)), key=lambda i: (totals[i], -i))])
    return chosen


def _cider_similarity(a: tuple[list[dict], list[float]], b: tuple[list[dict], list[float]]) -> float:
    """CIDEr's similarity of two captions: the cosine of their TF-IDF vectors, averaged over the n-gram orders."""
    total = 0.0
    for n in range(_CIDER_N):
        if a[1][n] and b[1][n]:
            small, large = (a[0][n], b[0][n]) if len(a[0][n]) <= len(b[0][n]) else (b[0][n], a[0][n])
            total += sum(weight * large.get(gram, 0.0) for gram, weight in small.items()) / (a[1][n] * b[1][n])
    return total / _CIDER_N
