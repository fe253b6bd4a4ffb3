"""The vision-language model in miniature: a caption language model with the image as a prefix."""

from __future__ import annotations

import pytest
import torch

from mmbook.generation.model import caption_loss
from mmbook.generation.prefix import CaptionLM, PrefixCaptioner, pretrain_caption_lm
from mmbook.generation.references import BOS_ID, EOS_ID


def _batch(batch: int = 3, length: int = 7, vocab: int = 20) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    text = torch.randint(4, vocab, (batch, 2, length), generator=generator)
    text[..., 0] = BOS_ID
    text[0, 0, 4], text[0, 0, 5:] = EOS_ID, 0
    return {"features": torch.randn(batch, 16, 8, generator=generator), "text": text}


@pytest.mark.parametrize("with_image", [False, True])
def test_teacher_forcing_matches_decoding_one_word_at_a_time(with_image):
    torch.manual_seed(0)
    lm = CaptionLM(20, dim=16, layers=1, heads=2)
    model = (PrefixCaptioner(lm, features=8) if with_image else lm).eval()
    batch = _batch()
    with torch.no_grad():
        logits = model(batch)  # (3 * 2, 6, 20)
        text = batch["text"].flatten(0, 1)
        state = {k: v.repeat_interleave(2, dim=0) for k, v in model.start(batch["features"]).items()}
        assert state["prefix"].shape == ((6, 16, 16) if with_image else (6, 0, 16))
        for t in range(6):
            log_probs, state = model.step(text[:, t], state)
            real = text[:, t + 1] != 0
            torch.testing.assert_close(log_probs[real], logits[real, t].log_softmax(-1), atol=1e-5, rtol=1e-4)


def test_the_blind_lm_ignores_the_image_and_the_prefix_captioner_reads_it():
    torch.manual_seed(0)
    lm = CaptionLM(20, dim=16, layers=1, heads=2).eval()
    prefixed = PrefixCaptioner(lm, features=8).eval()
    batch, other = _batch(), dict(_batch(), features=torch.randn(3, 16, 8))
    with torch.no_grad():
        assert torch.equal(lm(batch), lm(other))
        assert not torch.allclose(prefixed(batch), prefixed(other))


@pytest.mark.parametrize("freeze", [True, False])
def test_a_frozen_language_model_does_not_move_and_a_tuned_one_does(freeze):
    torch.manual_seed(0)
    lm = CaptionLM(20, dim=16, layers=1, heads=2)
    original = {name: p.detach().clone() for name, p in lm.named_parameters()}
    model = PrefixCaptioner(lm, features=8, freeze_lm=freeze)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = _batch()
    caption_loss(model(batch), batch).backward()
    optimizer.step()
    moved = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert "project.weight" in moved
    assert any(name.startswith("lm.") for name in moved) != freeze
    for name, p in lm.named_parameters():  # the language model it was built from is copied, never changed
        assert torch.equal(p, original[name])


def test_bad_shapes_are_clear_errors():
    lm = CaptionLM(20, dim=16, layers=1, heads=2, max_len=10)
    with pytest.raises(ValueError, match="region features"):
        PrefixCaptioner(lm, features=8).start(torch.randn(2, 16, 5))
    with pytest.raises(ValueError, match="max_len"):
        PrefixCaptioner(lm, features=8)(_batch(length=7))  # 16 prefix tokens + 6 words > 10


def test_pretraining_on_text_alone_learns_the_captions():
    torch.manual_seed(0)
    text = torch.tensor([[BOS_ID, 5, 6, 7, EOS_ID], [BOS_ID, 5, 8, EOS_ID, 0]]).repeat(32, 1)
    model, facts = pretrain_caption_lm(text, 12, epochs=8, batch_size=16, lr=1e-2, dim=16, layers=1, heads=2)
    assert isinstance(model, CaptionLM) and facts["lm_seconds"] > 0
    assert facts["lm_train_loss"] < 0.6  # a uniform guess over 12 words costs log 12 = 2.5 per word


def test_the_captioning_recipe_trains_a_prefix_captioner_built_elsewhere():
    from mmbook.generation.recipe import caption_data, train_scene_captioning
    from mmbook.generation.references import generation_vocabulary

    _, _, tensors = caption_data("train", 40, 0, True)
    torch.manual_seed(0)
    lm = CaptionLM(len(generation_vocabulary()), dim=16, layers=1, heads=2)
    model = PrefixCaptioner(lm, features=tensors["features"].shape[2], freeze_lm=True)
    frozen_before = [p.detach().clone() for p in model.lm.parameters()]
    projection_before = model.project.weight.detach().clone()
    report = train_scene_captioning(model=model, scenes=40, test_scenes=20, epochs=1, batch_size=8, quick=True)
    assert report["model"] is model and 0.0 <= report["cider_d"]
    assert all(torch.equal(a, b) for a, b in zip(frozen_before, model.lm.parameters()))
    assert not torch.equal(projection_before, model.project.weight)
    with pytest.raises(ValueError, match="model_options .* or a built `model`, not both"):
        train_scene_captioning(model=model, model_options={"hidden": 8}, scenes=40, test_scenes=20, quick=True)
