"""The two-stage recipe: unimodal models, then a reliability estimator, then the fused model.

Stage 1 trains one model per modality, measures on held-out data how much
probability each puts on the true class, and fits a :class:`ReliabilityEstimator`
to predict those reliabilities from the unimodal features. Stage 2 freezes the
unimodal encoders and the estimator and trains only the projections and the head
of a :class:`TwoStageFusion` model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from mmbook.fusion.weighted import ReliabilityEstimator, TwoStageFusion, fit_reliability_estimator, freeze


@dataclass
class TwoStageResult:
    """What :func:`fit_two_stage` returns.

    Attributes:
        model: the fused ``MultimodalModel`` (frozen encoders and estimator).
        history: stage 2's training history.
        unimodal_histories: stage 1's history per modality.
        estimator_losses: the estimator's training loss per step.
    """

    model: nn.Module
    history: object
    unimodal_histories: dict[str, object] = field(default_factory=dict)
    estimator_losses: list[float] = field(default_factory=list)

    @property
    def train_seconds(self) -> float:
        """Training time of both stages."""
        return self.history.train_seconds + sum(h.train_seconds for h in self.unimodal_histories.values())


@torch.no_grad()
def _heldout_reliability(models: Mapping[str, nn.Module], loader, device) -> tuple[list[torch.Tensor], torch.Tensor]:
    features = {name: [] for name in models}
    probs = {name: [] for name in models}
    for model in models.values():
        model.eval()
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        for name, model in models.items():
            feats = model.encoders[name](batch[name])
            logits = model.head(model.fusion([feats]))
            features[name].append(feats.float().cpu())
            probs[name].append(logits.float().softmax(1).gather(1, batch["label"].view(-1, 1)).cpu())
    names = list(models)
    return [torch.cat(features[n]) for n in names], torch.cat([torch.cat(probs[n]) for n in names], dim=1)


def fit_two_stage(
    unimodal_models: Mapping[str, nn.Module],
    train_loader,
    heldout_loader,
    test_loader=None,
    *,
    epochs: int,
    unimodal_epochs: int | None = None,
    lr: float = 3e-3,
    hidden: int = 32,
    num_classes: int = 10,
    device: torch.device | str | None = None,
    progress: bool = True,
    **fit_options,
) -> TwoStageResult:
    """Train a two-stage weighted-fusion model.

    Args:
        unimodal_models: modality name -> untrained (or trained, with ``unimodal_epochs=0``)
            single-modality ``MultimodalModel``, e.g. ``captioned_cifar_model("image", ...)``.
            Their order sets the modality order.
        train_loader: training batches (for both stages).
        heldout_loader: batches *not* used for training, to measure reliability.
        test_loader: optional; evaluated after every stage-2 epoch.
        epochs: stage-2 epochs.
        unimodal_epochs: stage-1 epochs per modality (default: ``epochs``).
        lr, hidden, num_classes, device, progress: as usual; ``fit_options`` go to :func:`mmbook.training.fit`.
    """
    from mmbook.multimodal import ClassifierHead, MultimodalModel
    from mmbook.runtime import pick_device
    from mmbook.training import fit

    device = pick_device(device)
    unimodal_epochs = epochs if unimodal_epochs is None else unimodal_epochs
    histories = {}
    for name, model in unimodal_models.items():
        if list(model.encoders) != [name]:
            raise ValueError(f"unimodal_models[{name!r}] must read only {name!r}, it reads {list(model.encoders)}")
        histories[name] = fit(model, train_loader, None, epochs=unimodal_epochs, lr=lr, device=device,
                              progress=progress, description=f"stage 1: {name}", **fit_options)
    features, probs = _heldout_reliability(unimodal_models, heldout_loader, device)
    estimator = ReliabilityEstimator([f.shape[1] for f in features])
    losses = fit_reliability_estimator(estimator, features, probs)
    encoders = {name: freeze(model.encoders[name]) for name, model in unimodal_models.items()}
    fusion = TwoStageFusion([f.shape[1] for f in features], hidden=hidden, estimator=estimator)
    fused = MultimodalModel(encoders, fusion, ClassifierHead(fusion.out_features, num_classes))
    history = fit(fused, train_loader, test_loader, epochs=epochs, lr=lr, device=device, progress=progress,
                  description="stage 2: fused", **fit_options)
    return TwoStageResult(fused, history, histories, losses)
