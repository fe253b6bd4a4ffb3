"""The captioning metrics of ``mmbook.generation.metrics`` against the COCO caption evaluation code
(``pycocoevalcap``), sacrebleu and rouge_score, plus values worked out by hand and the input checks.

pycocoevalcap normally runs the Java PTBTokenizer first; here both sides are tokenised with
``caption_tokens`` and pycocoevalcap is given the space-joined tokens, so only the scoring is compared.
"""

from __future__ import annotations

import math
import random

import pytest

from mmbook.generation.metrics import (
    METRIC_KEYS,
    bleu,
    caption_metrics,
    caption_tokens,
    cider_d,
    cider_d_scores,
    distinct_ngrams,
    document_frequency,
    leave_one_out,
    novel_share,
    rouge_l,
    sentence_bleu,
)

WORDS = ["a", "the", "dog", "cat", "man", "red", "ball", "on", "grass", "runs", "sits", "with", "two", "near"]


def _edit(rng: random.Random, sentence: list[str], edits: int) -> list[str]:
    """``sentence`` with ``edits`` random word substitutions, deletions or insertions."""
    words = list(sentence)
    for _ in range(edits):
        kind = rng.choice(["sub", "del", "ins"])
        if kind == "sub" and words:
            words[rng.randrange(len(words))] = rng.choice(WORDS)
        elif kind == "del" and len(words) > 1:
            del words[rng.randrange(len(words))]
        else:
            words.insert(rng.randrange(len(words) + 1), rng.choice(WORDS))
    return words


def _corpus(seed: int, images: int = 50) -> tuple[list[str], list[list[str]]]:
    """Candidates and references around a random "scene" sentence per image, so that higher-order
    n-grams overlap; varying lengths, 1-5 references, capitals and punctuation, one empty candidate,
    and a few candidates unrelated to their image."""
    rng = random.Random(seed)
    candidates, references = [], []
    for i in range(images):
        scene = [rng.choice(WORDS) for _ in range(rng.randint(3, 10))]
        refs = [" ".join(_edit(rng, scene, rng.randint(0, 3))) for _ in range(rng.randint(1, 5))]
        refs = [ref.capitalize() + rng.choice(["", ".", " !"]) for ref in refs]
        if i == 0:
            candidate = ""
        elif i % 11 == 0:
            candidate = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12)))
        else:
            candidate = " ".join(_edit(rng, scene, rng.randint(0, 4)))
        candidates.append(candidate)
        references.append(refs)
    return candidates, references


HAND_CASES = [
    # identical caption and reference
    (["a dog runs on the grass"], [["a dog runs on the grass"]]),
    # repeated words (BLEU's clipped counts, CIDEr-D's clipping), a length tie between references
    (["the the the the the the the", "a b c d", "dog dog dog dog"],
     [["the cat is on the mat", "there is a cat on the mat"], ["a b c", "a b c d e"], ["a dog", "the dog sits"]]),
    # an empty candidate, a one-word candidate and one shorter than all references
    (["", "dog", "a cat"], [["a dog runs"], ["a dog", "dog"], ["a cat sat on a mat", "the cat sat"]]),
]


def _coco(candidates, references):
    """pycocoevalcap's BLEU-1..4 (corpus and per sentence), ROUGE-L and CIDEr-D (mean and per caption)."""
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    res = {i: [" ".join(caption_tokens(c))] for i, c in enumerate(candidates)}
    gts = {i: [" ".join(caption_tokens(r)) for r in refs] for i, refs in enumerate(references)}
    bleus, per_sentence = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, cider_each = Cider().compute_score(gts, res)
    return bleus, per_sentence, float(rouge), float(cider), [float(x) for x in cider_each]


