"""Image-captioning metrics written from scratch: BLEU, ROUGE-L, CIDEr-D, and two diversity measures.

Every metric compares a generated caption (the *candidate*) with the human captions of the same
image (its *references*), and is then summarised over a set of images.

- **BLEU** (Papineni et al., 2002, "BLEU: a method for automatic evaluation of machine translation"):
  the geometric mean of the modified n-gram precisions for n = 1..N (a candidate n-gram counts at
  most as often as it occurs in one reference), times a brevity penalty ``exp(1 - r/c)`` when the
  candidate words ``c`` are fewer than the effective reference words ``r``. It is a *corpus*
  metric: counts are summed over all images before dividing, so the mean of per-sentence BLEU is a
  different (and noisier) number. ``bleu`` returns BLEU-1..BLEU-N, BLEU-n using precisions 1..n.
- **ROUGE-L** (Lin, 2004, "ROUGE: A package for automatic evaluation of summaries"): the longest
  common subsequence (LCS) of candidate and reference gives a precision ``LCS/len(candidate)`` and
  a recall ``LCS/len(reference)``, combined into ``F = (1+b^2) P R / (R + b^2 P)``; it rewards words
  in the right order without asking them to be adjacent.
- **CIDEr** (Vedantam et al., 2015, "CIDEr: Consensus-based image description evaluation"): each
  caption becomes TF-IDF vectors of its 1- to 4-grams, the IDF coming from how many *images* of the
  evaluated set have the n-gram among their references (``document_frequency``), so n-grams every
  caption uses ("a", "of the") weigh little. The score is the cosine similarity to each reference,
  averaged over references and over n, times 10. **CIDEr-D** is the variant of the COCO caption
  server: a candidate n-gram weight is clipped at the reference's, and a Gaussian penalty
  ``exp(-(len_c - len_r)^2 / (2 sigma^2))`` with ``sigma = 6`` discourages gaming by length.
- **distinct-n** (Li et al., 2016, "A diversity-promoting objective function for neural
  conversation models") and the **novel share** measure diversity rather than accuracy.

Where we follow the reference code and where we differ. BLEU, ROUGE-L and CIDEr-D reproduce the
COCO caption evaluation code (``pycocoevalcap``: ``BleuScorer`` with the "closest" reference
length, ``Rouge``, ``CiderScorer``) number for number, including BLEU's tiny (1e-15) and small
(1e-9) constants that avoid dividing by zero, so a perfect BLEU-4 is 1 minus about 1e-9. The
differences: (1) tokenisation -- COCO runs the Stanford PTBTokenizer (Java) before scoring; we
use ``caption_tokens`` (lower case, punctuation deleted, split on whitespace) on candidates and
references alike, so "man's" is one token "mans" here and two ("man", "'s") there; (2) we check
the inputs and raise ``ValueError`` where ``pycocoevalcap`` would assert or divide by zero;
(3) ``distinct_ngrams`` divides by the number of n-grams, where Li et al. divide by the number of
generated words (equal for n = 1).
"""

from __future__ import annotations

import math
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

_TINY, _SMALL = 1e-15, 1e-9  # pycocoevalcap's BleuScorer constants
_CIDER_N = 4
METRIC_KEYS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider_d")

Tokens = list[str]


def caption_tokens(text: str) -> list[str]:
    """Lower-case ``text``, delete punctuation and split on whitespace: ``"A dog's ball."`` -> ``["a", "dogs", "ball"]``."""
    if not isinstance(text, str):
        raise TypeError(f"expected a caption string, got {type(text).__name__}")
    kept = (ch for ch in text.lower() if ch not in string.punctuation and not unicodedata.category(ch).startswith("P"))
    return "".join(kept).split()


def _ngrams(tokens: Sequence[str], max_n: int) -> Counter:
    """Counts of every 1- to ``max_n``-gram of ``tokens``, as tuples."""
    return Counter(tuple(tokens[i:i + n]) for n in range(1, max_n + 1) for i in range(len(tokens) - n + 1))


