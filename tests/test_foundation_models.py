"""The worked example's building blocks: LeNet, the recurrent text encoder, concatenation fusion, MultimodalModel."""

import pytest
import torch
from torch import nn

from mmbook.cnn import LeNet
from mmbook.fusion import ConcatFusion, build_fusion
from mmbook.multimodal import ClassifierHead, MultimodalModel, captioned_cifar_model, parse_modalities
from mmbook.text import TextEncoder, lengths_from_padding


def test_lenet_has_the_source_architecture():
    model = LeNet()
    assert (model.conv1.in_channels, model.conv1.out_channels, model.conv1.kernel_size) == (3, 6, (5, 5))
    assert (model.conv2.in_channels, model.conv2.out_channels, model.conv2.kernel_size) == (6, 16, (5, 5))
    assert [(m.in_features, m.out_features) for m in (model.fc1, model.fc2, model.fc3)] == [(400, 120), (120, 84), (84, 10)]
    assert model(torch.randn(4, 3, 32, 32)).shape == (4, 10)
    assert model.features(torch.randn(2, 3, 32, 32)).shape == (2, 84)


def test_lenet_rejects_wrong_inputs_clearly():
    model = LeNet()
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\).*unsqueeze"):
        model(torch.randn(3, 32, 32))
    with pytest.raises(TypeError, match="float"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_text_encoder_output_does_not_depend_on_trailing_padding(kind, bidirectional):
    torch.manual_seed(0)
    encoder = TextEncoder(vocab_size=20, kind=kind, bidirectional=bidirectional).eval()
    tokens = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]])
    padded_more = torch.cat([tokens, torch.zeros(2, 6, dtype=torch.long)], dim=1)
    out = encoder(tokens)
    assert out.shape == (2, 10)
    torch.testing.assert_close(out, encoder(padded_more), rtol=0, atol=1e-6)
    # Same caption alone in a batch: same features.
    torch.testing.assert_close(out[1:], encoder(tokens[1:, :2]), rtol=0, atol=1e-6)


def test_text_encoder_is_batch_first():
    encoder = TextEncoder(vocab_size=10, hidden_size=16)
    assert encoder.rnn.batch_first
    # 12 captions of length 4: the source sketch's shape, which broke without batch_first.
    assert encoder(torch.randint(1, 10, (12, 4))).shape == (12, 10)


def test_text_encoder_rejects_bad_tokens():
    encoder = TextEncoder(vocab_size=10)
    with pytest.raises(TypeError, match="integer token ids"):
        encoder(torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"0\.\.9"):
        encoder(torch.tensor([[1, 12]]))
    with pytest.raises(ValueError, match="right-padded"):
        encoder(torch.tensor([[0, 3, 4]]))
    with pytest.raises(ValueError, match="unsqueeze"):
        encoder(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="kind"):
        TextEncoder(10, kind="cnn")


def test_lengths_from_padding():
    assert lengths_from_padding(torch.tensor([[3, 4, 0], [0, 0, 0], [1, 1, 1]])).tolist() == [2, 0, 3]


def test_concat_fusion_concatenates_and_checks_shapes():
    fusion = ConcatFusion([10, 6])
    out = fusion([torch.randn(3, 10), torch.randn(3, 6)])
    assert out.shape == (3, 16) and fusion.out_features == 16
    with pytest.raises(ValueError, match=r"\(B, 6\)"):
        fusion([torch.randn(3, 10), torch.randn(3, 5)])
    with pytest.raises(ValueError, match="batch size"):
        fusion([torch.randn(3, 10), torch.randn(4, 6)])
    with pytest.raises(TypeError, match="list"):
        fusion(torch.randn(3, 16))
    with pytest.raises(ValueError, match="unknown fusion"):
        build_fusion("magic", [1])


def test_classifier_head_produces_logits_for_the_fused_size():
    head = ClassifierHead(20)
    logits = head(torch.randn(5, 20))
    assert logits.shape == (5, 10)
    assert (logits < 0).any()  # raw logits, no ReLU at the end


@pytest.mark.parametrize("modalities, fused", [("image", 10), ("text", 10), ("image+text", 20)])
def test_captioned_model_runs_with_one_or_two_modalities(modalities, fused):
    model = captioned_cifar_model(modalities, vocab_size=30)
    assert model.fusion.out_features == fused
    batch = {"image": torch.randn(4, 3, 32, 32), "text": torch.randint(1, 30, (4, 7)), "label": torch.zeros(4, dtype=torch.long)}
    assert model(batch).shape == (4, 10)
    assert model.modalities == parse_modalities(modalities)


def test_multimodal_model_says_which_modality_is_missing():
    model = captioned_cifar_model("image+text", vocab_size=30)
    with pytest.raises(KeyError, match="text"):
        model({"image": torch.randn(2, 3, 32, 32)})
    with pytest.raises(ValueError):
        MultimodalModel({}, nn.Identity(), nn.Identity())
    with pytest.raises(ValueError, match="image\\+text"):
        parse_modalities("audio")


def test_lenet_pool_before_relu_equals_the_sources_relu_before_pool():
    """LeNet pools before its ReLUs (faster); outputs and gradients must equal the source's order exactly."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = LeNet()
    images = torch.randn(8, 3, 32, 32)

    def source_order(x):
        x = model.pool(F.relu(model.conv1(x)))
        x = model.pool(F.relu(model.conv2(x)))
        x = F.relu(model.fc2(F.relu(model.fc1(torch.flatten(x, 1)))))
        return model.fc3(x)

    ours = model(images)
    theirs = source_order(images)
    assert torch.equal(ours, theirs)
    grads_ours = torch.autograd.grad(ours.square().sum(), list(model.parameters()))
    grads_theirs = torch.autograd.grad(source_order(images).square().sum(), list(model.parameters()))
    for a, b in zip(grads_ours, grads_theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
