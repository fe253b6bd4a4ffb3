"""mmbook.generation.retrieval: the nearest-neighbour captioning baseline (Devlin et al. 2015)."""

from __future__ import annotations

import pytest
import torch

from mmbook.generation.retrieval import nearest_neighbour_captions, nearest_scenes, pooled_features


def test_nearest_scenes_finds_each_test_scene_among_shuffled_training_scenes():
    torch.manual_seed(0)
    train = torch.randn(20, 16, 8)  # (N, R, C) region features
    order = torch.randperm(20)[:6]
    test = 3.0 * train[order] + 0.01 * torch.randn(6, 16, 8)  # scaled: cosine ignores the length
    assert torch.equal(nearest_scenes(train, test, k=1)[:, 0], order)
    two = nearest_scenes(train, test, k=2)
    assert two.shape == (6, 2) and torch.equal(two[:, 0], order) and not torch.equal(two[:, 1], order)


def test_pooled_features_are_unit_vectors_of_the_mean_region():
    features = torch.tensor([[[1.0, 0.0], [3.0, 0.0]], [[0.0, 2.0], [0.0, 2.0]]])
    assert torch.allclose(pooled_features(features), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert torch.allclose(pooled_features(torch.tensor([[3.0, 4.0]])), torch.tensor([[0.6, 0.8]]))


def test_the_consensus_caption_is_the_candidate_the_others_agree_with():
    train = torch.eye(3)  # three training scenes, (N, C) vectors
    references = [["a small cat on the left", "a cat on the left", "a red truck far away"],
                  ["a dog", "a dog and a cat"],
                  ["a ship"]]
    captions = nearest_neighbour_captions(train, references, torch.tensor([[1.0, 0.1, 0.0], [0.0, 0.0, 1.0]]), k=1)
    # The two cat captions agree with each other; the truck caption agrees with neither, so it is never the consensus.
    assert captions[0] in ("a small cat on the left", "a cat on the left")
    assert captions[1] == "a ship"  # a pool of one is its own consensus
    pooled = nearest_neighbour_captions(train, references, torch.tensor([[0.0, 1.0, 0.2]]), k=2)
    assert pooled[0] in references[1] + references[2]


def test_bad_input_is_named():
    train, references = torch.randn(4, 5), [["a cat"]] * 4
    with pytest.raises(ValueError, match="between 1 and the number of training scenes"):
        nearest_neighbour_captions(train, references, torch.randn(2, 5), k=5)
    with pytest.raises(ValueError, match="same encoder"):
        nearest_scenes(train, torch.randn(2, 6), k=1)
    with pytest.raises(ValueError, match="one list of references per training scene"):
        nearest_neighbour_captions(train, references[:3], torch.randn(2, 5))
    with pytest.raises(ValueError, match="at least one reference"):
        nearest_neighbour_captions(train, [["a cat"], [], ["a dog"], ["a ship"]], torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"\(N, R, C\) region features or \(N, C\)"):
        pooled_features(torch.randn(2, 3, 4, 5))
