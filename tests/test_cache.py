"""Tests of mmbook.data.cache: atomic writes, safe reads, and a cache that rebuilds what it cannot trust."""

from __future__ import annotations

import os

import pytest
import torch

from mmbook.data.cache import CACHE_FORMAT, atomic_save, cached, load_tensors


def test_atomic_save_leaves_no_temporary_file_and_reads_back(tmp_path):
    path = tmp_path / "sub" / "value.pt"
    atomic_save({"x": torch.arange(3), "name": "a"}, path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["value.pt"]
    value = load_tensors(path)
    assert torch.equal(value["x"], torch.arange(3)) and value["name"] == "a"


def test_an_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "value.pt"
    atomic_save({"version": 1}, path)

    def crash(value, file):
        open(file, "wb").write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"version": 2}, path)
    monkeypatch.undo()
    assert load_tensors(path) == {"version": 1}
    assert sorted(os.listdir(tmp_path)) == ["value.pt"]


def test_load_tensors_names_the_file_and_the_cause(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(b"not a tensor file")
    with pytest.raises(ValueError, match=r"bad\.pt cannot be read \("):
        load_tensors(path)


def test_cached_builds_once_then_reuses(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return torch.ones(2)

    first = cached(tmp_path / "c.pt", "key-1", build)
    second = cached(tmp_path / "c.pt", "key-1", build)
    assert torch.equal(first, second) and len(calls) == 1
    assert load_tensors(tmp_path / "c.pt")["format"] == CACHE_FORMAT


@pytest.mark.parametrize("damage", ["stale key", "corrupt file", "invalid value"])
def test_cached_rebuilds_what_it_cannot_trust(tmp_path, damage):
    path = tmp_path / "c.pt"
    cached(path, "key-1", lambda: torch.zeros(2))
    key, valid = "key-1", lambda value: True
    if damage == "stale key":
        key = "key-2"
    elif damage == "corrupt file":
        path.write_bytes(b"\x00 truncated")
    else:
        valid = lambda value: bool(value.sum() > 0)  # noqa: E731
    with pytest.warns(UserWarning, match="does not match|unreadable"):
        value = cached(path, key, lambda: torch.full((2,), 7.0), valid)
    assert torch.equal(value, torch.full((2,), 7.0))
    assert torch.equal(cached(path, key, lambda: torch.zeros(2), valid), value)  # the rebuilt value was stored


def test_cached_works_without_a_writable_directory(tmp_path, monkeypatch):
    def refuse(value, path):
        raise PermissionError("read-only file system")

    monkeypatch.setattr("mmbook.data.cache.atomic_save", refuse)
    with pytest.warns(UserWarning, match="could not write cache"):
        assert cached(tmp_path / "c.pt", "k", lambda: 5) == 5
