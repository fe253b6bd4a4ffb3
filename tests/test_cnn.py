"""Tests of mmbook.cnn: LeNet, SmallCNN and its blocks, FLOP and parameter counts, the conv2d checker."""

from __future__ import annotations

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



# --- models ---------------------------------------------------------------------------


def test_small_cnn_shapes_and_features():
    model = SmallCNN()
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
        SmallCNN()(torch.randn(3, 32, 32))
    with pytest.raises(TypeError, match="normalize_images"):
        SmallCNN()(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


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
    first = SmallCNN()
    torch.manual_seed(1)
    second = SmallCNN()
    images = torch.randn(2, 3, 32, 32)
    first.eval(), second.eval()
    torch.testing.assert_close(first(images), second(images))


# --- FLOPs ------------------------------------------------------------------------------


@pytest.mark.parametrize("build", [LeNet, SmallCNN])
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


def test_region_encoder_reuses_lenet_the_global_region_is_lenets_output():
    from mmbook.cnn import ImageRegionEncoder

    torch.manual_seed(0)
    encoder = ImageRegionEncoder(out_features=12)
    images = torch.randn(3, 3, 32, 32)
    regions = encoder(images)
    assert regions.shape == (3, ImageRegionEncoder.num_regions, 12)
    torch.testing.assert_close(regions[:, -1], encoder.lenet(images))
    grid = encoder.lenet.feature_map(images)
    torch.testing.assert_close(regions[:, 0], encoder.cell_proj(grid[:, :, 0, 0]) + encoder.position[0])