def _check_positive(name: str, value: float, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be {what}, got {value!r}")


def _tokenise_references(references: Sequence[Sequence[str]]) -> list[list[Tokens]]:
    """Tokenise each image's references, checking there is at least one and none is empty."""
    if isinstance(references, str):
        raise ValueError("expected one list of reference captions per image, got a single string")
    out = []
    for i, refs in enumerate(references):
        if isinstance(refs, str):
            raise ValueError(f"references[{i}] is a string; expected a list of reference captions "
                             f"for image {i}: wrap it as [{refs!r}]")
        if len(refs) == 0:
            raise ValueError(f"image {i} has no references; every candidate needs at least one "
                             "reference caption: add references or drop the image")
        tokenised = [caption_tokens(ref) for ref in refs]
        for j, tokens in enumerate(tokenised):
            if not tokens:
                raise ValueError(f"reference {j} of image {i} is empty after tokenisation ({refs[j]!r}); "
                                 "remove it or fix the data")
        out.append(tokenised)
    return out


def _prepare(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[list[Tokens], list[list[Tokens]]]:
    """Check the inputs of a corpus metric and tokenise them."""
    if isinstance(candidates, str):
        raise ValueError("expected a list of candidate captions, got a single string: wrap it in a list")
    if len(candidates) != len(references):
        raise ValueError(f"got {len(candidates)} candidates but {len(references)} reference lists; "
                         "pass exactly one list of references per candidate, in the same order")
    if len(candidates) == 0:
        raise ValueError("no candidates to score: pass at least one candidate caption")
    refs = _tokenise_references(references)
    return [caption_tokens(c) for c in candidates], refs


# ---------------------------------------------------------------- BLEU

def _bleu_statistics(candidate: Tokens, refs: list[Tokens], max_n: int) -> tuple[int, int, list[int], list[int]]:
    """(candidate length, closest reference length, n-grams guessed per n, n-grams correct per n)."""
    max_ref_counts: Counter = Counter()
    for ref in refs:
        max_ref_counts |= _ngrams(ref, max_n)  # | keeps the larger count: the clip of "modified precision"
    length = len(candidate)
    # closest reference length; a tie goes to the shorter reference (as pycocoevalcap and sacrebleu)
    ref_length = min((abs(len(ref) - length), len(ref)) for ref in refs)[1]
    guess = [max(0, length - n + 1) for n in range(1, max_n + 1)]
    correct = [0] * max_n
    for gram, count in _ngrams(candidate, max_n).items():
        correct[len(gram) - 1] += min(count, max_ref_counts[gram])
    return length, ref_length, guess, correct


def _bleu_from_statistics(length: float, ref_length: float, guess: Sequence[float], correct: Sequence[float]) -> list[float]:
    """BLEU-1..BLEU-n from (summed) statistics, with pycocoevalcap's epsilons."""
    scores, product = [], 1.0
    for n, (g, c) in enumerate(zip(guess, correct), start=1):
        product *= (c + _TINY) / (g + _SMALL)
        scores.append(product ** (1.0 / n))
    ratio = (length + _TINY) / (ref_length + _SMALL)
    if ratio < 1:  # brevity penalty
        scores = [s * math.exp(1 - 1 / ratio) for s in scores]
    return scores


def bleu(candidates: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4) -> list[float]:
    """Corpus BLEU-1..BLEU-``max_n`` (pycocoevalcap's ``Bleu``): n-gram counts and lengths summed over images."""
    if isinstance(max_n, bool) or not isinstance(max_n, int) or max_n < 1:
        raise ValueError(f"max_n must be a positive integer (4 for BLEU-1..BLEU-4), got {max_n!r}")
    cands, refs = _prepare(candidates, references)
    length = ref_length = 0
    guess, correct = [0] * max_n, [0] * max_n
    for candidate, image_refs in zip(cands, refs):
        c_len, r_len, g, c = _bleu_statistics(candidate, image_refs, max_n)
        length, ref_length = length + c_len, ref_length + r_len
        guess = [a + b for a, b in zip(guess, g)]
        correct = [a + b for a, b in zip(correct, c)]
    return _bleu_from_statistics(length, ref_length, guess, correct)


def sentence_bleu(candidate: str, references: Sequence[str], max_n: int = 4) -> list[float]:
    """BLEU-1..BLEU-``max_n`` of one caption: the per-image scores pycocoevalcap's ``Bleu`` reports."""
    if not isinstance(candidate, str):
        raise ValueError(f"expected one candidate string, got {type(candidate).__name__}; use bleu() for a corpus")
    return bleu([candidate], [references], max_n=max_n)


# ---------------------------------------------------------------- ROUGE-L

def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence, by dynamic programming one row at a time."""
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def _rouge_l_one(candidate: Tokens, refs: list[Tokens], beta: float) -> float:
    """ROUGE-L of one caption: the best precision and the best recall over references (possibly different ones)."""
    if not candidate:
        return 0.0
    lcs = [_lcs_length(ref, candidate) for ref in refs]
    precision = max(l / len(candidate) for l in lcs)
    recall = max(l / len(ref) for l, ref in zip(lcs, refs))
    if precision == 0 or recall == 0:
        return 0.0
    return (1 + beta ** 2) * precision * recall / (recall + beta ** 2 * precision)


def rouge_l(candidates: Sequence[str], references: Sequence[Sequence[str]], beta: float = 1.2) -> float:
    """Mean over captions of ROUGE-L F (pycocoevalcap's ``Rouge``, ``beta = 1.2``; ``beta = 1`` is the plain F1)."""
    _check_positive("beta", beta, "a positive number (1.2 as in COCO, 1.0 for F1)")
    cands, refs = _prepare(candidates, references)
    return sum(_rouge_l_one(c, r, beta) for c, r in zip(cands, refs)) / len(cands)


# ---------------------------------------------------------------- CIDEr-D

def _document_frequency(refs: list[list[Tokens]]) -> dict[tuple[str, ...], float]:
    frequency: Counter = Counter()
    for image_refs in refs:
        frequency.update(set().union(*(_ngrams(ref, _CIDER_N) for ref in image_refs)))
    return {gram: float(count) for gram, count in frequency.items()}


def document_frequency(references: Sequence[Sequence[str]]) -> dict[tuple[str, ...], float]:
    """For every 1- to 4-gram, the number of images with it in at least one reference (CIDEr's IDF ingredient)."""
    return _document_frequency(_tokenise_references(references))


def _tfidf(tokens: Tokens, frequency: dict, log_images: float) -> tuple[list[dict], list[float]]:
    """TF-IDF vector of each n-gram order (``tf * (log N - log df)``, df of an unseen n-gram taken as 1) and its norm."""
    vectors: list[dict] = [{} for _ in range(_CIDER_N)]
    for gram, tf in _ngrams(tokens, _CIDER_N).items():
        vectors[len(gram) - 1][gram] = tf * (log_images - math.log(max(1.0, frequency.get(gram, 0.0))))
    return vectors, [math.sqrt(sum(w * w for w in v.values())) for v in vectors]


def cider_d_scores(candidates: Sequence[str], references: Sequence[Sequence[str]], sigma: float = 6.0) -> list[float]:
    """CIDEr-D of each caption (pycocoevalcap's ``CiderScorer``); the IDF comes from the references given here."""
    _check_positive("sigma", sigma, "a positive number (the width of the length penalty, 6 in COCO)")
    cands, refs = _prepare(candidates, references)
    frequency = _document_frequency(refs)
    log_images = math.log(len(refs))
    scores = []
    for candidate, image_refs in zip(cands, refs):
        vec, norm = _tfidf(candidate, frequency, log_images)
        total = 0.0
        for ref in image_refs:
            ref_vec, ref_norm = _tfidf(ref, frequency, log_images)
            # pycocoevalcap measures length in bigrams, len - 1: the same difference for non-empty captions
            penalty = math.exp(-((len(candidate) - len(ref)) ** 2) / (2 * sigma ** 2))
            for n in range(_CIDER_N):
                # clipping: a candidate n-gram weighs at most what it weighs in the reference
                dot = sum(min(w, ref_vec[n].get(g, 0.0)) * ref_vec[n].get(g, 0.0) for g, w in vec[n].items())
                if norm[n] != 0 and ref_norm[n] != 0:
                    dot /= norm[n] * ref_norm[n]
                total += dot * penalty
        scores.append(10.0 * total / (_CIDER_N * len(image_refs)))
    return scores


def cider_d(candidates: Sequence[str], references: Sequence[Sequence[str]], sigma: float = 6.0) -> float:
    """Corpus CIDEr-D: the mean of ``cider_d_scores`` (0 to about 10; COCO tables often show it times 100)."""
    scores = cider_d_scores(candidates, references, sigma=sigma)
    return sum(scores) / len(scores)


# ---------------------------------------------------------------- diversity

def distinct_ngrams(captions: Sequence[str], n: int) -> float:
    """Distinct n-grams divided by all n-grams over ``captions`` (1 = no n-gram repeats; 0 if there are none)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer (1 for distinct-1, 2 for distinct-2), got {n!r}")
    if isinstance(captions, str) or len(captions) == 0:
        raise ValueError("expected a non-empty list of captions")
    grams: Counter = Counter()
    for caption in captions:
        tokens = caption_tokens(caption)
        grams.update(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


def novel_share(captions: Sequence[str], training_captions: Iterable[str]) -> float:
    """Share of ``captions`` that are *not* a training caption word for word (after ``caption_tokens``).

    1.0 means the model wrote every caption itself; 0.0 that it only retrieved training captions.
    Only exact copies count as copies: a caption that differs in one word is novel.
    """
    if isinstance(captions, str) or len(captions) == 0:
        raise ValueError("expected a non-empty list of generated captions")
    seen = {tuple(caption_tokens(c)) for c in training_captions}
    return sum(tuple(caption_tokens(c)) not in seen for c in captions) / len(captions)


# ---------------------------------------------------------------- summaries

def caption_metrics(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """BLEU-1..4, ROUGE-L and CIDEr-D of a set of captions, under the keys of ``METRIC_KEYS``."""
    scores = dict(zip(METRIC_KEYS[:4], bleu(candidates, references, max_n=4)))
    scores["rouge_l"] = rouge_l(candidates, references)
    scores["cider_d"] = cider_d(candidates, references)
    return scores


def leave_one_out(references: Sequence[Sequence[str]]) -> dict[str, float]:
    """How well the humans agree with each other: a ceiling to read model scores against.

    With ``k`` the fewest references of any image, round ``i`` (``i < k``) scores reference ``i`` of
    every image against that image's other references; the metrics are averaged over the ``k``
    rounds. Each human caption is scored against one reference fewer than a model's would be, which
    lowers the ceiling slightly.
    """
    refs = _tokenise_references(references)  # checks the references and gives clear errors
    if len(refs) == 0:
        raise ValueError("no images: pass at least one image's references")
    for i, image_refs in enumerate(refs):
        if len(image_refs) < 2:
            raise ValueError(f"image {i} has {len(image_refs)} reference; leave_one_out needs at least 2 "
                             "per image (one to score, the others to score it against)")
    k = min(len(image_refs) for image_refs in refs)
    totals = dict.fromkeys(METRIC_KEYS, 0.0)
    for i in range(k):
        held_out = [image_refs[i] for image_refs in references]
        others = [list(image_refs[:i]) + list(image_refs[i + 1:]) for image_refs in references]
        for key, value in caption_metrics(held_out, others).items():
            totals[key] += value / k
    return totals