def _check_against_coco(candidates, references):
    bleus, per_sentence, rouge, cider, cider_each = _coco(candidates, references)
    assert bleu(candidates, references) == pytest.approx(bleus, abs=1e-4)
    for n in (1, 2, 3):  # BLEU-n alone is what BleuScorer(n) reports for its first n orders
        assert bleu(candidates, references, max_n=n) == pytest.approx(bleus[:n], abs=1e-4)
    for i, (candidate, refs) in enumerate(zip(candidates, references)):
        assert sentence_bleu(candidate, refs) == pytest.approx([s[i] for s in per_sentence], abs=1e-4)
    assert rouge_l(candidates, references) == pytest.approx(rouge, abs=1e-4)
    assert cider_d(candidates, references) == pytest.approx(cider, abs=1e-4)
    assert cider_d_scores(candidates, references) == pytest.approx(cider_each, abs=1e-4)
    metrics = caption_metrics(candidates, references)
    assert tuple(metrics) == METRIC_KEYS
    assert [metrics[k] for k in METRIC_KEYS] == pytest.approx([*bleus, rouge, cider], abs=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_corpus_matches_pycocoevalcap(seed):
    candidates, references = _corpus(seed)
    _check_against_coco(candidates, references)
    # a corpus where every metric has something to measure, not all zeros or all ones
    scores = caption_metrics(candidates, references)
    assert 0.05 < scores["bleu_4"] < 0.95 and 0.2 < scores["rouge_l"] < 0.95 and 0.5 < scores["cider_d"] < 9


@pytest.mark.parametrize("case", range(len(HAND_CASES)))
def test_hand_cases_match_pycocoevalcap(case):
    _check_against_coco(*HAND_CASES[case])


def _sacrebleu_streams(references):
    """sacrebleu wants one stream per reference position; None pads images with fewer references."""
    depth = max(len(refs) for refs in references)
    return [[" ".join(caption_tokens(refs[j])) if j < len(refs) else None for refs in references] for j in range(depth)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bleu_matches_sacrebleu(seed):
    # sacrebleu uses the closest reference length too (a tie goes to the shorter one) and the same
    # clipped counts. The definitions differ only where a precision is zero: without smoothing
    # sacrebleu returns exactly 0, pycocoevalcap (and we) add 1e-15 / 1e-9 and return about 1e-5 to
    # 1e-15. So we compare on corpora where every n-gram order matches something, and check that.
    sacrebleu = pytest.importorskip("sacrebleu")
    candidates, references = _corpus(seed)
    hyps = [" ".join(caption_tokens(c)) for c in candidates]
    streams = _sacrebleu_streams(references)
    for n in (1, 2, 3, 4):
        metric = sacrebleu.metrics.BLEU(tokenize="none", smooth_method="none", max_ngram_order=n)
        result = metric.corpus_score(hyps, streams)
        assert all(p > 0 for p in result.precisions)
        assert bleu(candidates, references, max_n=n)[-1] == pytest.approx(result.score / 100, abs=1e-4)


def test_rouge_l_matches_rouge_score_with_one_reference():
    # rouge_score's rougeL is the F1 (beta = 1) of one reference; its score_multi takes the best F
    # over references, where pycocoevalcap (and we) take the best precision and the best recall,
    # possibly from different references. So: one reference each, and beta = 1.0 on our side.
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    candidates, references = _corpus(3)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    expected = [scorer.score(refs[0], c)["rougeL"].fmeasure for c, refs in zip(candidates, references)]
    for candidate, refs, value in zip(candidates, references, expected):
        assert rouge_l([candidate], [refs[:1]], beta=1.0) == pytest.approx(value, abs=1e-4)
    assert rouge_l(candidates, [refs[:1] for refs in references], beta=1.0) == pytest.approx(sum(expected) / len(expected), abs=1e-4)
    # beta matters: COCO's 1.2 weighs recall more, so it is a different number here
    assert rouge_l(candidates, [refs[:1] for refs in references]) != pytest.approx(sum(expected) / len(expected), abs=1e-4)


# ---------------------------------------------------------------- known values

def test_caption_tokens():
    assert caption_tokens("A Dog's  red-ball, on the GRASS!") == ["a", "dogs", "redball", "on", "the", "grass"]
    assert caption_tokens("  ...  ") == []


def test_identical_caption_scores_one():
    candidates = ["a dog runs on the grass", "two cats sit near a red ball"]
    references = [[c] for c in candidates]
    assert bleu(candidates, references) == pytest.approx([1.0] * 4, abs=1e-6)
    assert bleu(candidates, references)[3] < 1.0  # pycocoevalcap's small epsilon in the denominator
    assert rouge_l(candidates, references) == pytest.approx(1.0)
    # two images with no n-gram in common: every weight is log 2, every cosine 1, no length penalty
    assert cider_d(candidates, references) == pytest.approx(10.0)


def test_bleu_hand_values():
    # Papineni et al.'s example: modified unigram precision 2/7, candidate longer than the reference
    assert bleu(["the the the the the the the"], [["the cat is on the mat"]], max_n=1)[0] == pytest.approx(2 / 7, abs=1e-6)
    # brevity penalty exp(1 - r/c) with r = 3, c = 2
    assert bleu(["a cat"], [["a cat sat"]], max_n=1)[0] == pytest.approx(math.exp(1 - 3 / 2), abs=1e-6)
    # closest reference length: 3 and 5 are both 1 away from 4, the shorter wins, so no penalty
    assert bleu(["a b c d"], [["a b c", "a b c d e"]], max_n=1)[0] == pytest.approx(1.0, abs=1e-6)
    # corpus BLEU pools counts: (2 + 0) / (2 + 2), not the mean of the sentence scores
    assert bleu(["a b", "c d"], [["a b"], ["x y"]], max_n=1)[0] == pytest.approx(0.5, abs=1e-6)
    assert sentence_bleu("c d", ["x y"], max_n=1)[0] == pytest.approx(0.0, abs=1e-6)


def test_rouge_l_hand_value():
    # LCS("a b c d", "a c e") = 2: P = 2/4, R = 2/3
    p, r, b = 0.5, 2 / 3, 1.2
    assert rouge_l(["a b c d"], [["a c e"]]) == pytest.approx((1 + b * b) * p * r / (r + b * b * p))
    # best precision and best recall may come from different references
    assert rouge_l(["a b"], [["a b c d", "b"]]) == pytest.approx(1.0)
    assert rouge_l([""], [["a b"]]) == 0.0


def test_cider_d_clips_repeated_words_and_penalises_length():
    references = [["a dog runs"], ["a cat sits"], ["two birds fly"]]
    good = cider_d_scores(["a dog runs", "a cat sits", "two birds fly"], references)
    longer = cider_d_scores(["a dog runs a dog runs a dog runs", "a cat sits", "two birds fly"], references)
    # three words have no 4-gram: that order scores 0 and the mean over n = 1..4 is 3/4 of 10
    assert good[0] == pytest.approx(7.5)
    assert longer[0] < good[0]
    # by hand: two images with no word in common, so every n-gram weight is tf * log 2.
    # Unigrams: candidate (dog 2, runs 1), reference (dog 1, runs 1); clipping counts dog once:
    # (1 + 1) / (sqrt(5) sqrt(2)), not 3 / sqrt(10). Bigrams: 1 / sqrt(2). No 3- or 4-gram in common.
    # Gaussian length penalty: 3 words against 2, exp(-1 / (2 * 6^2)).
    expected = 10 * (2 / math.sqrt(10) + 1 / math.sqrt(2)) / 4 * math.exp(-1 / 72)
    assert cider_d_scores(["dog dog runs", "a cat"], [["dog runs"], ["a cat"]])[0] == pytest.approx(expected)


def test_document_frequency_counts_images_not_captions():
    frequency = document_frequency([["A dog.", "a cat", "a dog"], ["a dog runs"]])
    assert frequency == {
        ("a",): 2.0, ("dog",): 2.0, ("cat",): 1.0, ("runs",): 1.0,
        ("a", "dog"): 2.0, ("a", "cat"): 1.0, ("dog", "runs"): 1.0, ("a", "dog", "runs"): 1.0,
    }


def test_distinct_ngrams():
    captions = ["a dog runs", "A dog sits."]
    assert distinct_ngrams(captions, 1) == pytest.approx(4 / 6)
    assert distinct_ngrams(captions, 2) == pytest.approx(3 / 4)
    assert distinct_ngrams(captions, 3) == pytest.approx(1.0)
    assert distinct_ngrams(captions, 4) == 0.0  # no 4-grams at all


def test_novel_share():
    training = ["a dog runs", "a bird flies"]
    assert novel_share(["A dog runs.", "a cat sleeps"], training) == pytest.approx(0.5)
    assert novel_share(["a dog runs", "a bird flies"], training) == 0.0
    assert novel_share(["a dog runs fast"], iter(training)) == 1.0


def test_leave_one_out():
    # identical humans agree perfectly
    same = leave_one_out([["a dog runs on grass"] * 3, ["two cats sit"] * 2])
    assert same["bleu_4"] == pytest.approx(1.0, abs=1e-6) and same["rouge_l"] == pytest.approx(1.0)
    # k = 2 (fewest references); the third reference of image 0 stays a reference in both rounds
    references = [["a dog runs", "the dog sits", "a dog"], ["two cats", "a cat on a mat"]]
    rounds = [caption_metrics(["a dog runs", "two cats"], [["the dog sits", "a dog"], ["a cat on a mat"]]),
              caption_metrics(["the dog sits", "a cat on a mat"], [["a dog runs", "a dog"], ["two cats"]])]
    result = leave_one_out(references)
    assert tuple(result) == METRIC_KEYS
    for key in METRIC_KEYS:
        assert result[key] == pytest.approx((rounds[0][key] + rounds[1][key]) / 2)
    assert result["rouge_l"] != pytest.approx(rounds[0]["rouge_l"])  # the rounds differ: both are used


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("call, word", [
    (lambda: bleu(["a", "b"], [["a"]]), "candidates"),
    (lambda: caption_metrics([], []), "candidates"),
    (lambda: rouge_l(["a"], [[]]), "no references"),
    (lambda: cider_d(["a"], [["a dog", " ?! "]]), "empty after tokenisation"),
    (lambda: bleu(["a"], ["a dog"]), "wrap"),
    (lambda: bleu(["a"], [["a"]], max_n=0), "max_n"),
    (lambda: sentence_bleu("a", ["a"], max_n=0), "max_n"),
    (lambda: cider_d(["a"], [["a"]], sigma=0.0), "sigma"),
    (lambda: cider_d_scores(["a"], [["a"]], sigma=-1.0), "sigma"),
    (lambda: leave_one_out([["a dog", "a cat"], ["a bird"]]), "at least 2"),
    (lambda: leave_one_out([["a dog", ""]]), "empty"),
    (lambda: distinct_ngrams(["a dog"], 0), "positive"),
    (lambda: novel_share([], ["a dog"]), "non-empty"),
])
def test_bad_input_raises(call, word):
    with pytest.raises(ValueError, match=word):
        call()


def test_empty_candidate_is_allowed_and_scores_zero():
    scores = caption_metrics([""], [["a dog runs"]])
    assert all(value == pytest.approx(0.0, abs=1e-6) for value in scores.values())
