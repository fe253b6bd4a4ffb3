"""Checkpoints of a training run: what :func:`mmbook.training.fit` saves after every epoch and resumes from.

A checkpoint is one file, ``last.pt`` in the run's checkpoint directory, written atomically (a crash
mid-write never corrupts the previous one) and holding tensors and plain containers only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mmbook.data.cache import atomic_save, load_tensors

CHECKPOINT_NAME = "last.pt"
_CHECKPOINT_FORMAT = 1


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, safely (``torch.load(weights_only=True)``).

    Raises:
        FileNotFoundError: if there is no checkpoint at ``path``.
        ValueError: if the file is not a readable mmbook checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; train without --resume first, or check the directory")
    try:
        state = load_tensors(path)
    except ValueError as error:
        raise ValueError(f"checkpoint {error}. It may be truncated or from another program; delete it to start "
                         f"afresh.") from error
    if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an mmbook checkpoint (format {_CHECKPOINT_FORMAT})")
    return state


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                    records: list[dict[str, float]], planned_epochs: int, loader_generator: torch.Generator | None,
                    extra: dict[str, Any] | None = None) -> None:
    """Write everything a run needs to continue exactly where it stopped, as plain data and tensors, atomically."""
    atomic_save({
        "format": _CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "history": records,
        "planned_epochs": planned_epochs,
        "torch_rng": torch.get_rng_state(),
        "loader_rng": loader_generator.get_state() if loader_generator is not None else None,
        "extra": extra or {},
    }, path)


def _same(a: Any, b: Any) -> bool:
    """Whether two stored settings are equal (tensors compared element by element)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    return bool(a == b)


def restore_training_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                           planned_epochs: int, loader_generator: torch.Generator | None,
                           extra: dict[str, Any] | None = None) -> list[dict[str, float]]:
    """Load the checkpoint at ``path`` into the model, optimizer, scheduler and random generators.

    ``extra`` is the run's own ``extra_state``: a setting stored in the checkpoint under the same name must
    have the same value (a GMU with ``normalize=True`` has the same parameters as one without, so the
    weights alone would load into the wrong model without a word).

    Returns:
        The history records of the epochs already done.

    Raises:
        ValueError: the checkpoint belongs to a run of another length (the learning-rate schedule
            depends on it) or with other settings, or the file is not a readable checkpoint.
    """
    state = load_checkpoint(path)
    planned = state.get("planned_epochs")
    if planned != planned_epochs:
        raise ValueError(f"checkpoint {path} belongs to a run of {planned} epochs, not {planned_epochs}; resume with "
                         f"epochs={planned} (CLI: --epochs {planned}), or start a new run in another checkpoint "
                         "directory")
    saved = state.get("extra") or {}
    for name, value in (extra or {}).items():
        if name in saved and not _same(saved[name], value):
            raise ValueError(f"checkpoint {path} belongs to a run with {name}={saved[name]!r}, not {value!r}; resume "
                             f"with the same settings, or start a new run in another checkpoint directory")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if loader_generator is not None and state.get("loader_rng") is not None:
        loader_generator.set_state(state["loader_rng"])
    return list(state["history"])
