"""The geometry of a shared embedding space: the modality gap, alignment and uniformity, hubness.

- :func:`modality_gap`, :func:`shift_along_gap` (Liang et al. 2022) and :func:`close_modality_gap`
  (per-modality centring);
- :func:`alignment_and_uniformity`: the two properties of Wang and Isola (2020);
- :func:`hubness`: how unevenly the items of one modality appear among the nearest neighbours of the other.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def modality_gap(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> float:
    """Distance between the centroids of the two clouds, ``|mean(image) - mean(text)|`` (Liang et al., 2022).

    For unit vectors it lies in ``[0, 2]``; 0 means the clouds share a centre.
    """
    if image_embeddings.ndim != 2 or text_embeddings.ndim != 2 or image_embeddings.shape[1] != text_embeddings.shape[1]:
        raise ValueError(f"expected (N, d) and (M, d) embeddings, got {tuple(image_embeddings.shape)} and "
                         f"{tuple(text_embeddings.shape)}")
    if image_embeddings.shape[0] == 0 or text_embeddings.shape[0] == 0:
        raise ValueError("the modality gap needs at least one embedding of each modality")
    return float((image_embeddings.float().mean(0) - text_embeddings.float().mean(0)).norm())


def close_modality_gap(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor,
                       image_centre: torch.Tensor | None = None,
                       text_centre: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre each cloud on its own mean and renormalise: ``(N, d), (M, d)`` -> same shapes.

    This is per-modality mean centring, not the experiment of Liang et al. (2022), who move both clouds
    along the gap vector (:func:`shift_along_gap`); after centring both clouds share a centre (the origin)
    and the gap is 0 before the renormalisation. ``image_centre`` and ``text_centre`` default to each
    cloud's own mean; pass the training set's means to avoid using test statistics.
    """
    image_centre = image_embeddings.mean(0) if image_centre is None else image_centre
    text_centre = text_embeddings.mean(0) if text_centre is None else text_centre
    return F.normalize(image_embeddings - image_centre, dim=1), F.normalize(text_embeddings - text_centre, dim=1)


def shift_along_gap(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor, amount: float,
                    gap_vector: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Liang et al.'s (2022) gap experiment: move both clouds along the gap vector, then renormalise.

    With ``Δ = mean(image) - mean(text)`` (or ``gap_vector``), images move by ``-amount · Δ / 2`` and texts by
    ``+amount · Δ / 2``: ``amount = 1`` brings the two centroids together (before the renormalisation),
    ``amount < 0`` pushes them further apart, ``amount = 0`` changes nothing. Returns ``(N, d), (M, d)`` unit vectors.
    """
    delta = image_embeddings.mean(0) - text_embeddings.mean(0) if gap_vector is None else gap_vector
    if delta.shape != image_embeddings.shape[1:]:
        raise ValueError(f"gap_vector must have shape {tuple(image_embeddings.shape[1:])}, got {tuple(delta.shape)}")
    half = amount * delta / 2
    return F.normalize(image_embeddings - half, dim=1), F.normalize(text_embeddings + half, dim=1)


def alignment_and_uniformity(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor,
                             t: float = 2.0) -> dict[str, float]:
    """Wang and Isola's (2020) two properties of a contrastive space, for ``(N, d)`` unit-vector pairs.

    - ``alignment``: ``E ||u_i - v_i||^2`` over matching pairs (lower: pairs closer together);
    - ``uniformity_image`` and ``uniformity_text``: ``log E exp(-t ||x - y||^2)`` over distinct pairs of one
      modality (lower: spread more evenly over the sphere; it lies in ``[-4t, 0]`` for unit vectors, and 0
      means every embedding is the same point).
    """
    if image_embeddings.shape != text_embeddings.shape or image_embeddings.ndim != 2 or len(image_embeddings) < 2:
        raise ValueError(f"expected two (N, d) tensors of paired unit vectors with N >= 2, got "
                         f"{tuple(image_embeddings.shape)} and {tuple(text_embeddings.shape)}")
    result = {"alignment": float((image_embeddings - text_embeddings).pow(2).sum(1).mean())}
    for name, x in (("image", image_embeddings), ("text", text_embeddings)):
        squared = torch.cdist(x.double(), x.double()).pow(2)
        off_diagonal = ~torch.eye(len(x), dtype=torch.bool)
        result[f"uniformity_{name}"] = float(torch.logsumexp(-t * squared[off_diagonal], 0) - math.log(int(off_diagonal.sum())))
    return result


def hubness(similarity: torch.Tensor, k: int = 10) -> dict[str, float]:
    """How unevenly gallery items appear in the queries' top ``k``: the k-occurrence of Radovanović et al. (2010).

    ``similarity`` is ``(Q, G)``; ``N_k(g)`` counts the queries that have gallery item ``g`` among their
    ``k`` nearest. Without hubs every item appears about ``Q k / G`` times. Returns the ``skewness`` of
    ``N_k`` (large and positive: a few hubs are everyone's neighbour), the share of the gallery that is in
    no top ``k`` (``orphans``), and the largest ``N_k`` over its expected value (``top_hub_ratio``).
    """
    if similarity.ndim != 2 or not 1 <= k <= similarity.shape[1]:
        raise ValueError(f"expected a (queries, gallery) matrix and 1 <= k <= gallery, got {tuple(similarity.shape)}, k={k}")
    counts = torch.bincount(similarity.topk(k, dim=1).indices.flatten(), minlength=similarity.shape[1]).double()
    mean, std = counts.mean(), counts.std(unbiased=False)
    skewness = float(((counts - mean) ** 3).mean() / std**3) if std > 0 else 0.0
    return {"skewness": skewness, "orphans": float((counts == 0).double().mean()),
            "top_hub_ratio": float(counts.max() / mean)}
