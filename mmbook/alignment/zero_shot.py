"""Zero-shot classification from prompts, and the linear probes it is measured against.

- :func:`class_embeddings` and :func:`zero_shot_accuracy`: CLIP's zero-shot classifier, with prompt ensembling;
- :func:`logistic_probe`: CLIP's linear-probe protocol, L2-regularised multinomial logistic regression on
  frozen features, its strength chosen on a validation split held out from the training examples;
- :func:`accuracy_interval`: a 95 % confidence interval for an accuracy measured on ``n`` test examples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from mmbook.runtime import evaluating

# The probe's L2 strengths tried on the validation split. CLIP sweeps 10^-6 .. 10^6 (96 steps, then refines
# around the best); for a few hundred features and at most a few thousand examples, the powers of ten from
# 10^-3 to 10^3 cover the useful range (the strongest squashes every weight, the weakest barely regularises).
PROBE_STRENGTHS = tuple(10.0 ** e for e in range(-3, 4))


@torch.no_grad()
def class_embeddings(model: nn.Module, class_names: Sequence[str], templates: Sequence[str] = ("a {}",),
                     vocab=None) -> torch.Tensor:
    """One unit vector per class ``(C, d)``: the mean of its prompts' text embeddings, renormalised.

    With several ``templates`` ("a {}", "a small {}", ...) this is *prompt ensembling*: averaging
    over phrasings removes what each single phrasing adds besides the class.
    """
    from mmbook.data.scene_captions import caption_vocabulary, encode_captions

    if not templates or any("{}" not in t for t in templates):
        raise ValueError(f"templates must be a non-empty list of strings with a '{{}}' for the class name, got {templates!r}")
    vocab = vocab or caption_vocabulary()
    device = next(model.parameters()).device
    vectors = []
    with evaluating(model):
        for name in class_names:
            tokens = encode_captions([t.format(name) for t in templates], vocab).to(device)
            vectors.append(F.normalize(model.encode_text(tokens).mean(dim=0), dim=0))
    return torch.stack(vectors).cpu()


def zero_shot_accuracy(image_embeddings: torch.Tensor, class_vectors: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy of predicting ``argmax_c <image, class_c>`` for ``(N, d)`` images, ``(C, d)`` classes, ``(N,)`` labels."""
    if image_embeddings.shape[1] != class_vectors.shape[1]:
        raise ValueError(f"image embeddings have d={image_embeddings.shape[1]}, class vectors d={class_vectors.shape[1]}")
    if image_embeddings.shape[0] != labels.shape[0]:
        raise ValueError(f"{image_embeddings.shape[0]} images but {labels.shape[0]} labels")
    return float(((image_embeddings @ class_vectors.T).argmax(dim=1) == labels).float().mean())


def sample_per_class(labels: torch.Tensor, per_class: int | None, seed: int = 0) -> torch.Tensor:
    """Indices of ``per_class`` random examples of every class in ``labels`` (all of them if ``None``)."""
    if per_class is None:
        return torch.arange(len(labels))
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for c in labels.unique().tolist():
        members = (labels == c).nonzero().flatten()
        if len(members) < per_class:
            raise ValueError(f"class {c} has only {len(members)} examples, fewer than per_class={per_class}")
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(chosen)


