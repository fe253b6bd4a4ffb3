"""A checker for the exercise in which the reader writes a fusion module."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F


def _make_inputs(in_features: list[int], batch: int, sequences: bool, generator: torch.Generator) -> list[torch.Tensor]:
    if sequences:
        return [torch.randn(batch, 3 + i, d, generator=generator) for i, d in enumerate(in_features)]
    return [torch.randn(batch, d, generator=generator) for d in in_features]


def _two_modality_task(in_features: list[int], sequences: bool, n: int = 512, seed: int = 0):
    """Labels that need both modalities: ``y = [a > 0] + 2 [b > 0]`` (4 classes), a and b one per modality.

    Each modality alone can reach only 50%; an additive combination of the two reaches 100%.
    """
    generator = torch.Generator().manual_seed(seed)
    inputs = _make_inputs(in_features, n, sequences, generator)
    a, b = (x[..., 0].mean(1) if sequences else x[..., 0] for x in inputs[:2])
    labels = (a > 0).long() + 2 * (b > 0).long()
    return inputs, labels


def check_fusion_module(fusion_cls: Callable[..., nn.Module], in_features: list[int] | None = None, steps: int = 300) -> None:
    """Check a fusion class against the book's interface, then check that it really fuses.

    ``fusion_cls(in_features)`` must build a module with an ``out_features`` attribute
    whose ``forward(list of (B, D_m)) -> (B, out_features)``. The checks:

    1. the output shape is ``(B, out_features)`` for B = 1 and B = 5;
    2. samples do not affect each other (eval mode);
    3. the output depends on every modality (non-zero gradient to each input);
    4. with a small head, it learns a task that needs *both* modalities
       (labels ``[a > 0] + 2 [b > 0]``, a from modality 0, b from modality 1) to 90% training accuracy.

    Fusions that return logits (``produces_logits = True``) get no head; those with
    ``needs_sequences = True`` get ``(B, L_m, D_m)`` inputs.

    Raises:
        AssertionError: saying which check failed and what was expected.
    """
    in_features = list(in_features or [6, 4])
    if len(in_features) < 2:
        raise ValueError("check_fusion_module needs at least two modalities")
    torch.manual_seed(0)
    try:
        fusion = fusion_cls(in_features)
    except Exception as error:  # noqa: BLE001 - reported to the reader
        raise AssertionError(f"{fusion_cls.__name__}({in_features}) failed to build: {error!r}") from error
    out_features = getattr(fusion, "out_features", None)
    assert isinstance(out_features, int) and out_features > 0, (
        f"the module needs an integer attribute out_features > 0 (the size of its output); got {out_features!r}")
    sequences = bool(getattr(fusion, "needs_sequences", False))
    logits = bool(getattr(fusion, "produces_logits", False))
    generator = torch.Generator().manual_seed(1)

    fusion.eval()
    for batch in (1, 5):
        inputs = _make_inputs(in_features, batch, sequences, generator)
        out = fusion(inputs)
        assert isinstance(out, torch.Tensor), f"forward must return a tensor, got {type(out).__name__}"
        assert tuple(out.shape) == (batch, out_features), (
            f"for inputs of shapes {[tuple(x.shape) for x in inputs]} expected output shape ({batch}, {out_features}), "
            f"got {tuple(out.shape)}")
        assert torch.isfinite(out).all(), "the output contains NaN or inf"

    inputs = _make_inputs(in_features, 5, sequences, generator)
    full = fusion(inputs)
    single = fusion([x[2:3] for x in inputs])
    assert torch.allclose(full[2:3], single, atol=1e-5), (
        "sample 2's output changed when the other samples were removed: a fusion must treat samples independently "
        "(do not mix over the batch dimension)")

    inputs = [x.clone().requires_grad_(True) for x in _make_inputs(in_features, 5, sequences, generator)]
    fusion(inputs).pow(2).sum().backward()
    for m, x in enumerate(inputs):
        assert x.grad is not None and x.grad.abs().sum() > 0, (
            f"the output does not depend on modality {m}: its gradient is zero. Every modality must reach the output.")

    inputs, labels = _two_modality_task(in_features, sequences)
    torch.manual_seed(0)
    fusion = fusion_cls(in_features)
    head = nn.Identity() if logits else nn.Sequential(nn.Linear(out_features, 32), nn.ReLU(), nn.Linear(32, 4))
    model = nn.ModuleList([fusion, head])
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable, "the fusion and head have no trainable parameters"
    optimizer = torch.optim.Adam(trainable, lr=1e-2)
    fusion.train()
    for _ in range(steps):
        loss = F.cross_entropy(head(fusion(inputs)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    fusion.eval()
    with torch.no_grad():
        accuracy = float((head(fusion(inputs)).argmax(1) == labels).float().mean())
    assert accuracy >= 0.9, (
        f"with a small head, the fusion reached only {accuracy:.0%} training accuracy on a task that needs both "
        f"modalities (each alone gives 50%); expected at least 90%. Is information from every modality kept?")
    print("All checks passed")
