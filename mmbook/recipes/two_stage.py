"""The two-stage recipe: unimodal models, then a reliability estimator, then the fused model.

Stage 1 trains one model per modality, measures on held-out data how much
probability each puts on the true class, and fits a :class:`~mmbook.fusion.ReliabilityEstimator`
to predict those reliabilities from the unimodal features. Stage 2 freezes the
unimodal encoders and the estimator and trains only the projections and the head
of a :class:`~mmbook.fusion.TwoStageFusion` model.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from mmbook.data import DeviceLoader, take
from mmbook.fusion import ReliabilityEstimator, TwoStageFusion, fit_reliability_estimator, freeze
from mmbook.multimodal import ClassifierHead, MultimodalModel, captioned_cifar_model
from mmbook.runtime import pick_device, seed_everything
from mmbook.recipes.run import Run
from mmbook.training import fit

# The share of the training pairs (a fixed random part) that train_two_stage holds out to measure reliability.
HELDOUT_FRACTION = 0.1


@torch.no_grad()
def _heldout_reliability(models: Mapping[str, nn.Module], loader, device) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Unimodal features ``[(N, D_m)]`` and true-class probabilities ``(N, M)`` on held-out batches."""
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
    **fit_options,
) -> Run:
    """Train a two-stage weighted-fusion model from unimodal models and loaders you built.

    Args:
        unimodal_models: modality name -> untrained (or trained, with ``unimodal_epochs=0``)
            single-modality ``MultimodalModel``, e.g. ``captioned_cifar_model("image", ...)``.
            Their order sets the modality order.
        train_loader: training batches (for both stages).
        heldout_loader: batches *not* used for training, to measure reliability.
        test_loader: optional; evaluated after every stage-2 epoch.
        epochs: stage-2 epochs.
        unimodal_epochs: stage-1 epochs per modality (default: ``epochs``).
        lr, hidden, num_classes, device: as usual; ``fit_options`` go to :func:`mmbook.training.fit` (both stages).

    Returns:
        A :class:`~mmbook.recipes.Run` of the fused model with stage 2's history. ``metrics`` holds
        ``train_seconds`` (both stages), ``stage1_seconds``, and ``test_accuracy`` if a test loader was given.
    """
    device = pick_device(device)
    unimodal_epochs = epochs if unimodal_epochs is None else unimodal_epochs
    stage1_seconds = 0.0
    for name, model in unimodal_models.items():
        if list(model.encoders) != [name]:
            raise ValueError(f"unimodal_models[{name!r}] must read only {name!r}, it reads {list(model.encoders)}")
        history = fit(model, train_loader, None, epochs=unimodal_epochs, lr=lr, device=device,
                      description=f"stage 1: {name}", **fit_options)
        stage1_seconds += history.train_seconds
    features, probs = _heldout_reliability(unimodal_models, heldout_loader, device)
    sizes = [f.shape[1] for f in features]
    estimator = ReliabilityEstimator(sizes)
    fit_reliability_estimator(estimator, features, probs)
    encoders = {name: freeze(model.encoders[name]) for name, model in unimodal_models.items()}
    fusion = TwoStageFusion(sizes, hidden=hidden, estimator=estimator)
    fused = MultimodalModel(encoders, fusion, ClassifierHead(fusion.out_features, num_classes))
    history = fit(fused, train_loader, test_loader, epochs=epochs, lr=lr, device=device, description="stage 2: fused",
                  **fit_options)
    metrics = {"train_seconds": stage1_seconds + history.train_seconds, "stage1_seconds": stage1_seconds}
    if test_loader is not None and len(history):
        metrics["test_accuracy"] = history.last["test_accuracy"]
    return Run(fused, history, metrics)


def train_two_stage(
    train: Mapping[str, torch.Tensor],
    test: Mapping[str, torch.Tensor],
    vocab_size: int,
    *,
    text_encoder: str = "rnn",
    epochs: int = 3,
    batch_size: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    device: torch.device | str | None = None,
    **fit_options,
) -> Run:
    """Two-stage fusion on captioned CIFAR-10, as :func:`~mmbook.recipes.train_captioned` does the others.

    :data:`HELDOUT_FRACTION` of the training pairs is kept out of training to measure the unimodal
    models' reliability; the rest trains both stages.

    Args:
        train, test: batch dicts ``{"image": uint8 (N, 3, 32, 32), "text": (N, T), "label": (N,)}``.
        vocab_size, text_encoder: as in :func:`mmbook.multimodal.captioned_cifar_model`.
        epochs: epochs of each unimodal model and of the fused model.
        fit_options: passed to :func:`mmbook.training.fit` (e.g. ``amp``, ``progress``).
    """
    device = pick_device(device)
    seed_everything(seed)
    heldout = max(1, int(len(train["label"]) * HELDOUT_FRACTION))
    unimodal = {name: captioned_cifar_model(name, vocab_size, text_encoder=text_encoder) for name in ("image", "text")}
    return fit_two_stage(
        unimodal,
        DeviceLoader(take(train, heldout, seed=seed), batch_size, shuffle=True, device=device, seed=seed),
        # Every process measures reliability on the whole held-out part, so all train the same estimator.
        DeviceLoader(take(train, 0, heldout, seed=seed), 1000, device=device, rank=0, world_size=1),
        DeviceLoader(test, 1000, device=device),
        epochs=epochs, lr=lr, device=device, **fit_options,
    )
