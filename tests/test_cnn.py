"""Tests of mmbook.cnn, mmbook.fastcnn and mmbook.bench (tiny data, CPU, no network)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from mmbook.cnn import (
    ConvBlock,
    ImageClassifier,
    LeNet,
    PooledConvBlock,
    SmallCNN,
    check_conv2d,
    count_flops,
    count_parameters,
    small_cnn,
)
from mmbook.fastcnn import (
    GPU_RECIPE,
    FastCNNConfig,
    build_fastcnn,
    evaluate_images,
    patch_whitening_weights,
    train_fastcnn,
)


def reference_conv2d(images, weight, bias, stride, padding):
    return F.conv2d(images, weight, bias, stride=stride, padding=padding)


def unfold_conv2d(images, weight, bias, stride, padding):
    """A correct from-scratch conv2d: unfold plus matrix product."""
    stride = (stride, stride) if isinstance(stride, int) else tuple(stride)
    padding = (padding, padding) if isinstance(padding, int) else tuple(padding)
    batch, _, height, width = images.shape
    out_channels, _, kernel_h, kernel_w = weight.shape
    columns = F.unfold(images, (kernel_h, kernel_w), stride=stride, padding=padding)
    out = weight.view(out_channels, -1) @ columns
    if bias is not None:
        out = out + bias.view(1, -1, 1)
    out_h = (height + 2 * padding[0] - kernel_h) // stride[0] + 1
    out_w = (width + 2 * padding[1] - kernel_w) // stride[1] + 1
    return out.view(batch, out_channels, out_h, out_w)


def tiny_cifar(n: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    # Class-dependent mean colour, so that a model can learn something in a few steps.
    base = (labels.view(-1, 1, 1, 1).float() * 25).expand(n, 3, 32, 32)
    noise = torch.randint(0, 30, (n, 3, 32, 32), generator=generator).float()
    return {"image": (base + noise).clamp(0, 255).to(torch.uint8), "label": labels}


# --- models ---------------------------------------------------------------------------


def test_small_cnn_shapes_and_features():
    model = small_cnn()
    images = torch.randn(4, 3, 32, 32)
    assert model(images).shape == (4, 10)
    assert model.features(images).shape == (4, 128)
    assert SmallCNN(widths=(8, 16, 24), num_classes=5)(images).shape == (4, 5)


def test_conv_block_keeps_the_size():
    block = ConvBlock(3, 8)
    assert block(torch.randn(2, 3, 16, 16)).shape == (2, 8, 16, 16)


def test_small_cnn_rejects_bad_widths_and_images():
    with pytest.raises(ValueError, match="three positive channel counts"):
        SmallCNN(widths=(32, 64))
    with pytest.raises(ValueError, match=r"add a batch dimension"):
        small_cnn()(torch.randn(3, 32, 32))
    with pytest.raises(TypeError, match="normalize_images"):
        small_cnn()(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_image_classifier_reads_the_image_entry():
    torch.manual_seed(0)
    network = LeNet()
    model = ImageClassifier(network)
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model({"image": images, "label": torch.zeros(2)}), network(images))
    with pytest.raises(KeyError, match="'image' entry"):
        model({"text": images})


def test_models_are_deterministic_given_the_seed():
    torch.manual_seed(1)
    first = small_cnn()
    torch.manual_seed(1)
    second = small_cnn()
    images = torch.randn(2, 3, 32, 32)
    first.eval(), second.eval()
    torch.testing.assert_close(first(images), second(images))


# --- FLOPs ------------------------------------------------------------------------------


@pytest.mark.parametrize("build", [LeNet, small_cnn])
def test_count_flops_agrees_with_torch_flop_counter(build):
    model = build()
    with FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, 3, 32, 32))
    assert count_flops(model) == counter.get_total_flops()


def test_count_flops_by_hand_for_lenet():
    # conv1: 6*28*28 outputs x 3*5*5 MACs; conv2: 16*10*10 x 6*5*5; fc: 400*120 + 120*84 + 84*10.
    macs = 6 * 28 * 28 * 75 + 16 * 10 * 10 * 150 + 400 * 120 + 120 * 84 + 84 * 10
    assert count_flops(LeNet()) == 2 * macs


def test_count_flops_leaves_mode_and_hooks_as_they_were():
    model = LeNet().train()
    count_flops(model)
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        count_flops(model, (32, 32))


def test_count_parameters():
    model = nn.Linear(3, 2)
    assert count_parameters(model) == 8
    model.bias.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 6
    assert count_parameters(LeNet()) == 62006


# --- checker ----------------------------------------------------------------------------


def test_check_conv2d_accepts_correct_implementations(capsys):
    check_conv2d(reference_conv2d)
    check_conv2d(unfold_conv2d)
    assert "All checks passed" in capsys.readouterr().out


def test_check_conv2d_rejects_missing_bias():
    def no_bias(images, weight, bias, stride, padding):
        return F.conv2d(images, weight, None, stride=stride, padding=padding)

    with pytest.raises(AssertionError, match="bias is missing"):
        check_conv2d(no_bias)


def test_check_conv2d_rejects_ignored_stride():
    def no_stride(images, weight, bias, stride, padding):
        return F.conv2d(images, weight, bias, stride=1, padding=padding)

    with pytest.raises(AssertionError, match=r"(?s)wrong output shape .*stride=2"):
        check_conv2d(no_stride)


def test_check_conv2d_rejects_flipped_kernel_and_errors():
    def flipped(images, weight, bias, stride, padding):
        return F.conv2d(images, weight.flip(2, 3), bias, stride=stride, padding=padding)

    with pytest.raises(AssertionError, match="flipped the kernel"):
        check_conv2d(flipped)

    def broken(images, weight, bias, stride, padding):
        raise IndexError("oops")

    with pytest.raises(AssertionError, match="raised IndexError: oops"):
        check_conv2d(broken)
    with pytest.raises(TypeError, match="expects a function"):
        check_conv2d(42)


def test_pooled_block_halves_the_resolution_and_starts_near_the_identity():
    block = PooledConvBlock(4, 8)
    x = torch.randn(2, 4, 16, 16)
    assert block(x).shape == (2, 8, 8, 8)
    # The first 4 filters of conv1 copy the 4 input channels (dirac init); the other 4 are random.
    torch.testing.assert_close(F.conv2d(x, block.conv1.weight[:4], padding=1), x)
    assert not torch.allclose(F.conv2d(x, block.conv1.weight[4:], padding=1), torch.zeros(2, 4, 16, 16))
    torch.testing.assert_close(F.conv2d(x.repeat(1, 2, 1, 1), block.conv2.weight, padding=1), x.repeat(1, 2, 1, 1))


def test_small_cnn_gpu_layout_and_block_choice():
    images = torch.randn(2, 3, 32, 32)
    for block in ("residual", "pooled"):
        model = SmallCNN(widths=(8, 16, 16), stem_pool=False, block=block)
        assert model(images).shape == (2, 10)
    # Without the stem pool the blocks see 4x the pixels: about 4x the FLOPs.
    cpu_layout = count_flops(SmallCNN(widths=(8, 16, 16)))
    gpu_layout = count_flops(SmallCNN(widths=(8, 16, 16), stem_pool=False))
    assert 3.0 < gpu_layout / cpu_layout < 4.5
    with pytest.raises(ValueError, match="block must be one of"):
        SmallCNN(block="dense")


# --- fastcnn ----------------------------------------------------------------------------


def test_patch_whitening_decorrelates_patches():
    generator = torch.Generator().manual_seed(0)
    # Correlated channels: the second and third channels are mostly copies of the first.
    first = torch.randn(200, 1, 8, 8, generator=generator)
    images = torch.cat([first, first + 0.1 * torch.randn(200, 1, 8, 8, generator=generator),
                        first + 0.3 * torch.randn(200, 1, 8, 8, generator=generator)], dim=1)
    weights = patch_whitening_weights(images, kernel_size=2, eps=0.0)
    assert weights.shape == (24, 3, 2, 2)
    outputs = F.conv2d(images, weights[:12])  # (N, 12, 7, 7)
    flat = outputs.permute(0, 2, 3, 1).reshape(-1, 12)
    covariance = torch.cov(flat.T)
    torch.testing.assert_close(covariance, torch.eye(12), atol=0.05, rtol=0)
    torch.testing.assert_close(weights[12:], -weights[:12])


def test_patch_whitening_rejects_uint8():
    with pytest.raises(ValueError, match="normalized float images"):
        patch_whitening_weights(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))


def test_build_fastcnn_freezes_the_whitened_stem():
    data = tiny_cifar()
    model = build_fastcnn(FastCNNConfig(widths=(8, 8, 8)), data["image"])
    assert not model.stem.weight.requires_grad
    assert model.stem.weight.shape == (24, 3, 2, 2)
    with pytest.raises(ValueError, match="needs the training images"):
        build_fastcnn(FastCNNConfig())


def test_fastcnn_config_validates():
    with pytest.raises(ValueError, match="epochs"):
        FastCNNConfig(epochs=0)
    with pytest.raises(ValueError, match="batch_size"):
        FastCNNConfig(batch_size=1)
    with pytest.raises(ValueError, match="label_smoothing"):
        FastCNNConfig(label_smoothing=1.5)


def test_train_fastcnn_learns_and_is_deterministic():
    data = tiny_cifar(128)
    config = FastCNNConfig(epochs=4, batch_size=16, widths=(8, 8, 8), lr=0.4)
    first = train_fastcnn(data, data, config, device="cpu", progress=False)
    second = train_fastcnn(data, data, config, device="cpu", progress=False)
    assert len(first.history) == 4
    assert first.history[-1]["train_loss"] < first.history[0]["train_loss"]
    assert first.test_accuracy > 0.3  # chance is 0.1; colours separate the classes
    assert first.test_accuracy_tta is not None
    assert first.test_accuracy == second.test_accuracy
    assert first.history[-1]["train_loss"] == second.history[-1]["train_loss"]


def test_fastcnn_config_validates_the_gpu_settings():
    with pytest.raises(ValueError, match="cutout"):
        FastCNNConfig(cutout=-1)
    with pytest.raises(ValueError, match="tta_shift"):
        FastCNNConfig(tta_shift=5)
    with pytest.raises(ValueError, match="norm_bias_lr_scale"):
        FastCNNConfig(norm_bias_lr_scale=0.0)
    FastCNNConfig(**GPU_RECIPE)  # the published GPU recipe is a valid config


def test_fastcnn_config_for_device_picks_the_gpu_recipe_on_cuda(monkeypatch):
    assert FastCNNConfig.for_device("cpu") == FastCNNConfig()
    assert FastCNNConfig.for_device("cpu", epochs=3).epochs == 3
    import mmbook.fastcnn

    monkeypatch.setattr(mmbook.fastcnn, "pick_device", lambda device=None: torch.device("cuda"))
    config = FastCNNConfig.for_device(None, epochs=5)
    assert config == FastCNNConfig(**{**GPU_RECIPE, "epochs": 5})
    assert config.block == "pooled" and not config.stem_pool
    assert FastCNNConfig.for_device(None, recipe="cpu") == FastCNNConfig()


def test_fastcnn_config_for_device_takes_a_named_recipe():
    from mmbook.fastcnn import GPU_RECIPE_93

    config = FastCNNConfig.for_device("cpu", recipe="gpu-93", epochs=2)
    assert config == FastCNNConfig(**{**GPU_RECIPE_93, "epochs": 2})
    assert config.widths == (256, 1024, 1024) and config.lookahead_every == 5
    assert FastCNNConfig.for_device("cpu", recipe="gpu") == FastCNNConfig(**GPU_RECIPE)
    with pytest.raises(ValueError, match="recipe must be one of"):
        FastCNNConfig.for_device("cpu", recipe="gpu-94")


def test_train_fastcnn_with_the_airbench_norm_keeps_the_scales_at_one():
    data = tiny_cifar(64)
    config = FastCNNConfig(epochs=1, batch_size=16, widths=(8, 8, 8), block="pooled", stem_pool=False,
                           train_norm_scale=False, norm_bias_lr_scale=8.0, cutout=6, tta_shift=1)
    result = train_fastcnn(data, data, config, device="cpu", progress=False)
    norms = [m for m in result.model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in norms)
    assert any(m.bias.abs().sum() > 0 for m in norms)  # the shifts did learn
    assert 0.0 <= result.test_accuracy_tta <= 1.0


def test_train_fastcnn_weight_averaging_returns_the_averaged_model():
    data = tiny_cifar(64)
    config = FastCNNConfig(epochs=2, batch_size=16, widths=(8, 8, 8))
    last = train_fastcnn(data, data, config, device="cpu", progress=False)
    averaged = train_fastcnn(data, data, dataclasses.replace(config, ema_decay=0.5), device="cpu", progress=False)
    # Same seed, same steps: only the returned weights differ, being an average of the last steps.
    assert last.history == [{**h, "seconds": l["seconds"]} for h, l in zip(averaged.history, last.history)]
    assert not torch.equal(last.model.head.weight, averaged.model.head.weight)
    assert 0.0 <= averaged.test_accuracy <= 1.0
    with pytest.raises(ValueError, match="ema_decay"):
        FastCNNConfig(ema_decay=1.0)


def test_fastcnn_config_validates_the_airbench_tricks():
    with pytest.raises(ValueError, match="lr_start"):
        FastCNNConfig(lr_start=1.5)
    with pytest.raises(ValueError, match="lr_end"):
        FastCNNConfig(lr_end=-0.1)
    with pytest.raises(ValueError, match="lookahead_every"):
        FastCNNConfig(lookahead_every=-5)
    with pytest.raises(ValueError, match="whiten_bias_epochs"):
        FastCNNConfig(whiten_bias_epochs=-1)


def test_fastcnn_config_validates_airbench_norm_and_stem_settings():
    with pytest.raises(ValueError, match="stem_activation"):
        FastCNNConfig(stem_activation="tanh")
    with pytest.raises(ValueError, match="norm_momentum"):
        FastCNNConfig(norm_momentum=0.0)
    with pytest.raises(ValueError, match="norm_eps"):
        FastCNNConfig(norm_eps=-1e-5)
    with pytest.raises(ValueError, match="stem_activation"):
        SmallCNN(stem_activation="tanh")


def test_build_fastcnn_applies_airbench_norm_and_stem_settings():
    data = tiny_cifar(64)
    config = FastCNNConfig(widths=(8, 8, 8), stem_activation="gelu", norm_momentum=0.4, norm_eps=1e-12)
    model = build_fastcnn(config, data["image"])
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(m.momentum == 0.4 and m.eps == 1e-12 for m in norms)
    images = torch.randn(2, 3, 32, 32)
    stem = model.stem(images)
    # The stem's negative outputs reach block1 through GELU (slightly negative), not through ReLU (zero).
    assert torch.equal(model.stem_activation(stem), F.gelu(stem))
    assert not torch.equal(build_fastcnn(FastCNNConfig(widths=(8, 8, 8)), data["image"]).stem_activation(stem),
                           F.gelu(stem))


def test_train_fastcnn_decays_norm_biases_only_when_asked():
    data = tiny_cifar(64)
    config = FastCNNConfig(epochs=2, batch_size=16, widths=(8, 8, 8), lr=0.4, weight_decay=0.5,
                           norm_bias_lr_scale=4.0, train_norm_scale=False)
    free = train_fastcnn(data, None, config, device="cpu", progress=False)
    decayed = train_fastcnn(data, None, dataclasses.replace(config, norm_bias_decay=True), device="cpu", progress=False)
    # Same seed, same batches: with decay, the shifts are pulled toward zero.
    assert decayed.model.block3.norm2.bias.abs().sum() < free.model.block3.norm2.bias.abs().sum()


def test_lookahead_averages_the_weights_and_copies_the_average_back():
    from mmbook.fastcnn import Lookahead

    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    start = {name: value.clone() for name, value in model.state_dict().items()}
    lookahead = Lookahead(model)
    with torch.no_grad():
        model[0].weight.add_(2.0)
        model[1].running_mean.add_(4.0)
    lookahead.update(model, decay=0.75)
    torch.testing.assert_close(model[0].weight, start["0.weight"] + 0.5)  # 0.75 * w + 0.25 * (w + 2)
    torch.testing.assert_close(model[1].running_mean, start["1.running_mean"] + 1.0)
    assert int(model[1].num_batches_tracked) == int(start["1.num_batches_tracked"])  # integers are left alone
    with torch.no_grad():
        model[0].weight.add_(10.0)
    lookahead.update(model, decay=1.0)  # back to the average, whatever the steps since
    torch.testing.assert_close(model[0].weight, start["0.weight"] + 0.5)


def test_train_fastcnn_with_airbench_tricks_learns_and_freezes_the_whitening_bias():
    data = tiny_cifar(128)
    config = FastCNNConfig(epochs=8, batch_size=16, widths=(8, 8, 8), lr=0.4, alternate_flip=True, lookahead_every=2,
                           lr_start=0.2, lr_end=0.07, warmup=0.23, whiten_bias_epochs=0)
    result = train_fastcnn(data, data, config, device="cpu", progress=False)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.test_accuracy > 0.3  # chance is 0.1
    assert torch.equal(result.model.stem.bias, torch.zeros_like(result.model.stem.bias))  # never trained
    trained = train_fastcnn(data, data, dataclasses.replace(config, whiten_bias_epochs=None), device="cpu",
                            progress=False)
    assert trained.model.stem.bias.abs().sum() > 0


def test_train_fastcnn_stops_with_a_clear_error_when_it_diverges():
    data = tiny_cifar(64)
    config = FastCNNConfig(epochs=2, batch_size=16, widths=(8, 8, 8), lr=1e30)
    with pytest.raises(FloatingPointError, match="training diverged in epoch 1.*Lower lr"):
        train_fastcnn(data, data, config, device="cpu", progress=False)


def test_train_fastcnn_rejects_float_images():
    data = tiny_cifar()
    data["image"] = data["image"].float()
    with pytest.raises(TypeError, match="must be uint8"):
        train_fastcnn(data, config=FastCNNConfig(epochs=1), device="cpu", progress=False)


def test_evaluate_images_with_tta_on_a_mirror_symmetric_model():
    from mmbook.data import DeviceLoader

    data = tiny_cifar(32)
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 10))
    loader = DeviceLoader(data, 16)
    # Average pooling ignores left-right order, so flip TTA cannot change the prediction.
    assert evaluate_images(model, loader, tta=False) == evaluate_images(model, loader, tta=True)


def test_evaluate_images_with_shift_tta_sees_six_views():
    from mmbook.data import DeviceLoader

    data = tiny_cifar(16)
    seen: list[torch.Tensor] = []

    class Recorder(nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            seen.append(images.clone())
            return images.mean(dim=(2, 3)).repeat(1, 4)[:, :10]

    loader = DeviceLoader(data, 16)
    accuracy = evaluate_images(Recorder(), loader, tta=True, shift=1)
    assert 0.0 <= accuracy <= 1.0
    assert len(seen) == 6  # the image and its mirror, then two shifted copies and their mirrors
    images = next(iter(loader))["image"]
    padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
    torch.testing.assert_close(seen[2], padded[:, :, 0:32, 0:32])
    torch.testing.assert_close(seen[5], padded[:, :, 2:34, 2:34].flip(3))


# --- benchmark --------------------------------------------------------------------------


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


# --- command line -----------------------------------------------------------------------


@pytest.fixture()
def tiny_imagefolder(tmp_path, monkeypatch):
    """A 100-image CIFAR-10 look-alike in the ImageFolder layout (10 JPEGs per class and split)."""
    import numpy as np
    from PIL import Image

    from mmbook.data import CIFAR10_CLASSES

    generator = np.random.default_rng(0)
    for split in ("train", "test"):
        for label, name in enumerate(CIFAR10_CLASSES):
            folder = tmp_path / "data" / "cifar10" / split / name
            folder.mkdir(parents=True)
            for k in range(10):
                pixels = np.clip(label * 25 + generator.integers(0, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{k:04d}.jpg")
    monkeypatch.setenv("MMBOOK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MMBOOK_OFFLINE", "1")
    monkeypatch.delenv("MMBOOK_QUICK", raising=False)
    return tmp_path / "data"


@pytest.mark.parametrize("model", ["lenet", "fastcnn"])
def test_cli_trains_image_models(tiny_imagefolder, tmp_path, model, capsys):
    import json

    from mmbook.cli import main

    out = tmp_path / f"{model}.json"
    status = main(["train", "--task", "cifar10", "--model", model, "--epochs", "1", "--batch-size", "20",
                   "--data", str(tiny_imagefolder), "--device", "cpu", "--no-progress", "--json", str(out)])
    assert status == 0
    result = json.loads(out.read_text())
    assert result["model"] == model and result["train_images"] == 100 and result["epochs"] == 1
    assert 0.0 <= result["test_accuracy"] <= 1.0
    assert "test accuracy" in capsys.readouterr().out


def test_cli_rejects_bad_image_model_values(tiny_imagefolder, capsys):
    from mmbook.cli import main

    assert main(["train", "--task", "cifar10", "--model", "resnet50"]) == 2
    assert "invalid choice: 'resnet50'" in capsys.readouterr().err
    assert main(["train", "--task", "cifar10", "--fusion", "concat", "--modalities", "text",
                 "--data", str(tiny_imagefolder)]) == 2
    assert "apply to --task cifar10-captions" in capsys.readouterr().err
    assert main(["bench", "loader", "--batch-size", "0"]) == 2
    assert "must be a positive whole number" in capsys.readouterr().err


def test_cli_bench_loader_prints_the_ratio(tiny_imagefolder, capsys):
    from mmbook.cli import main

    status = main(["bench", "loader", "--data", str(tiny_imagefolder), "--baseline-images", "8",
                   "--batch-size", "16", "--device", "cpu"])
    assert status == 0
    out = capsys.readouterr().out
    assert "speed-up (fast / baseline):" in out and "images/s" in out and "ceiling" in out


def test_gpu_check_sweep_recipes_are_valid_configs():
    """benchmarks/gpu_check.py runs on a borrowed GPU with little time: a broken recipe must fail here, not there."""
    from mmbook.fastcnn import FastCNNConfig

    module = _load_benchmark("gpu_check")
    assert len(module.FASTCNN_SWEEP) >= 2
    for name, overrides in module.FASTCNN_SWEEP:
        config = FastCNNConfig(**overrides)
        assert config.epochs >= 1 and name


def _load_benchmark(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lenet_step_benchmark_pool_is_bitwise_max_pool2d_ties_included(dtype):
    """benchmarks/lenet_step.py times a hand-written max-pool; it must compute exactly what F.max_pool2d does."""
    MaxPool2x2 = _load_benchmark("lenet_step").MaxPool2x2
    x = torch.randn(4, 6, 8, 8).to(dtype)
    x[:, :, :4, :4] = 0.5  # windows of equal values: ties go to the first pixel in reading order
    x[:, :, 4:, 4:] = x[:, :, 4:, 4:].round()  # and partial ties
    x = x.contiguous(memory_format=torch.channels_last)
    stock, custom = x.clone().requires_grad_(), x.clone().requires_grad_()
    expected, got = F.max_pool2d(stock, 2), MaxPool2x2.apply(custom)
    grad = torch.randn_like(expected)
    expected.backward(grad)
    got.backward(grad)
    assert got.shape == (4, 6, 4, 4) and torch.equal(got, expected)
    assert torch.equal(custom.grad, stock.grad)


def test_lenet_step_benchmark_model_is_lenet():
    module = _load_benchmark("lenet_step")
    torch.manual_seed(0)
    stock = LeNet()
    custom = module.LeNetCustomPool()
    custom.load_state_dict(stock.state_dict())
    images = torch.randn(3, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(custom(images), stock(images))
    from mmbook.bench import run_step_ceiling

    assert run_step_ceiling(torch.device("cpu"), batch_size=4, steps=1, amp=False, model_class=module.LeNetCustomPool) > 0


def test_jpeg_quality_benchmark_reencodes_into_the_same_layout(tmp_path):
    from PIL import Image

    module = _load_benchmark("jpeg_quality")
    source = tmp_path / "cifar10"
    original = source / "train" / "cat" / "0001.jpg"
    original.parent.mkdir(parents=True)
    pixels = torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    Image.fromarray(pixels.numpy()).save(original, quality=95)
    module.reencode(original, source, tmp_path / "q25" / "cifar10", quality=25)
    copy = tmp_path / "q25" / "cifar10" / "train" / "cat" / "0001.jpg"
    assert Image.open(copy).size == (32, 32)
    assert copy.stat().st_size < original.stat().st_size  # quality 25 keeps less
