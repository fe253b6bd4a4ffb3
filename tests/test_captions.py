from collections import Counter, defaultdict

import pytest
import torch

from mmbook.data.captioned import load_captioned_cifar10
from mmbook.data.captions import (
    ATTRIBUTE_PHRASES,
    CLASS_ATTRIBUTES,
    CaptionGenerator,
    caption_groups,
    mentioned_attributes,
    text_only_ceiling,
)
from mmbook.data.cifar10 import CIFAR10_CLASSES
from mmbook.text import tokenize


def attributes_in(caption: str) -> set[str]:
    return {name for name, phrases in ATTRIBUTE_PHRASES.items() if any(p in caption for p in phrases)}


def test_captions_are_deterministic_and_independent_of_order():
    labels = [i % 10 for i in range(200)]
    generator = CaptionGenerator(noise=0.2, seed=5)
    captions = generator.captions(labels)
    assert captions == CaptionGenerator(noise=0.2, seed=5).captions(labels)
    assert generator.caption(labels[123], 123) == captions[123]
    assert captions != CaptionGenerator(noise=0.2, seed=6).captions(labels)


def test_captions_never_name_the_class():
    captions = CaptionGenerator(noise=0.0, seed=0).captions([i % 10 for i in range(1000)])
    for caption in captions:
        assert not set(tokenize(caption)) & set(CIFAR10_CLASSES), caption


def test_noise_free_captions_only_use_their_class_attributes():
    generator = CaptionGenerator(noise=0.0, seed=1)
    for index in range(500):
        label = index % 10
        used = attributes_in(generator.caption(label, index))
        assert used and used <= set(CLASS_ATTRIBUTES[CIFAR10_CLASSES[label]])


def test_text_narrows_to_a_group_but_never_to_one_class():
    groups = caption_groups()
    assert all(len(group) >= 2 for group in groups)
    # Classes in one group share every attribute, so no caption can separate them.
    for group in groups:
        assert len({CLASS_ATTRIBUTES[name] for name in group}) == 1


def test_varied_wording():
    captions = CaptionGenerator(noise=0.0, seed=0).captions([3] * 300)  # all cats
    assert len(set(captions)) > 30


def test_noise_rate_controls_how_often_the_caption_describes_another_class():
    labels = [0] * 4000
    for noise in (0.0, 0.3, 1.0):
        generator = CaptionGenerator(noise=noise, seed=2)
        described = [generator.described_label(label, i) for i, label in enumerate(labels)]
        wrong = sum(d != 0 for d in described) / len(described)
        # A noised caption describes a uniformly random class, the true one 1 time in 10.
        assert abs(wrong - noise * 0.9) < 0.03
    counts = Counter(CaptionGenerator(noise=1.0, seed=2).described_label(0, i) for i in range(4000))
    assert len(counts) == 10 and min(counts.values()) > 300


def test_invalid_noise_is_rejected():
    with pytest.raises(ValueError, match="noise"):
        CaptionGenerator(noise=1.5)
    with pytest.raises(ValueError, match="label"):
        CaptionGenerator().caption(label=10, index=0)


def test_captioned_cifar10_builds_tokens_from_a_train_vocabulary(tiny_data):
    data = load_captioned_cifar10(quick=True, noise=0.0, progress=False)
    assert len(data.train) == 40 and len(data.test) == 20
    assert data.train.tokens.dtype == torch.int64 and data.train.tokens.shape[0] == 40
    assert data.caption_vocab.decode(data.train.tokens[0].tolist()) == " ".join(tokenize(data.train.captions[0]))
    assert set(data.train.tensors()) == {"image", "text", "label"}
    # Test captions use another seed: different wording for the same image index.
    assert data.train.captions[:20] != data.test.captions[:20]


def brute_force_caption_only_accuracy(noise: float, count: int = 30_000) -> float:
    """Accuracy of a lookup table (caption string -> most frequent class) built on one seed's
    captions and tested on another seed's, over balanced labels: no model, no theory."""
    labels = [i % 10 for i in range(count)]
    table: dict[str, Counter] = defaultdict(Counter)
    for label, caption in zip(labels, CaptionGenerator(noise=noise, seed=3).captions(labels)):
        table[caption][label] += 1
    rule = {caption: counts.most_common(1)[0][0] for caption, counts in table.items()}
    test_captions = CaptionGenerator(noise=noise, seed=4).captions(labels)
    return sum(rule.get(caption) == label for caption, label in zip(test_captions, labels)) / count


@pytest.mark.parametrize("noise", [0.0, 0.1, 0.5])
def test_text_only_ceiling_matches_a_brute_force_count_over_generated_captions(noise):
    # 30,000 test captions: the count's standard error is below 0.003.
    assert text_only_ceiling(noise) == pytest.approx(brute_force_caption_only_accuracy(noise), abs=0.012)


def test_text_only_ceiling_is_below_the_two_class_group_count():
    # "four legs" alone fits four classes, so the ceiling is below 1/2 even without noise,
    # and falls as the noise rises, to chance when every caption is random.
    ceilings = [text_only_ceiling(noise) for noise in (0.0, 0.1, 0.5, 1.0)]
    assert ceilings[0] < 0.5 - 0.01
    assert ceilings == sorted(ceilings, reverse=True)
    assert ceilings[-1] == pytest.approx(0.1)


def test_mentioned_attributes_are_a_distribution_over_the_class_attributes():
    for name, attributes in CLASS_ATTRIBUTES.items():
        sets = mentioned_attributes(name)
        assert sum(sets.values()) == pytest.approx(1.0)
        assert all(mention <= set(attributes) and 1 <= len(mention) <= 2 for mention in sets)


def test_text_only_ceiling_rejects_bad_input():
    with pytest.raises(ValueError, match="noise"):
        text_only_ceiling(-0.1)
    with pytest.raises(ValueError, match="no caption attributes"):
        text_only_ceiling(0.1, classes=("airplane", "unicorn"))
