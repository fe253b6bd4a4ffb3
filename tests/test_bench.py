"""Tests of mmbook.bench (``mmbook bench loader``): the source's loop against the fast path."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_cifar


# --- benchmark --------------------------------------------------------------------------


def test_step_seconds_times_forward_and_backward_without_changing_the_weights():
    from mmbook.bench import step_seconds

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    before = model.weight.detach().clone()
    calls = []

    def loss_fn(output, batch):
        calls.append(batch.shape)
        return output.square().mean()

    seconds = step_seconds(model, torch.randn(5, 4), loss_fn, repeats=2)
    assert seconds > 0 and len(calls) == 3  # one warm-up step, two timed
    assert torch.equal(model.weight, before) and model.weight.grad is not None
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        step_seconds(model, torch.randn(5, 4), loss_fn, repeats=0)


def test_bench_amp_takes_bf16_on_cuda_and_on_cpus_that_have_it(monkeypatch):
    import mmbook.bench
    from mmbook.bench import bench_amp

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    for native in (True, False):
        monkeypatch.setattr(mmbook.bench, "cpu_has_native_bf16", lambda native=native: native)
        assert bench_amp(None, cpu) is native
        assert bench_amp(None, cuda) is True
        assert bench_amp(False, cuda) is False and bench_amp(True, cpu) is True  # an explicit choice wins
    assert bench_amp(None, torch.device("mps")) is False


def test_bench_loader_runs_both_loops_on_tiny_data():
    from mmbook.bench import SourceStyleCIFAR10, bench_loader

    data = tiny_cifar(40)
    dataset = SourceStyleCIFAR10(data["image"], data["label"])
    image, label = dataset[3]
    assert image.shape == (3, 32, 32) and label == 3
    torch.testing.assert_close(image, data["image"][3].float() / 255 * 2 - 1)
    result = bench_loader(data["image"], data["label"], device="cpu", baseline_images=20, fast_batch_size=8)
    assert result.baseline_images == 20
    assert result.fast_images == 40
    assert result.ratio > 0
    assert "speed-up" in result.table()
    assert result.ceiling_images_per_second > 0 and "ceiling" in result.table()
    from mmbook.runtime import cpu_has_native_bf16

    assert result.fast_amp == cpu_has_native_bf16()  # on a CPU, bf16 by default only where it is native
    with_amp = bench_loader(data["image"], data["label"], device="cpu", baseline_images=8, fast_batch_size=8,
                            amp=True, ceiling=False)
    assert with_amp.fast_amp and with_amp.ceiling_images_per_second is None
    assert "amp" in with_amp.table() and "ceiling" not in with_amp.table()
    with pytest.raises(ValueError, match="uint8"):
        bench_loader(data["image"].float(), data["label"])
