"""Files of tensors that are written atomically and read safely: the data caches and checkpoints.

A stale, corrupt or unreadable cache costs time, never data: :func:`cached` rebuilds it from the source.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

T = TypeVar("T")
CACHE_FORMAT = 1


def atomic_save(value: Any, path: Path | str) -> None:
    """``torch.save(value, path)`` atomically: the file is either the old one or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        torch.save(value, temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def load_tensors(path: Path | str) -> Any:
    """Read a file written by :func:`atomic_save` with ``weights_only=True`` (tensors and plain containers only).

    Raises:
        ValueError: if the file cannot be read (truncated, or not a tensor file), naming the cause.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a damaged file
        raise ValueError(f"{path} cannot be read ({error.__class__.__name__}: {error})") from error


def cached(path: Path | str, key: str, build: Callable[[], T], valid: Callable[[T], bool] = lambda value: True) -> T:
    """The value stored at ``path`` under ``key``, or ``build()``'s, which is then stored there.

    Args:
        path: the cache file.
        key: identifies the source and settings the value was built from; a stored value with
            another key is stale and is rebuilt.
        build: makes the value from its source (slow).
        valid: a last check of a stored value (e.g. shapes and dtypes); one that fails is rebuilt.

    A cache that cannot be written (e.g. a read-only directory) gives a warning, and the
    built value is returned anyway.
    """
    path = Path(path)
    if path.exists():
        try:
            blob = load_tensors(path)
            if isinstance(blob, dict) and blob.get("format") == CACHE_FORMAT and blob.get("key") == key \
                    and valid(blob["value"]):
                return blob["value"]
            warnings.warn(f"cache {path} does not match its source; rebuilding it", stacklevel=2)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            warnings.warn(f"cache {path} is unreadable ({error}); rebuilding it", stacklevel=2)
    value = build()
    try:
        atomic_save({"format": CACHE_FORMAT, "key": key, "value": value}, path)
    except OSError as error:
        warnings.warn(f"could not write cache {path} ({error}); continuing without it", stacklevel=2)
    return value