def _fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, strength: float, max_iter: int,
                  start: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise ``mean CE(x W + b, y) + strength / (2 N) * |W|^2`` with L-BFGS: ``(D, C)`` weights and ``(C,)`` bias.

    The penalty is scikit-learn's ``C = 1 / strength`` convention divided by ``N`` (the loss is a mean).
    ``start`` warm-starts from another strength's solution.
    """
    if start is None:
        weight = torch.zeros(x.shape[1], num_classes, dtype=torch.float64)
        bias = torch.zeros(num_classes, dtype=torch.float64)
    else:
        weight, bias = (t.clone() for t in start)
    weight.requires_grad_()
    bias.requires_grad_()
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-6, tolerance_change=1e-9)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, y) + strength / (2 * len(y)) * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


def _fit_path(x: torch.Tensor, y: torch.Tensor, num_classes: int, strengths: Sequence[float],
              max_iter: int) -> dict[float, tuple[torch.Tensor, torch.Tensor]]:
    """Solutions for every strength, from the strongest to the weakest, each warm-started from the previous one."""
    solutions, start = {}, None
    for strength in sorted(strengths, reverse=True):
        start = solutions[strength] = _fit_logistic(x, y, num_classes, strength, max_iter, start)
    return solutions


def logistic_probe(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                   test_labels: torch.Tensor, *, strengths: Sequence[float] = PROBE_STRENGTHS,
                   validation_fraction: float = 0.25, max_iter: int = 100, seed: int = 0) -> dict[str, float]:
    """CLIP's linear probe: L2-regularised logistic regression on frozen features, strength chosen on validation.

    Radford et al. (2021, appendix A.3) train scikit-learn's L-BFGS logistic regression on the features
    *before* the projection into the shared space, and choose the L2 strength on a validation split.
    Here: a stratified ``validation_fraction`` of the training examples (at least one per class, while
    every class keeps one for training) is held out; each strength is fitted on the rest and scored on it;
    the best strength (the larger one on a tie) is refitted on all training examples and scored on the test
    set. With one example per class there is nothing to hold out, and the strength is the median of
    ``strengths``. The features keep their geometry (no per-feature standardisation, which would need
    statistics from a handful of examples in the few-shot case); they are divided by one number, their
    mean norm over the training examples, which leaves the problem the same up to the scale of the strengths
    and helps L-BFGS converge.

    Args:
        train_features: ``(N, D)``; train_labels: ``(N,)`` ints in ``0 .. C-1``.
        test_features: ``(M, D)``; test_labels: ``(M,)``.

    Returns:
        ``{"accuracy", "strength", "validation_accuracy"}`` (validation accuracy NaN without a validation split).
    """
    if train_features.ndim != 2 or test_features.ndim != 2 or train_features.shape[1] != test_features.shape[1]:
        raise ValueError(f"expected features (N, D) and (M, D), got {tuple(train_features.shape)} and "
                         f"{tuple(test_features.shape)}")
    if len(train_features) != len(train_labels) or len(test_features) != len(test_labels):
        raise ValueError(f"{len(train_features)} training features but {len(train_labels)} labels, or "
                         f"{len(test_features)} test features but {len(test_labels)} labels")
    if not strengths or any(s < 0 for s in strengths):
        raise ValueError(f"strengths must be non-negative numbers, got {strengths!r}")
    scale = float(train_features.double().norm(dim=1).mean().clamp(min=1e-12))
    x, y = train_features.double() / scale, train_labels.long()
    num_classes = int(max(int(y.max()), int(test_labels.max()))) + 1
    generator = torch.Generator().manual_seed(seed)
    validation = []
    for c in y.unique().tolist():
        members = (y == c).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        take = min(len(members) - 1, max(1, round(validation_fraction * len(members))))
        validation.append(members[:take])
    held_out = torch.cat(validation)
    chosen, best = sorted(strengths)[len(strengths) // 2], float("nan")
    if len(held_out) > 0 and len(y.unique()) == len(y[held_out].unique()):
        keep = torch.ones(len(y), dtype=torch.bool)
        keep[held_out] = False
        scores = []
        for strength, (weight, bias) in _fit_path(x[keep], y[keep], num_classes, strengths, max_iter).items():
            scores.append((float(((x[held_out] @ weight + bias).argmax(1) == y[held_out]).double().mean()), strength))
        best, chosen = max(scores)
    weight, bias = _fit_logistic(x, y, num_classes, chosen, max_iter)
    accuracy = float(((test_features.double() / scale @ weight + bias).argmax(1) == test_labels).double().mean())
    return {"accuracy": accuracy, "strength": chosen, "validation_accuracy": best}


def accuracy_interval(accuracy: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95 % with ``z = 1.96``) of an accuracy measured on ``n`` independent examples.

    It stays inside ``[0, 1]`` and is usable near 0 and 1, where the normal approximation
    ``accuracy ± z sqrt(accuracy (1 - accuracy) / n)`` is not.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive number of test examples, got {n!r}")
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy must lie in [0, 1], got {accuracy}")
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)
