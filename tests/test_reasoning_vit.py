"""Images as tokens: patch embedding, the vision transformer, and ViLT in miniature."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from mmbook.reasoning.vit import PatchEmbedding, PatchQuestionTransformer, VisionTransformer


def test_patch_embedding_is_a_linear_map_of_each_flattened_patch():
    torch.manual_seed(0)
    embed = PatchEmbedding(image_size=8, patch_size=4, channels=3, dim=5)
    images = torch.randn(2, 3, 8, 8)
    tokens = embed(images)
    assert tokens.shape == (2, 4, 5) and embed.num_patches == 4
    # Patch n (row-major over the 2x2 grid) flattened channel-first, times the kernel as a matrix, plus the bias.
    patches = F.unfold(images, kernel_size=4, stride=4).transpose(1, 2)  # (2, 4, 3*4*4)
    expected = patches @ embed.project.weight.reshape(5, -1).T + embed.project.bias
    assert torch.allclose(tokens, expected, atol=1e-5)


def test_a_patch_size_that_does_not_tile_the_image_is_a_clear_error():
    with pytest.raises(ValueError, match=r"patch_size 5 does not divide image_size 32.*\[1, 2, 4, 8, 16, 32\]"):
        PatchEmbedding(image_size=32, patch_size=5)
    with pytest.raises(ValueError, match="patch_size must be a positive int"):
        PatchEmbedding(image_size=32, patch_size=0)
    with pytest.raises(ValueError, match=r"expected images \(B, 3, 32, 32\), got \(2, 3, 28, 28\)"):
        PatchEmbedding(32, 4)(torch.zeros(2, 3, 28, 28))
    with pytest.raises(ValueError, match="dim .* divisible by heads"):
        VisionTransformer(dim=30, heads=4)


def test_vision_transformer_classifies_from_its_class_token_and_learns():
    torch.manual_seed(0)
    model = VisionTransformer(num_classes=3, image_size=16, patch_size=4, dim=16, depth=1, heads=2)
    images = torch.randn(6, 3, 16, 16)
    assert model.tokens(images).shape == (6, 17, 16)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = F.cross_entropy(model(images), labels)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first  # six images memorised: the class token reads the patches


def _vqa_batch(k: int = 3, t: int = 6) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    questions = torch.randint(1, 20, (2, k, t), generator=generator)
    questions[:, :, t - 2:] = 0  # every question ends with padding
    return {"image": torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=generator),
            "question": questions}


def test_vilt_answers_each_question_and_ignores_padding():
    torch.manual_seed(0)
    model = PatchQuestionTransformer(vocab_size=20, num_answers=7).eval()
    batch = _vqa_batch()
    with torch.no_grad():
        logits = model(batch)
        assert logits.shape == (6, 7)
        one = {"image": batch["image"][1:2], "question": batch["question"][1, 2][None]}
        assert torch.allclose(model(one), logits[1 * 3 + 2][None], atol=1e-5)
        longer = dict(batch, question=F.pad(batch["question"], (0, 4)))  # more padding: masked, same answers
        assert torch.allclose(model(longer), logits, atol=1e-5)
    with pytest.raises(ValueError, match="questions of at most 32 words"):
        model({"image": batch["image"], "question": torch.ones(2, 40, dtype=torch.long)})
