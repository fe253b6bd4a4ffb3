"""Runtime helpers: which device to use, seeding, quick mode, an environment report, ``glue``.

Every chapter starts by calling :func:`environment_report`, so a reader always
sees which device and which mode produced the numbers on the page.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

QUICK_ENV_VAR = "MMBOOK_QUICK"
_TRUE_WORDS = {"1", "true", "yes", "on"}
_FALSE_WORDS = {"", "0", "false", "no", "off"}


def is_quick() -> bool:
    """Return True when quick mode is on (``MMBOOK_QUICK=1``).

    Quick mode shrinks data and epochs so that every notebook runs in about a
    minute; tests and CI use it. Full mode produces the published numbers.

    Raises:
        ValueError: if the variable holds something other than a yes/no word.
    """
    raw = os.environ.get(QUICK_ENV_VAR, "").strip().lower()
    if raw in _TRUE_WORDS:
        return True
    if raw in _FALSE_WORDS:
        return False
    raise ValueError(
        f"{QUICK_ENV_VAR}={raw!r} is not understood; expected one of "
        f"{sorted(_TRUE_WORDS | _FALSE_WORDS - {''})}. Set {QUICK_ENV_VAR}=1 for quick mode "
        f"or unset it for full mode."
    )


def pick_device(preferred: str | torch.device | None = None) -> torch.device:
    """Choose the device to train on: CUDA, then Apple MPS, then CPU.

    Args:
        preferred: ``None`` or ``"auto"`` picks automatically; otherwise a device
            string such as ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"mps"``.

    Raises:
        ValueError: if the preferred device is not a device name or is not
            available on this machine.
    """
    mps = getattr(torch.backends, "mps", None)
    mps_available = mps is not None and mps.is_available()
    if preferred is None or str(preferred) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps_available else "cpu")
    try:
        device = torch.device(preferred)
    except RuntimeError as error:
        raise ValueError(
            f"unknown device {preferred!r}; expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but CUDA is not available here; use 'auto' or 'cpu'")
    if device.type == "mps" and not mps_available:
        raise ValueError("device 'mps' was asked for but Apple MPS is not available here; use 'auto' or 'cpu'")
    if device.type not in {"cpu", "cuda", "mps"}:
        raise ValueError(f"device {preferred!r} is not supported; expected 'auto', 'cpu', 'cuda' or 'mps'")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and all GPUs) with ``seed``.

    With the same seed, training on the CPU gives identical metrics run to run.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # on every device, GPUs included


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX); without, bf16 is emulated and slow.

    Asks PyTorch's private CPU feature checks; where they are missing the answer is ``False``.
    """
    import torch.cpu

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def resolve_amp(amp: bool | None, device: torch.device) -> bool:
    """Whether to train in mixed precision: ``amp`` if given, else on for CUDA only."""
    return device.type == "cuda" if amp is None else bool(amp)


def amp_dtype(device: torch.device) -> torch.dtype:
    """The mixed-precision type on ``device``: bf16, except fp16 on CUDA GPUs without bf16."""
    return torch.float16 if device.type == "cuda" and not torch.cuda.is_bf16_supported() else torch.bfloat16


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on ``device`` in :func:`amp_dtype` when ``enabled``, else a no-op context."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype(device))


def grad_scaler(device: torch.device, enabled: bool) -> torch.amp.GradScaler:
    """A gradient scaler that is active only where mixed precision uses fp16 (bf16 needs none)."""
    return torch.amp.GradScaler(device.type, enabled=enabled and amp_dtype(device) == torch.float16)


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for a ``with`` block, then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def glue(name: str, value: object, display: bool = True) -> None:
    """MyST-NB's ``glue``: store ``value`` under ``name`` for the page's prose (``{glue:text}`name```).

    The book build has MyST-NB; where it is not installed (Colab, a plain Jupyter, an
    autograder) there is no page to glue into, so the value is only shown when ``display``.
    """
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        if display:
            from IPython.display import display as show

            show(value)
        return
    myst_glue(name, value, display=display)


def environment_report(device: torch.device | None = None) -> str:
    """One line saying which versions, device and mode are in use.

    Example: ``mmbook 0.1.0 | torch 2.14.1 | python 3.11.7 | device cpu (2 threads, x86_64) | mode full``
    """
    from mmbook import __version__

    device = device or pick_device()
    described = device.type
    if device.type == "cuda":
        described = f"cuda ({torch.cuda.get_device_name(device)})"
    elif device.type == "cpu":
        described = f"cpu ({torch.get_num_threads()} threads, {platform.machine()})"
    return (f"mmbook {__version__} | torch {torch.__version__} | python {platform.python_version()} | "
            f"device {described} | mode {'quick' if is_quick() else 'full'}")
