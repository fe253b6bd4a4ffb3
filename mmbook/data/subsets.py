"""Fixed random subsets of a batch dict, for experiments that need disjoint parts of one data set."""

from __future__ import annotations

from collections.abc import Mapping

import torch


def take(tensors: Mapping[str, torch.Tensor], start: int, stop: int | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """Samples ``start:stop`` of a fixed random order of a batch dict.

    The data sets are stored sorted by class, so a plain slice would hold only a few
    classes. ``take`` first shuffles with a fixed ``seed`` (the same order on every
    call), then slices: ``take(t, 0, 1000)`` and ``take(t, 1000, 2000)`` never overlap.
    """
    sizes = {int(t.shape[0]) for t in tensors.values()}
    if len(sizes) != 1:
        raise ValueError(f"all tensors must have the same number of samples, got {sorted(sizes)}")
    order = torch.randperm(sizes.pop(), generator=torch.Generator().manual_seed(seed))[start:stop]
    return {name: t[order.to(t.device)] for name, t in tensors.items()}
