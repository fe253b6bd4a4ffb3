import pytest
import torch

from mmbook.runtime import environment_report, glue, is_quick, pick_device, seed_everything


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("ON", True), ("0", False), ("", False), ("no", False)])
def test_is_quick_reads_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("MMBOOK_QUICK", value)
    assert is_quick() is expected


def test_is_quick_rejects_unclear_values(monkeypatch):
    monkeypatch.setenv("MMBOOK_QUICK", "maybe")
    with pytest.raises(ValueError, match="MMBOOK_QUICK"):
        is_quick()


def test_pick_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device() == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device(None) == torch.device("cuda")


def test_pick_device_explains_unavailable_or_unknown_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        pick_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        pick_device("gpu0")
    assert pick_device("cpu") == torch.device("cpu")


def test_seed_everything_makes_draws_repeatable():
    seed_everything(3)
    first = torch.rand(5)
    seed_everything(3)
    assert torch.equal(first, torch.rand(5))
    with pytest.raises(ValueError):
        seed_everything(-1)


def test_environment_report_is_one_line_with_device_and_mode(monkeypatch):
    monkeypatch.setenv("MMBOOK_QUICK", "1")
    report = environment_report(torch.device("cpu"))
    assert "\n" not in report
    assert "device cpu" in report and "mode quick" in report and "torch" in report


def test_cpu_has_native_bf16_answers_a_bool_and_false_without_the_checks(monkeypatch):
    import torch.cpu

    from mmbook.runtime import cpu_has_native_bf16

    assert isinstance(cpu_has_native_bf16(), bool)
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.delattr(torch.cpu, name, raising=False)
    assert cpu_has_native_bf16() is False
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert cpu_has_native_bf16() is True


def test_grad_scaler_only_scales_fp16():
    from mmbook.runtime import amp_dtype, grad_scaler

    cpu = torch.device("cpu")
    assert amp_dtype(cpu) == torch.bfloat16
    assert not grad_scaler(cpu, True).is_enabled()  # bf16 keeps float32's range: nothing to scale
    assert not grad_scaler(cpu, False).is_enabled()


def test_glue_uses_myst_nb_where_installed_and_shows_the_value_elsewhere(monkeypatch):
    import sys
    import types

    import IPython.display

    stored, shown = [], []
    monkeypatch.setitem(sys.modules, "myst_nb", types.SimpleNamespace(
        glue=lambda name, value, display=True: stored.append((name, value, display))))
    monkeypatch.setattr(IPython.display, "display", lambda value: shown.append(value))
    glue("accuracy", 0.5, display=False)
    assert stored == [("accuracy", 0.5, False)] and not shown
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # not installed (Colab, an autograder): import fails
    glue("accuracy", 0.5)
    glue("hidden", 0.25, display=False)
    assert shown == [0.5] and len(stored) == 1
