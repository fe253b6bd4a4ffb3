"""Tests of mmbook.fastcnn (the recipe's pieces) and of its recipe, mmbook.recipes.train_fastcnn."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from conftest import tiny_cifar
from mmbook.fastcnn import GPU_RECIPE, FastCNNConfig, build_fastcnn, evaluate_images, patch_whitening_weights
from mmbook.recipes import train_fastcnn


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
    losses = first.history.column("train_loss")
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert first.metrics["test_accuracy"] > 0.3  # chance is 0.1; colours separate the classes
    assert first.metrics["test_accuracy_tta"] > 0.3
    assert first.metrics == second.metrics
    assert losses == second.history.column("train_loss")
    assert not first.model.training  # returned ready to evaluate


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
    assert config.widths == (256, 1024, 1024) and config.cutout == 12
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
    assert set(result.metrics) == {"test_accuracy", "test_accuracy_tta"}


def test_train_fastcnn_stops_with_a_clear_error_when_it_diverges():
    data = tiny_cifar(64)
    config = FastCNNConfig(epochs=2, batch_size=16, widths=(8, 8, 8), lr=1e30)
    with pytest.raises(FloatingPointError, match="training diverged in epoch 1.*Lower the learning rate"):
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
    evaluate_images(Recorder(), loader, tta=True, shift=1)
    assert len(seen) == 6  # the image and its mirror, then two shifted copies and their mirrors
    images = next(iter(loader))["image"]
    padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
    torch.testing.assert_close(seen[2], padded[:, :, 0:32, 0:32])
    torch.testing.assert_close(seen[5], padded[:, :, 2:34, 2:34].flip(3))
