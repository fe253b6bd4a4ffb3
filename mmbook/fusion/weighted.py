"""Weighted fusion with learned modality weights, in three forms.

All three project each modality to a common size ``hidden`` and return a weighted
sum ``(B, hidden)``; they differ in where the weights come from:

- :class:`GlobalWeightFusion`: one learned weight per modality (softmax), the same
  for every sample.
- :class:`GatedMultimodalUnit`: a per-sample, per-unit gate computed from the
  inputs (Arevalo et al., 2017).
- :class:`TwoStageFusion`: per-sample weights from a separately trained, then
  frozen, :class:`ReliabilityEstimator` (see :func:`fit_reliability_estimator`).

Each keeps the weights of its last forward pass in ``last_weights``, a ``(B, M)``
tensor whose rows sum to 1, so the weights can be read off
(:func:`mmbook.fusion.mean_modality_weights` averages them over a data set).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from mmbook.fusion.base import SoftmaxMix, check_features, feature_sizes


class GlobalWeightFusion(SoftmaxMix):
    """One learned weight per modality over features ``x_m`` ``(B, D_m)`` projected to a common size::

        p_m = LayerNorm(W_m x_m)       (B, hidden)   no learned scale
        alpha = softmax(w)             (M,)          w: one learned logit per modality
        output = sum_m alpha_m p_m     (B, hidden)

    Without the LayerNorm a projection could grow to undo a small weight, and the
    weights would say nothing about how much each modality is used.

    Args:
        in_features: feature size of each modality.
        hidden: the common size.
    """

    def __init__(self, in_features: Sequence[int], hidden: int = 32) -> None:
        super().__init__()
        self.in_features = feature_sizes(in_features, "GlobalWeightFusion")
        self.projections = nn.ModuleList(nn.Linear(d, hidden) for d in self.in_features)
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.weight_logits = nn.Parameter(torch.zeros(len(self.in_features)))
        self.out_features = hidden

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """List of ``(B, D_m)`` -> ``(B, hidden)``."""
        check_features(features, self.in_features)
        return self.mix(torch.stack([self.norm(proj(x)) for proj, x in zip(self.projections, features)], dim=1))


class GatedMultimodalUnit(nn.Module):
    """Gated Multimodal Unit (Arevalo et al., 2017); for two modalities, the paper's equations::

        h_v = tanh(W_v x_v),  h_t = tanh(W_t x_t)    (B, hidden)
        z   = sigmoid(W_z [x_v; x_t])                 (B, hidden)   one gate per sample and unit
        h   = z * h_v + (1 - z) * h_t

    with ``x_v`` and ``x_t`` layer-normalised first unless ``normalize=False`` (see below).

    For M modalities the gate is a softmax over modalities per unit. ``last_gates`` holds
    the gates ``(B, M, hidden)`` of the last call, ``last_weights`` their mean over units ``(B, M)``.

    Args:
        in_features: feature size of each modality.
        hidden: size of h.
        normalize: layer-normalize each input first (no learned parameters); ``False`` gives the
            paper's equations exactly. An unbounded encoder output (LeNet's) can grow in training
            until ``tanh`` and the gates saturate, and a saturated gate is a hard switch that passes
            almost no gradient. The default is ``True`` because, measured over 3 seeds in full mode on
            CPU (2026-12-06), it was never worse and once much better: on the book's captioned CIFAR-10
            the two are within the spread between seeds (test accuracy 0.785 ± 0.003 without, 0.782 ±
            0.006 with; ``python benchmarks/gmu_normalize.py``); on the own-data page's generated shapes,
            where 69-81 % of the paper's gates sit at 0 or 1, normalising gains 10.8 points (68.8 ± 0.6
            % against 79.6 ± 0.0 %; ``book/ch11_own_data``, exercise ``ex-own-gmu``).
    """

    def __init__(self, in_features: Sequence[int], hidden: int = 32, normalize: bool = True) -> None:
        super().__init__()
        self.in_features = feature_sizes(in_features, "GatedMultimodalUnit")
        self.norms = nn.ModuleList(nn.LayerNorm(d, elementwise_affine=False) for d in self.in_features) \
            if normalize else None
        self.hidden, num = hidden, len(self.in_features)
        self.transforms = nn.ModuleList(nn.Linear(d, hidden, bias=False) for d in self.in_features)
        gate_size = hidden if num == 2 else hidden * num
        self.gate = nn.Linear(sum(self.in_features), gate_size, bias=False) if num > 1 else None
        self.out_features = hidden
        self.last_gates: torch.Tensor | None = None
        self.last_weights: torch.Tensor | None = None

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """List of ``(B, D_m)`` -> ``(B, hidden)``."""
        check_features(features, self.in_features)
        if self.norms is not None:
            features = [norm(x) for norm, x in zip(self.norms, features)]
        h = torch.stack([torch.tanh(t(x)) for t, x in zip(self.transforms, features)], dim=1)  # (B, M, H)
        batch, num = h.shape[0], h.shape[1]
        if self.gate is None:
            gates = torch.ones_like(h)
        elif num == 2:
            z = torch.sigmoid(self.gate(torch.cat(list(features), dim=1)))  # (B, H)
            gates = torch.stack([z, 1 - z], dim=1)
        else:
            gates = F.softmax(self.gate(torch.cat(list(features), dim=1)).view(batch, num, self.hidden), dim=1)
        self.last_gates = gates.detach()
        self.last_weights = gates.detach().mean(dim=2)
        return (gates * h).sum(dim=1)


class ReliabilityEstimator(nn.Module):
    """Per-sample modality weights: one small MLP scores each modality, a softmax mixes the scores::

        features [(B, D_m)] -> scores (B, M) -> softmax -> weights (B, M)

    Train it with :func:`fit_reliability_estimator` on held-out data.
    """

    def __init__(self, in_features: Sequence[int], hidden: int = 16) -> None:
        super().__init__()
        self.in_features = feature_sizes(in_features, "ReliabilityEstimator")
        self.scorers = nn.ModuleList(
            nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, 1)) for d in self.in_features
        )

    def scores(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Unnormalised scores ``(B, M)``."""
        check_features(features, self.in_features)
        return torch.cat([scorer(x) for scorer, x in zip(self.scorers, features)], dim=1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """List of ``(B, D_m)`` -> weights ``(B, M)``, rows summing to 1."""
        return F.softmax(self.scores(features), dim=1)


def reliability_targets(true_class_probs: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Target weights ``w_m = (p_m + eps) / sum_k (p_k + eps)`` ``(N, M)`` from each unimodal model's
    probability ``p_m`` of the true class ``(N, M)``."""
    if true_class_probs.ndim != 2:
        raise ValueError(f"expected probabilities of shape (N, M), got {tuple(true_class_probs.shape)}")
    p = true_class_probs.float().clamp(0, 1) + eps
    return p / p.sum(dim=1, keepdim=True)


def fit_reliability_estimator(
    estimator: ReliabilityEstimator,
    features: Sequence[torch.Tensor],
    true_class_probs: torch.Tensor,
    steps: int = 300,
    lr: float = 1e-2,
    seed: int = 0,
) -> list[float]:
    """Stage 1 of two-stage fusion: fit ``estimator`` to held-out reliability, then freeze it.

    Args:
        estimator: the estimator to train (modified in place, then frozen).
        features: per-modality held-out features ``[(N, D_m)]``, from the unimodal encoders.
        true_class_probs: ``(N, M)``, each unimodal model's probability of the true label.
        steps: full-batch Adam steps.
        seed: seeds torch's global generator first.

    Returns:
        The loss (cross-entropy against the soft targets) at every step.
    """
    torch.manual_seed(seed)
    features = [f.detach().float() for f in features]
    targets = reliability_targets(true_class_probs).to(features[0].device)
    if targets.shape != (features[0].shape[0], len(features)):
        raise ValueError(f"true_class_probs must be (N, M) = ({features[0].shape[0]}, {len(features)}), got {tuple(true_class_probs.shape)}")
    estimator.requires_grad_(True).train()
    optimizer = torch.optim.Adam(estimator.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        log_w = F.log_softmax(estimator.scores(features), dim=1)
        loss = -(targets * log_w).sum(dim=1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    freeze(estimator)
    return losses


def freeze(module: nn.Module) -> nn.Module:
    """Stop training ``module``: no gradients, and eval mode."""
    return module.requires_grad_(False).eval()


class TwoStageFusion(nn.Module):
    """Weighted fusion whose per-sample weights come from a frozen, separately trained estimator::

        weights = estimator(x)                 (B, M)   frozen; fitted before, on held-out data
        p_m     = LayerNorm(W_m x_m)           (B, hidden)
        output  = sum_m weights[:, m] * p_m    (B, hidden)

    The estimator reads the same features as the fusion, so the encoders in front of it
    must be the frozen ones it was fitted on (see :func:`mmbook.recipes.fit_two_stage`).

    Args:
        in_features: feature size of each modality.
        hidden: the common size.
        estimator: a fitted :class:`ReliabilityEstimator`; a fresh (untrained) one if None.
    """

    def __init__(self, in_features: Sequence[int], hidden: int = 32, estimator: ReliabilityEstimator | None = None) -> None:
        super().__init__()
        self.in_features = feature_sizes(in_features, "TwoStageFusion")
        self.estimator = freeze(estimator if estimator is not None else ReliabilityEstimator(self.in_features))
        if self.estimator.in_features != self.in_features:
            raise ValueError(f"the estimator was built for features {self.estimator.in_features}, the fusion for {self.in_features}")
        self.projections = nn.ModuleList(nn.Linear(d, hidden) for d in self.in_features)
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.out_features = hidden
        self.last_weights: torch.Tensor | None = None

    def train(self, mode: bool = True) -> "TwoStageFusion":
        """Switch mode, but keep the frozen estimator in eval mode."""
        super().train(mode)
        self.estimator.eval()
        return self

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """List of ``(B, D_m)`` -> ``(B, hidden)``."""
        check_features(features, self.in_features)
        with torch.no_grad():
            weights = self.estimator([x.detach() for x in features])  # (B, M)
        self.last_weights = weights
        projected = torch.stack([self.norm(proj(x)) for proj, x in zip(self.projections, features)], dim=1)
        return (weights.unsqueeze(2) * projected).sum(dim=1)
