"""CLIPScore in miniature: the score's definition, its encoding of any caption, Kendall's tau, and a trained scorer."""

from __future__ import annotations

import math

import pytest
import torch

from mmbook.generation.clipscore import CLIPSCORE_WEIGHT, caption_token_ids, clip_scores, kendall_tau
from mmbook.generation.references import BOS_ID, EOS_ID


class FixedTowers(torch.nn.Module):
    """Image embedding = the image's mean pixel sign pattern; text embedding = fixed by the caption's length."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.image_tower = self.encode_image

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        first = images[:, 0].flatten(1).mean(dim=1)
        return torch.stack([torch.cos(first), torch.sin(first)], dim=1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        length = (tokens != 0).sum(dim=1).float()
        return torch.stack([torch.cos(length), torch.sin(length)], dim=1)


def test_clip_scores_follow_the_definition():
    towers = FixedTowers()
    images = torch.zeros(3, 3, 8, 8, dtype=torch.uint8)
    captions = ["a cat", "a big red truck on the left", ""]  # the empty caption's cosine is negative here
    scores = clip_scores(towers, images, captions)
    from mmbook.data.loaders import normalize_images

    image = towers.encode_image(normalize_images(images))
    text = towers.encode_text(caption_token_ids(captions))
    expected = CLIPSCORE_WEIGHT * (image * text).sum(dim=1).clamp(min=0)
    assert torch.allclose(scores, expected) and scores.shape == (3,)
    assert (scores >= 0).all() and (scores <= CLIPSCORE_WEIGHT).all()
    cosines = (image * text).sum(dim=1)
    assert cosines[2] < 0 and scores[2] == 0 and scores[0] == pytest.approx(CLIPSCORE_WEIGHT * float(cosines[0]))


def test_caption_token_ids_frame_every_caption_and_never_refuse_one():
    tokens = caption_token_ids(["a cat", "", "a zebra"])
    assert tokens[:, 0].tolist() == [BOS_ID] * 3
    assert tokens[1, :2].tolist() == [BOS_ID, EOS_ID] and tokens[1, 2:].eq(0).all()
    assert tokens[2, 2].item() == 1  # "zebra" is <unk>
    with pytest.raises(TypeError, match="not a single string"):
        caption_token_ids("a cat")
    with pytest.raises(ValueError, match="no captions"):
        caption_token_ids([])


def test_clip_scores_refuse_mismatched_input():
    towers = FixedTowers()
    with pytest.raises(ValueError, match="2 captions for 3 images"):
        clip_scores(towers, torch.zeros(3, 3, 8, 8, dtype=torch.uint8), ["a cat", "a dog"])
    with pytest.raises(ValueError, match="uint8 scenes"):
        clip_scores(towers, torch.zeros(2, 3, 8, 8), ["a cat", "a dog"])


def test_kendall_tau():
    assert kendall_tau([1, 2, 3], [10, 20, 30]) == 1.0
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
    # tau-b with a tie in x: 5 concordant pairs, one tied in x only: 5 / sqrt(6 * 5)
    assert kendall_tau([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(5 / math.sqrt(30))
    assert math.isnan(kendall_tau([1, 1], [2, 2]))
    with pytest.raises(ValueError, match="same length"):
        kendall_tau([1, 2], [1])


def test_a_trained_scorer_prefers_a_scenes_own_references(monkeypatch):
    from mmbook.generation.clipscore import train_caption_scorer
    from mmbook.generation.recipe import caption_data

    monkeypatch.setenv("MMBOOK_QUICK", "1")
    scorer = train_caption_scorer(quick=True, scenes=300, epochs=3)
    assert scorer["train_pairs"] == 1500 and len(scorer["history"]) == 3
    scenes, references, _ = caption_data("train", 300, 0, True)
    own = clip_scores(scorer["model"], scenes.images, [refs[0] for refs in references])
    shifted = clip_scores(scorer["model"], scenes.images, [refs[0] for refs in references[1:] + references[:1]])
    assert own.mean() > shifted.mean() + 0.05
