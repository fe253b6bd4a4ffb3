"""Tests for mmbook.fusion: every fusion, the aids, the checker, the model builder and the CLI."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmbook.data import DeviceLoader
from mmbook.cnn import ImageRegionEncoder, LeNet
from mmbook.text import TextEncoder, TokenEncoder
from mmbook.fusion import (
    FUSIONS,
    ConcatFusion,
    CrossAttentionFusion,
    GatedMultimodalUnit,
    GlobalWeightFusion,
    LateFusion,
    LowRankTensorFusion,
    ModalityDropout,
    ReliabilityEstimator,
    TensorFusion,
    TwoStageFusion,
    area_under_curve,
    build_fusion,
    check_fusion_module,
    corrupt_images,
    fit_reliability_estimator,
    linear_probe,
    mean_modality_weights,
    missing_modalities,
    modality_dropout_mask,
    reliability_targets,
)
from mmbook.multimodal import captioned_cifar_model

VECTOR_FUSIONS = [name for name, cls in FUSIONS.items() if not getattr(cls, "needs_sequences", False)]


def features(batch=4, sizes=(10, 10), seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, d, generator=generator) for d in sizes]


def tiny_batch(batch=3, vocab_size=20, length=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(2, vocab_size, (batch, length), generator=generator)
    tokens[0, 4:] = 0  # a shorter caption
    return {"image": torch.randn(batch, 3, 32, 32, generator=generator), "text": tokens,
            "label": torch.randint(0, 10, (batch,), generator=generator)}


@pytest.mark.parametrize("name", VECTOR_FUSIONS)
def test_every_vector_fusion_has_the_interface(name):
    fusion = build_fusion(name, [10, 6])
    out = fusion(features(sizes=(10, 6)))
    assert out.shape == (4, fusion.out_features)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_checker_accepts_every_registered_fusion(name, capsys):
    check_fusion_module(FUSIONS[name])
    assert "All checks passed" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_captioned_cifar_model_builds_every_fusion(name):
    torch.manual_seed(0)
    model = captioned_cifar_model("image+text", vocab_size=20, fusion=name)
    logits = model(tiny_batch())
    assert logits.shape == (3, 10)
    logits.sum().backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)


def test_build_fusion_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown fusion 'nope'; expected one of"):
        build_fusion("nope", [10, 10])


def test_global_weights_are_a_softmax_and_mix_normalised_projections():
    fusion = GlobalWeightFusion([10, 6], hidden=8)
    with torch.no_grad():
        fusion.weight_logits.copy_(torch.tensor([1.0, -1.0]))
    x = features(sizes=(10, 6))
    alpha = torch.softmax(torch.tensor([1.0, -1.0]), 0)
    norm = nn.functional.layer_norm
    expected = alpha[0] * norm(fusion.projections[0](x[0]), (8,)) + alpha[1] * norm(fusion.projections[1](x[1]), (8,))
    assert torch.allclose(fusion(x), expected, atol=1e-6)
    assert torch.allclose(fusion.weights, alpha)
    assert torch.allclose(fusion.last_weights, alpha.expand(4, 2))


def test_gmu_follows_arevalo_equations():
    torch.manual_seed(0)
    gmu = GatedMultimodalUnit([10, 6], hidden=5, normalize=False)
    xv, xt = features(sizes=(10, 6))
    hv = torch.tanh(xv @ gmu.transforms[0].weight.T)
    ht = torch.tanh(xt @ gmu.transforms[1].weight.T)
    z = torch.sigmoid(torch.cat([xv, xt], 1) @ gmu.gate.weight.T)
    assert torch.allclose(gmu([xv, xt]), z * hv + (1 - z) * ht, atol=1e-6)
    assert torch.allclose(gmu.last_weights[:, 0], z.mean(1), atol=1e-6)
    assert torch.allclose(gmu.last_weights.sum(1), torch.ones(4))


def test_the_default_gmu_applies_arevalo_equations_to_layer_normalised_inputs():
    torch.manual_seed(0)
    gmu, paper = GatedMultimodalUnit([10, 6], hidden=5), GatedMultimodalUnit([10, 6], hidden=5, normalize=False)
    paper.load_state_dict(gmu.state_dict())  # the normalisation has no parameters: the same weights fit both
    xv, xt = features(sizes=(10, 6))
    norm = torch.nn.functional.layer_norm
    assert torch.allclose(gmu([xv, xt]), paper([norm(xv, (10,)), norm(xt, (6,))]), atol=1e-6)


def test_gmu_with_three_modalities_gates_sum_to_one():
    gmu = GatedMultimodalUnit([4, 5, 6], hidden=7)
    out = gmu(features(sizes=(4, 5, 6)))
    assert out.shape == (4, 7)
    assert torch.allclose(gmu.last_gates.sum(1), torch.ones(4, 7), atol=1e-6)


def test_tensor_fusion_is_the_outer_product_with_ones():
    xv, xt = features(sizes=(3, 2))
    out = TensorFusion([3, 2])([xv, xt])
    zv = torch.cat([xv, torch.ones(4, 1)], 1)
    zt = torch.cat([xt, torch.ones(4, 1)], 1)
    assert out.shape == (4, 12)
    assert torch.allclose(out, torch.einsum("bi,bj->bij", zv, zt).flatten(1))


def test_low_rank_fusion_equals_a_linear_map_of_the_full_tensor():
    torch.manual_seed(0)
    lmf = LowRankTensorFusion([3, 2], rank=3, hidden=5)
    xv, xt = features(sizes=(3, 2))
    full = TensorFusion([3, 2])([xv, xt])  # (B, 12)
    weight = torch.einsum("r,rih,rjh->ijh", lmf.rank_weights[0], lmf.factors[0], lmf.factors[1]).reshape(12, 5)
    assert torch.allclose(lmf([xv, xt]), full @ weight + lmf.bias, atol=1e-5)
    assert sum(p.numel() for p in lmf.parameters()) < 12 * 5 * 3


def test_late_fusion_averages_per_modality_logits_and_gets_no_head():
    late = LateFusion([10, 6], num_classes=4, mixing="average")
    x = features(sizes=(10, 6))
    expected = (late.classifiers[0](x[0]) + late.classifiers[1](x[1])) / 2
    assert torch.allclose(late(x), expected, atol=1e-6)
    assert late.weight_logits.requires_grad is False
    assert LateFusion([10, 6], mixing="learned").weight_logits.requires_grad
    model = captioned_cifar_model("image+text", vocab_size=20, fusion="late_learned")
    assert isinstance(model.head, nn.Identity)
    with pytest.raises(ValueError, match="mixing must be"):
        LateFusion([3], mixing="max")


def test_token_encoder_zeroes_padding_and_ignores_how_much_padding_follows():
    torch.manual_seed(0)
    encoder = TokenEncoder(20, out_features=8)
    tokens = torch.tensor([[5, 6, 7, 0], [3, 4, 0, 0]])
    out = encoder(tokens)
    assert out.shape == (2, 4, 8)
    assert (out[0, 3] == 0).all() and (out[1, 2:] == 0).all()
    longer = encoder(torch.cat([tokens, torch.zeros(2, 3, dtype=torch.long)], 1))
    assert torch.allclose(longer[:, :4], out, atol=1e-6)


def test_image_region_encoder_gives_25_cells_and_a_global_region():
    regions = ImageRegionEncoder(out_features=12)(torch.randn(2, 3, 32, 32))
    assert regions.shape == (2, 26, 12)


def test_cross_attention_is_padding_invariant_and_records_attention():
    torch.manual_seed(0)
    fusion = CrossAttentionFusion([12, 8], hidden=16, heads=4).eval()
    regions = torch.randn(2, 26, 12)
    tokens = torch.randn(2, 5, 8)
    tokens[1, 3:] = 0  # padding
    out = fusion([regions, tokens])
    assert out.shape == (2, 32)
    assert fusion.last_attention.shape == (2, 5, 26)
    padded = torch.cat([tokens, torch.zeros(2, 4, 8)], 1)
    assert torch.allclose(fusion([regions, padded]), out, atol=1e-5)
    assert torch.isfinite(fusion([regions, torch.zeros_like(tokens)])).all()  # caption missing


def test_cross_attention_explains_what_inputs_it_needs():
    fusion = CrossAttentionFusion([12, 8])
    with pytest.raises(ValueError, match="use ImageRegionEncoder and TokenEncoder"):
        fusion([torch.randn(2, 12), torch.randn(2, 8)])
    with pytest.raises(ValueError, match="needs both modalities"):
        captioned_cifar_model("image", vocab_size=20, fusion="cross_attention")


def test_fusions_give_clear_errors_on_bad_input():
    with pytest.raises(ValueError, match=r"modality 1: expected features of shape \(B, 6\)"):
        GlobalWeightFusion([10, 6])(features(sizes=(10, 5)))
    with pytest.raises(ValueError, match="built for 2 modalities, got 1"):
        GatedMultimodalUnit([10, 6])(features(sizes=(10,)))
    with pytest.raises(TypeError, match="list of feature tensors"):
        ConcatFusion([10])(torch.randn(2, 10))


def test_modality_dropout_mask_drops_at_most_one_modality_at_rate_p():
    generator = torch.Generator().manual_seed(0)
    mask = modality_dropout_mask(4000, 2, 0.5, generator=generator)
    assert (mask.sum(1) <= 1).all()
    assert abs(mask.any(1).float().mean().item() - 0.5) < 0.05
    assert abs(mask[:, 0].float().mean().item() - 0.25) < 0.05
    assert not modality_dropout_mask(10, 1, 1.0).any()
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        modality_dropout_mask(3, 2, 1.5)


def test_modality_dropout_mask_with_one_probability_per_modality():
    generator = torch.Generator().manual_seed(0)
    mask = modality_dropout_mask(8000, 2, (0.1, 0.6), generator=generator)
    assert (mask.sum(1) <= 1).all()
    assert abs(mask[:, 0].float().mean().item() - 0.1) < 0.02
    assert abs(mask[:, 1].float().mean().item() - 0.6) < 0.02
    only_text = modality_dropout_mask(100, 2, (0.0, 1.0))
    assert only_text[:, 1].all() and not only_text[:, 0].any()
    with pytest.raises(ValueError, match="one drop probability per modality"):
        modality_dropout_mask(3, 2, (0.5, 0.2, 0.1))
    with pytest.raises(ValueError, match="sum to at most 1"):
        ModalityDropout(ConcatFusion([3, 3]), p=(0.7, 0.7))


def test_modality_dropout_blanks_in_training_only():
    inner = ConcatFusion([3, 3])
    wrapped = ModalityDropout(inner, p=1.0)
    assert wrapped.out_features == 6
    x = [torch.ones(50, 3), torch.ones(50, 3)]
    out = wrapped.train()(x)
    zero_halves = (out[:, :3] == 0).all(1).float() + (out[:, 3:] == 0).all(1).float()
    assert (zero_halves == 1).all()
    assert torch.equal(wrapped.eval()(x), torch.ones(50, 6))
    text_only = ModalityDropout(inner, p=(0.0, 1.0)).train()(x)
    assert (text_only[:, 3:] == 0).all() and (text_only[:, :3] == 1).all()


def test_missing_modalities_zeroes_features_inside_the_block_only():
    torch.manual_seed(0)
    model = captioned_cifar_model("image+text", vocab_size=20, fusion="concat")
    seen = []
    model.fusion.register_forward_hook(lambda module, args, out: seen.append(out.detach().clone()))
    batch = tiny_batch()
    with missing_modalities(model, "text"):
        model(batch)
    model(batch)
    assert (seen[0][:, 10:] == 0).all() and not (seen[1][:, 10:] == 0).all()
    assert torch.equal(seen[0][:, :10], seen[1][:, :10])
    with pytest.raises(ValueError, match="unknown modalities"):
        with missing_modalities(model, "audio"):
            pass


def test_mean_modality_weights_over_a_loader():
    torch.manual_seed(0)
    model = captioned_cifar_model("image+text", vocab_size=20, fusion="gmu")
    batch = tiny_batch(batch=6)
    weights = mean_modality_weights(model, [batch, batch])
    assert weights.shape == (2,)
    assert torch.allclose(weights.sum(), torch.tensor(1.0), atol=1e-6)
    with pytest.raises(TypeError, match="records no last_weights"):
        mean_modality_weights(captioned_cifar_model("image+text", vocab_size=20), [batch])


def test_reliability_estimator_learns_which_modality_to_trust():
    generator = torch.Generator().manual_seed(0)
    n = 400
    flag = torch.rand(n, generator=generator) < 0.5  # when True, modality 0 is right
    feats = [flag.float().unsqueeze(1) + 0.1 * torch.randn(n, 2, generator=generator),
             torch.randn(n, 3, generator=generator)]
    probs = torch.stack([flag.float(), (~flag).float()], 1)
    estimator = ReliabilityEstimator([2, 3])
    losses = fit_reliability_estimator(estimator, feats, probs, steps=200)
    assert losses[-1] < losses[0]
    weights = estimator(feats)
    assert (weights[flag, 0] > 0.8).float().mean() > 0.9
    assert (weights[~flag, 1] > 0.8).float().mean() > 0.9
    assert all(not p.requires_grad for p in estimator.parameters())
    assert torch.allclose(reliability_targets(torch.tensor([[1.0, 0.0]]), eps=0.0), torch.tensor([[1.0, 0.0]]))


def test_two_stage_fusion_keeps_its_estimator_frozen():
    fusion = TwoStageFusion([4, 4], hidden=6).train()
    assert not fusion.estimator.training
    assert all(not p.requires_grad for p in fusion.estimator.parameters())
    out = fusion(features(sizes=(4, 4)))
    out.sum().backward()
    assert all(p.grad is None for p in fusion.estimator.parameters())
    assert fusion.projections[0].weight.grad is not None
    with pytest.raises(ValueError, match="estimator was built for"):
        TwoStageFusion([4, 4], estimator=ReliabilityEstimator([4, 5]))


def test_fit_two_stage_runs_end_to_end_on_tiny_data():
    torch.manual_seed(0)
    batch = tiny_batch(batch=32)
    batch["image"] = (batch["image"].abs() * 40).clamp(0, 255).to(torch.uint8)
    loader = DeviceLoader(batch, 16, shuffle=True)
    unimodal = {name: captioned_cifar_model(name, vocab_size=20) for name in ("image", "text")}
    from mmbook.recipes import fit_two_stage

    result = fit_two_stage(unimodal, loader, DeviceLoader(batch, 16), DeviceLoader(batch, 16), epochs=1, progress=False)
    assert isinstance(result.model.fusion, TwoStageFusion)
    assert len(result.history) == 1 and result.metrics["stage1_seconds"] > 0
    assert result.seconds == result.metrics["stage1_seconds"] + result.history.train_seconds
    assert result.accuracy == result.history.last["test_accuracy"]
    encoder_params = list(result.model.encoders.parameters())
    assert encoder_params and all(not p.requires_grad for p in encoder_params)


class IgnoresText(nn.Module):
    def __init__(self, in_features):
        super().__init__()
        self.proj = nn.Linear(in_features[0], 8)
        self.out_features = 8

    def forward(self, features):
        return self.proj(features[0])


class WrongShape(nn.Module):
    def __init__(self, in_features):
        super().__init__()
        self.out_features = 7

    def forward(self, features):
        return torch.cat(features, 1)


class MixesTheBatch(ConcatFusion):
    def forward(self, features):
        out = super().forward(features)
        return out - out.mean(0, keepdim=True)


@pytest.mark.parametrize("cls, message", [
    (IgnoresText, "does not depend on modality 1"),
    (WrongShape, r"expected output shape \(1, 7\)"),
    (MixesTheBatch, "treat samples independently"),
])
def test_checker_rejects_wrong_fusions(cls, message):
    with pytest.raises(AssertionError, match=message):
        check_fusion_module(cls)


def test_checker_rejects_a_fusion_that_does_not_learn_from_both():
    class OnlySign(nn.Module):  # keeps only a random projection's sign: too little to learn from
        def __init__(self, in_features):
            super().__init__()
            self.out_features = 2
            self.register_buffer("w", torch.randn(sum(in_features), 2))

        def forward(self, features):
            x = torch.cat(features, 1) @ self.w
            return x + 0 * x.detach()  # depends on both inputs

    with pytest.raises(AssertionError):
        check_fusion_module(OnlySign)


def test_corrupt_images_and_area_under_curve():
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(corrupt_images(images, 0.0), images)
    noisy = corrupt_images(images, 1.0, seed=3)
    assert noisy.dtype == torch.uint8 and not torch.equal(noisy, images)
    assert torch.equal(noisy, corrupt_images(torch.zeros_like(images), 1.0, seed=3))
    with pytest.raises(ValueError, match=r"noise level must lie in \[0, 1\]"):
        corrupt_images(images, 1.5)
    assert area_under_curve([0, 0.5, 1], [0.8, 0.8, 0.8]) == pytest.approx(0.8)
    assert area_under_curve([0, 1], [1.0, 0.0]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="levels must increase"):
        area_under_curve([0, 0], [1, 1])


def test_linear_probe_separates_separable_features():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (300,), generator=generator)
    feats = torch.nn.functional.one_hot(labels, 3).float() * 3 + 0.3 * torch.randn(300, 3, generator=generator)
    assert linear_probe(feats[:200], labels[:200], feats[200:], labels[200:]) > 0.95
    with pytest.raises(ValueError, match="expected features"):
        linear_probe(feats, labels, feats[:, :2], labels)


def test_cli_offers_every_fusion_and_rejects_bad_combinations(capsys):
    from mmbook.cli import build_parser, main

    for name in [*FUSIONS, "two_stage"]:
        assert build_parser().parse_args(["train", "--fusion", name]).fusion == name
    assert main(["train", "--modalities", "image", "--fusion", "cross_attention"]) == 2
    assert "needs both modalities ('image+text'), got 'image'" in capsys.readouterr().err
    assert main(["train", "--fusion", "two_stage", "--modalities", "text"]) == 2
    assert "two_stage needs --modalities image+text" in capsys.readouterr().err
    assert main(["train", "--fusion", "bogus"]) == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err


def test_take_and_train_captioned_on_tiny_data():
    from mmbook.data import take
    from mmbook.recipes import train_captioned

    batch = tiny_batch(batch=20)
    batch["image"] = (batch["image"].abs() * 40).clamp(0, 255).to(torch.uint8)
    part = take(batch, 0, 12)
    assert {k: v.shape[0] for k, v in part.items()} == {"image": 12, "text": 12, "label": 12}
    sorted_labels = {"label": torch.arange(100) // 10}  # sorted by class, like the stored data sets
    first, second = take(sorted_labels, 0, 50)["label"], take(sorted_labels, 50, 100)["label"]
    assert len(first.unique()) == 10  # not just the first classes
    assert torch.equal(torch.sort(torch.cat([first, second])).values, sorted_labels["label"])  # disjoint slices
    assert torch.equal(first, take(sorted_labels, 0, 50)["label"])  # the same order every call
    run = train_captioned(part, take(batch, 12), 20, fusion="gmu", epochs=1, batch_size=6, modality_dropout=0.5,
                          progress=False)
    assert isinstance(run.model.fusion, ModalityDropout)
    assert run.accuracy == run.history.last["test_accuracy"] and len(run.history) == 1
    assert run.parameters == sum(p.numel() for p in run.model.parameters()) > 0
    with pytest.raises(ValueError, match="same number of samples"):
        take({"image": batch["image"], "label": batch["label"][:3]}, 0, 2)


def test_multimodal_model_checks_the_rules_between_its_parts():
    from mmbook.fusion import AverageLateFusion, ConcatFusion, CrossAttentionFusion
    from mmbook.multimodal import ClassifierHead, MultimodalModel

    vectors = {"image": LeNet(out_features=8), "text": TextEncoder(20, out_features=8)}
    sequences = {"image": ImageRegionEncoder(out_features=8), "text": TokenEncoder(20, out_features=8)}
    with pytest.raises(ValueError, match=r"returns class logits itself.*head=nn.Identity\(\)"):
        MultimodalModel(vectors, AverageLateFusion([8, 8], num_classes=10), ClassifierHead(10, 10))
    with pytest.raises(ValueError, match=r"attends over sequences.*\['image', 'text'\].*ImageRegionEncoder"):
        MultimodalModel(vectors, CrossAttentionFusion([8, 8]), ClassifierHead(32, 10))
    with pytest.raises(ValueError, match=r"return sequences \(B, L, D\), but ConcatFusion"):
        MultimodalModel(sequences, ConcatFusion([8, 8]), ClassifierHead(16, 10))
    model = MultimodalModel(sequences, CrossAttentionFusion([8, 8]), nn.Identity())
    assert model.modalities == ["image", "text"]
