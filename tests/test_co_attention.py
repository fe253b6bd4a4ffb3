"""Tests of the two-way co-attention fusion (mmbook.fusion.co_attention)."""

from __future__ import annotations

import pytest
import torch

from mmbook.fusion import FUSIONS, build_fusion, check_fusion_module
from mmbook.fusion.co_attention import CoAttentionFusion
from mmbook.multimodal import captioned_cifar_model


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    regions = torch.randn(2, 26, 12, generator=generator)
    tokens = torch.randn(2, 5, 8, generator=generator)
    tokens[1, 3:] = 0  # padding
    return regions, tokens


def test_shapes_and_both_attention_maps():
    torch.manual_seed(0)
    fusion = CoAttentionFusion([12, 8], hidden=16, heads=4).eval()
    regions, tokens = _inputs()
    out = fusion([regions, tokens])
    assert out.shape == (2, 32) and fusion.out_features == 32
    assert fusion.last_attention["text_to_image"].shape == (2, 5, 26)
    assert fusion.last_attention["image_to_text"].shape == (2, 26, 5)
    # Regions never attend to padding tokens, and each attention row sums to 1.
    assert torch.allclose(fusion.last_attention["image_to_text"][1, :, 3:], torch.zeros(26, 2))
    assert torch.allclose(fusion.last_attention["image_to_text"].sum(-1), torch.ones(2, 26), atol=1e-5)


def test_padding_invariant_and_missing_caption():
    torch.manual_seed(0)
    fusion = CoAttentionFusion([12, 8], hidden=16, heads=4).eval()
    regions, tokens = _inputs()
    out = fusion([regions, tokens])
    padded = torch.cat([tokens, torch.zeros(2, 4, 8)], 1)
    assert torch.allclose(fusion([regions, padded]), out, atol=1e-5)
    missing = fusion([regions, torch.zeros_like(tokens)])
    assert torch.isfinite(missing).all()


def test_image_part_depends_on_the_text():
    """Unlike one-way cross-attention, the image half of the output reads the caption."""
    torch.manual_seed(0)
    fusion = CoAttentionFusion([12, 8], hidden=16, heads=4).eval()
    regions, tokens = _inputs()
    other = tokens.flip(0).clone()
    image_half = fusion([regions, tokens])[:, 16:]
    assert not torch.allclose(image_half, fusion([regions, other])[:, 16:])


def test_passes_the_fusion_interface_check():
    check_fusion_module(CoAttentionFusion, steps=200)


def test_registered_and_buildable_in_the_captioned_model():
    assert FUSIONS["co_attention"] is CoAttentionFusion
    assert build_fusion("co_attention", [10, 10]).out_features == 64
    model = captioned_cifar_model("image+text", vocab_size=30, fusion="co_attention")
    logits = model({"image": torch.randn(3, 3, 32, 32), "text": torch.tensor([[2, 3, 4], [5, 0, 0], [6, 7, 0]])})
    assert logits.shape == (3, 10)


def test_bad_input():
    with pytest.raises(ValueError, match="exactly two modalities"):
        CoAttentionFusion([12, 8, 4])
    with pytest.raises(ValueError, match="divisible by heads"):
        CoAttentionFusion([12, 8], hidden=10, heads=4)
    with pytest.raises(ValueError, match="use ImageRegionEncoder and TokenEncoder"):
        CoAttentionFusion([12, 8])([torch.randn(2, 12), torch.randn(2, 8)])
    with pytest.raises(ValueError, match="same batch size"):
        CoAttentionFusion([12, 8])([torch.randn(2, 26, 12), torch.randn(3, 5, 8)])
    with pytest.raises(ValueError, match="needs both modalities"):
        captioned_cifar_model("text", vocab_size=20, fusion="co_attention")
