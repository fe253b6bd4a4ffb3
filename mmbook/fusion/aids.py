"""Training and evaluation aids that work with any fusion.

- :class:`ModalityDropout`: wraps a fusion; during training it blanks one
  modality's features for a random subset of samples, so the model learns to
  cope when a modality is missing and cannot lean on one modality alone.
- :func:`missing_modalities`: a context manager that blanks modalities at test time.
- :func:`mean_modality_weights`: the average modality weights of a weighting fusion over a data set.
- :func:`extract_features` and :func:`linear_probe`: how much one branch knows on its own.

A missing modality is represented by zero features, at training (modality
dropout) and at test time alike.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from mmbook.runtime import evaluating


def _drop_probabilities(p: float | Sequence[float], num_modalities: int) -> list[float]:
    """Per-modality drop probabilities from ``p``: a float (spread evenly) or one value per modality."""
    if isinstance(p, (int, float)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"modality dropout probability must lie in [0, 1], got {p}")
        return [float(p) / num_modalities] * num_modalities if num_modalities >= 2 else [0.0] * num_modalities
    probabilities = [float(q) for q in p]
    if len(probabilities) != num_modalities:
        raise ValueError(f"expected one drop probability per modality ({num_modalities}), got {len(probabilities)}: {p}")
    if any(q < 0 for q in probabilities) or sum(probabilities) > 1 + 1e-9:
        raise ValueError(f"per-modality drop probabilities must be >= 0 and sum to at most 1, got {p}")
    return probabilities


def modality_dropout_mask(batch_size: int, num_modalities: int, p: float | Sequence[float],
                          generator: torch.Generator | None = None,
                          device: torch.device | str | None = None) -> torch.Tensor:
    """Which modality to drop for each sample: a ``(B, M)`` bool mask.

    A sample loses at most one modality, so it never loses all of them.

    Args:
        p: a float: with probability ``p`` a sample loses one modality, chosen uniformly.
            A sequence of ``M`` floats (summing to at most 1): a sample loses modality ``m``
            with probability ``p[m]``. Dropping the dominant modality more often is the usual
            remedy for modality imbalance: the model must learn to use the other one.
            With one modality nothing is dropped.
    """
    probabilities = _drop_probabilities(p, num_modalities)
    mask = torch.zeros(batch_size, num_modalities, dtype=torch.bool, device=device)
    if sum(probabilities) == 0.0:  # also the one-modality case: _drop_probabilities gives it zeros
        return mask
    # One uniform draw per sample, cut into consecutive intervals of length p[0], p[1], ...
    draw = torch.rand(batch_size, generator=generator, device=device).unsqueeze(1)  # (B, 1)
    widths = torch.tensor(probabilities, device=device)  # (M,)
    upper = widths.cumsum(0)
    return (draw >= upper - widths) & (draw < upper)


class ModalityDropout(nn.Module):
    """Wrap a fusion so that, in training mode, a sample loses one modality (zero features) with probability ``p``.

    Otherwise it behaves like ``fusion`` (same ``out_features`` and shapes). Use it as
    ``model.fusion = ModalityDropout(model.fusion, p=0.5)``, or ``p=(0.0, 0.5)`` to drop only the
    second modality.

    Args:
        fusion: any fusion module.
        p: as in :func:`modality_dropout_mask`, per modality in the order of the fusion's inputs.
    """

    def __init__(self, fusion: nn.Module, p: float | Sequence[float] = 0.5) -> None:
        super().__init__()
        # Check p now, so that a bad value fails when the model is built, not mid-training.
        _drop_probabilities(p, 2 if isinstance(p, (int, float)) else len(p))
        self.p = p if isinstance(p, (int, float)) else tuple(float(q) for q in p)
        self.fusion = fusion
        self.out_features = fusion.out_features
        self.in_features = getattr(fusion, "in_features", None)
        self.produces_logits = getattr(fusion, "produces_logits", False)
        self.needs_sequences = getattr(fusion, "needs_sequences", False)

    @property
    def last_weights(self) -> torch.Tensor | None:
        """The wrapped fusion's ``last_weights``, if it has them."""
        return getattr(self.fusion, "last_weights", None)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Same as the wrapped fusion; in training, with modalities dropped."""
        if self.training:
            drop = modality_dropout_mask(features[0].shape[0], len(features), self.p, device=features[0].device)
            features = [x * (~drop[:, m]).to(x.dtype).view(-1, *([1] * (x.ndim - 1))) for m, x in enumerate(features)]
        return self.fusion(features)


def _fusion_of(model: nn.Module) -> nn.Module:
    fusion = getattr(model, "fusion", None)
    if fusion is None:
        raise TypeError(f"expected a MultimodalModel (with a .fusion), got {type(model).__name__}")
    return fusion


@contextlib.contextmanager
def missing_modalities(model: nn.Module, names: str | Sequence[str]) -> Iterator[None]:
    """Within the block, the given modalities reach the fusion as zero features (missing).

    Example::

        with missing_modalities(model, "text"):
            accuracy = evaluate(model, test_loader)["accuracy"]
    """
    names = [names] if isinstance(names, str) else list(names)
    modalities = list(model.encoders.keys())
    unknown = [n for n in names if n not in modalities]
    if unknown:
        raise ValueError(f"unknown modalities {unknown}; this model reads {modalities}")
    indices = [modalities.index(n) for n in names]

    def hook(module: nn.Module, args: tuple) -> tuple:
        features = list(args[0])
        for i in indices:
            features[i] = torch.zeros_like(features[i])
        return (features,) + tuple(args[1:])

    handle = _fusion_of(model).register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@torch.no_grad()
def mean_modality_weights(model: nn.Module, loader: Iterable[Mapping[str, torch.Tensor]],
                          device: torch.device | str | None = None) -> torch.Tensor:
    """Average of the fusion's per-sample ``last_weights`` ``(B, M)`` over a loader: ``(M,)``.

    Works for every fusion that records ``last_weights`` (global weights, GMU gates,
    two-stage weights, learned late mixing).
    """
    fusion = _fusion_of(model)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    total, count = None, 0
    with evaluating(model):
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            model(batch)
            weights = getattr(fusion, "last_weights", None)
            if weights is None:
                raise TypeError(f"{type(fusion).__name__} records no last_weights; use a weighting fusion")
            total = weights.sum(dim=0) if total is None else total + weights.sum(dim=0)
            count += weights.shape[0]
    if count == 0:
        raise ValueError("the loader yielded no samples")
    return (total / count).cpu()


@torch.no_grad()
def extract_features(encoder: nn.Module, loader: Iterable[Mapping[str, torch.Tensor]], modality: str,
                     device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run one encoder over a loader: features ``(N, D)`` (flattened if the encoder gives more dims) and labels ``(N,)``."""
    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    feats, labels = [], []
    with evaluating(encoder):
        for batch in loader:
            feats.append(encoder(batch[modality].to(device)).flatten(1).float().cpu())
            labels.append(batch["label"].cpu())
    return torch.cat(feats), torch.cat(labels)


def linear_probe(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                 test_labels: torch.Tensor, steps: int = 300, lr: float = 0.05, seed: int = 0) -> float:
    """Test accuracy of a linear classifier trained on frozen features.

    Args:
        train_features: ``(N, D)``; train_labels: ``(N,)``.
        test_features: ``(N', D)``; test_labels: ``(N',)``.
        steps: full-batch Adam steps (features are standardized first).

    Returns:
        Accuracy in ``[0, 1]``.
    """
    if train_features.ndim != 2 or test_features.ndim != 2 or train_features.shape[1] != test_features.shape[1]:
        raise ValueError(f"expected features (N, D) and (N', D), got {tuple(train_features.shape)} and {tuple(test_features.shape)}")
    generator = torch.Generator().manual_seed(seed)
    mean, std = train_features.mean(0), train_features.std(0).clamp(min=1e-6)
    x_train, x_test = (train_features - mean) / std, (test_features - mean) / std
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    weight = (torch.randn(x_train.shape[1], num_classes, generator=generator) * 0.01).requires_grad_()
    bias = torch.zeros(num_classes, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            loss = F.cross_entropy(x_train @ weight + bias, train_labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return float(((x_test @ weight + bias).argmax(1) == test_labels).float().mean())
