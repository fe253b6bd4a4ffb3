"""The formative checkers never give the answer away.

For every exercise in ``mmbook.exercises.CHECKERS``, :data:`MISTAKES` lists typical wrong answers. Each must
fail, and its message must not hold the reference answer: the expected number in its usual renderings
(``62006``, ``62,006``, ``62 006``, floats rounded to 2-4 decimals), the right choice, the expected
tuple or list, or a correct intermediate result (:data:`SECRETS`). For exercises that ask for a function, the
expected values are the reference solution's own outputs on the checker's cases, recorded while the checker
runs it. The student's own value may be echoed back, so it is blanked out before the message is scanned.

A new exercise must get an entry in :data:`MISTAKES` (and a reference in :data:`REFERENCES`), or
``test_every_checker_has_typical_mistakes`` fails.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import box_iou

from mmbook import exercises
from mmbook.alignment import info_nce, recall_at_k
from mmbook.course.checks.alignment import CONE_CHOICES
from mmbook.results import t_975
from mmbook.course.checks.objectives import SHUFFLED_EXPRESSION_CHOICES
from mmbook.exercises import ExerciseError, ExerciseNotDone, check, is_unfinished, passed_line
from mmbook.generation.checkers import beam_step, chair, prefix_trainable_parameters
from mmbook.objectives.tagging import bio_spans, entity_scores
from mmbook.reasoning.checkers import closest_colour
from mmbook.reasoning.models import RelationNetwork

# --- reference solutions (as in the book's notebooks) ---------------------------------------------------------


def _farthest_colour(objects, colour):
    (anchor,) = [o for o in objects if o.attributes["colour"] == colour]
    return max((o for o in objects if o is not anchor), key=lambda o: (o.centre[0] - anchor.centre[0]) ** 2
               + (o.centre[1] - anchor.centre[1]) ** 2).attributes["colour"]


def _closest_by_x(objects, colour):
    (anchor,) = [o for o in objects if o.attributes["colour"] == colour]
    return min((o for o in objects if o is not anchor),
               key=lambda o: abs(o.centre[0] - anchor.centre[0])).attributes["colour"]


def _raise(error_type):
    raise error_type("does not tile")


def conv2d(images, weight, bias, stride, padding):
    return F.conv2d(images, weight, bias, stride=stride, padding=padding)


def lstm_cell(x, state, weight_ih, weight_hh, bias_ih, bias_hh, order="ifgo", swap=False, hh_bias=True):
    h, c = state
    gates = x @ weight_ih.T + bias_ih + h @ weight_hh.T + (bias_hh if hh_bias else 0)
    parts = dict(zip(order, gates.chunk(4, dim=1)))
    c_next = torch.sigmoid(parts["f"]) * c + torch.sigmoid(parts["i"]) * torch.tanh(parts["g"])
    h_next = torch.sigmoid(parts["o"]) * torch.tanh(c_next)
    return (c_next, h_next) if swap else (h_next, c_next)


def attention(q, k, v, key_padding_mask=None, scale=True, use_mask=True, invert=False, dim=-1):
    scores = q @ k.transpose(1, 2) / (q.shape[-1] ** 0.5 if scale else 1)
    if key_padding_mask is not None and use_mask:
        blocked = ~key_padding_mask if invert else key_padding_mask
        scores = scores.masked_fill(blocked[:, None, :], float("-inf"))
    weights = scores.softmax(dim=dim)
    return weights @ v, weights


class MyGMU(nn.Module):
    def __init__(self, in_features, hidden=32):
        super().__init__()
        d_v, d_t = in_features
        self.w_v = nn.Linear(d_v, hidden, bias=False)
        self.w_t = nn.Linear(d_t, hidden, bias=False)
        self.w_z = nn.Linear(d_v + d_t, hidden, bias=False)
        self.out_features = hidden

    def forward(self, features):
        x_v, x_t = features
        z = torch.sigmoid(self.w_z(torch.cat([x_v, x_t], dim=1)))
        return z * torch.tanh(self.w_v(x_v)) + (1 - z) * torch.tanh(self.w_t(x_t))


class GMUWithoutText(MyGMU):
    def forward(self, features):
        return torch.tanh(self.w_v(features[0]))


class GMUWithWrongSize(MyGMU):
    def __init__(self, in_features, hidden=32):
        super().__init__(in_features, hidden)
        self.out_features = hidden + 1


class GMUWithoutOutFeatures(MyGMU):
    def __init__(self, in_features, hidden=32):
        super().__init__(in_features, hidden)
        del self.out_features


class GMUThatMixesTheBatch(MyGMU):
    def forward(self, features):
        fused = super().forward(features)
        return fused - fused.mean(dim=0, keepdim=True)


def iou(a, b, clamp=True, subtract=True, plus_one=0.0, area_of_a=False):
    top_left = torch.max(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.min(a[:, None, 2:], b[None, :, 2:])
    sides = bottom_right - top_left + plus_one
    inter = (sides.clamp(min=0) if clamp else sides).prod(dim=2)
    area_a = (a[:, 2:] - a[:, :2] + plus_one).prod(dim=1)
    area_b = (b[:, 2:] - b[:, :2] + plus_one).prod(dim=1)
    if area_of_a:
        return inter / area_a[:, None]
    return inter / (area_a[:, None] + area_b[None, :] - (inter if subtract else 0))


def entity_f1(truth, guess):
    return entity_scores(truth, guess)["f1"]


def _f1(true_spans, predicted_spans):
    correct = len(true_spans & predicted_spans)
    precision = correct / len(predicted_spans) if predicted_spans else 0.0
    recall = correct / len(true_spans) if true_spans else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def token_f1(truth, guess):
    pairs = [(a, b) for t, g in zip(truth, guess) for a, b in zip(t, g) if a != "O" or b != "O"]
    return sum(a == b for a, b in pairs) / max(len(pairs), 1)


def untyped_f1(truth, guess):
    def spans(sentences):
        return {(n, start, end) for n, tags in enumerate(sentences) for _, start, end in bio_spans(tags)}
    return _f1(spans(truth), spans(guess))


def strict_b_f1(truth, guess):  # an I- tag without a B- starts nothing
    def spans(sentences):
        found = set()
        for n, tags in enumerate(sentences):
            kind, start = None, 0
            for i, tag in enumerate(list(tags) + ["O"]):
                prefix, _, tag_kind = tag.partition("-")
                if kind is not None and not (prefix == "I" and tag_kind == kind):
                    found.add((n, kind, start, i))
                    kind = None
                if prefix == "B":
                    kind, start = tag_kind, i
        return found
    return _f1(spans(truth), spans(guess))


def macro_f1(truth, guess):
    return sum(entity_f1([t], [g]) for t, g in zip(truth, guess)) / len(truth)


def t_interval(differences, quantile=None, unbiased=True, per_mean=True):
    n = len(differences)
    t = t_975(n) if quantile is None else quantile(n)
    std = differences.std(unbiased=unbiased)
    half = t * std / (n ** 0.5 if per_mean else 1)
    return differences.mean() - half, differences.mean() + half


def bag_of_words(ids, vocab_size, padding=False, presence=False):
    counts = torch.zeros(ids.shape[0], vocab_size).scatter_add_(1, ids, torch.ones(ids.shape))
    if not padding:
        counts[:, 0] = 0
    return (counts > 0).float() if presence else counts


def left_pad(ids, lengths):
    left = torch.zeros_like(ids)
    for row, length in enumerate(lengths.tolist()):
        left[row, ids.shape[1] - length:] = ids[row, :length]
    return left


def gru_cell(x, h, weight_ih, weight_hh, bias_ih, bias_hh, torch_form=False, swap_z=False):
    x_r, x_z, x_n = (x @ weight_ih.T + bias_ih).chunk(3, dim=1)
    w_hr, w_hz, w_hn = weight_hh.chunk(3, dim=0)
    b_hr, b_hz, b_hn = bias_hh.chunk(3)
    r = torch.sigmoid(x_r + h @ w_hr.T + b_hr)
    z = torch.sigmoid(x_z + h @ w_hz.T + b_hz)
    n = torch.tanh(x_n + r * (h @ w_hn.T + b_hn)) if torch_form else torch.tanh(x_n + (r * h) @ w_hn.T + b_hn)
    return z * n + (1 - z) * h if swap_z else (1 - z) * n + z * h


def reverse_real_tokens(tokens, lengths):
    out = torch.zeros_like(tokens)
    for row, length in enumerate(lengths.tolist()):
        out[row, :length] = tokens[row, :length].flip(0)
    return out


def pareto_front(runs, bigger_is_better=False):
    sign = -1 if bigger_is_better else 1
    return [n for n, (p, a) in runs.items()
            if not any(sign * po <= sign * p and ao > a for o, (po, ao) in runs.items() if o != n)]


def drop_words(tokens, level, seed=0, whole=False, unk=1, keep_probability=False, touch_padding=False):
    generator = torch.Generator().manual_seed(seed)
    shape = (tokens.shape[0], 1) if whole else tokens.shape
    draw = torch.rand(shape, generator=generator)
    hit = (draw >= level) if keep_probability else (draw < level)
    if not touch_padding:
        hit = hit & (tokens != 0)
    return torch.where(hit, torch.full_like(tokens, unk), tokens)


def modulation_factor(mine, other):
    return 1 - math.tanh(mine / other - 1) if mine > other else 1.0


def greedy_nms(boxes, scores, threshold, keep_order=True, compare_all=False, keep_overlapping=False):
    order = scores.argsort(descending=True)
    keep = []
    while len(order) > 0:
        best = order[0]
        keep.append(int(best))
        overlaps = box_iou(boxes[best].unsqueeze(0), boxes[order[1:]])[0]
        if compare_all:
            order = order[1:]
        else:
            order = order[1:][overlaps > threshold] if keep_overlapping else order[1:][overlaps <= threshold]
    kept = torch.tensor(keep, dtype=torch.long)
    return kept if keep_order else kept.sort().values


def confusion_matrix(labels, predicted, classes):
    confusion = torch.zeros(classes, classes, dtype=torch.long)
    confusion.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
    return confusion


def majority_baseline(train, test, score_on_train=False, peek=False):
    majority = Counter((test if peek else train).tolist()).most_common(1)[0][0]
    return float(((train if score_on_train else test) == majority).float().mean())


def fastest_run(records, threshold, key="test_accuracy_tta", training_only=True):
    reached = [r for r in records if (r.step in ("fastcnn", "seed", "reference") or not training_only)
               and (r.get(key) or 0) >= threshold]
    return min(reached, key=lambda r: r.get("train_seconds") or 0)


def ghost_gradient(net, images, labels, parts, split=True, mean=True, first_only=False):
    net.zero_grad()
    chunks = list(zip(images.chunk(parts), labels.chunk(parts))) if split else [(images, labels)]
    if first_only:
        chunks = chunks[:1]
    loss = sum(F.cross_entropy(net(x), y) for x, y in chunks)
    (loss / len(chunks) if mean else loss).backward()
    return torch.cat([p.grad.flatten() for p in net.parameters()])


def recall(similarity, relevant, k):
    top = similarity.topk(k, dim=1).indices
    return relevant.gather(1, top).any(dim=1).float().mean().item()


def _best_word_per_beam(scores, log_probs, width):
    best, words = (scores[:, None] + log_probs).max(dim=1)
    order = best.argsort(descending=True)[:width]
    return best[order], order, words[order]


def _head(d):
    return d * 128 + 128 + 128 * 10 + 10


#: label -> the reference answer (a value, a function or a class), as the notebooks' solutions give it.
REFERENCES: dict[str, Any] = {
    "ex-cnn-conv2d": conv2d,
    "ex-text-lstm-cell": lstm_cell,
    "ex-text-attention": attention,
    "ex-fusion-gmu": MyGMU,
    "ex-obj-iou": iou,
    "ex-obj-entity-f1": entity_f1,
    "ex-intro-seeds": t_interval,
    "ex-concepts-head-params": _head,
    "ex-concepts-bag-of-words": bag_of_words,
    "ex-cnn-receptive-field": (11, 43),
    "ex-cnn-pool-shapes": (7, 3),
    "ex-cnn-lenet-params": (62006, 324600),
    "ex-cnn-flops": "block1",
    "ex-cnn-tta": (2, 6),
    "ex-text-left-padding": left_pad,
    "ex-text-relu-rnn": lambda x, h, wi, wh, bi, bh: torch.relu(x @ wi.T + bi + h @ wh.T + bh),
    "ex-text-gru-cell": gru_cell,
    "ex-text-causal": lambda t: torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1),
    "ex-text-reverse": reverse_real_tokens,
    "ex-fusion-concat-cost": lambda m, d: _head(m * d),
    "ex-fusion-accuracy-per-parameter": pareto_front,
    "ex-fusion-weights-layernorm": False,
    "ex-fusion-word-dropout": drop_words,
    "ex-fusion-ogm": modulation_factor,
    "ex-obj-ece-blind-spot": abs(3 / 6 - 4.42 / 6),
    "ex-obj-nms": greedy_nms,
    "ex-obj-shuffled-expressions": SHUFFLED_EXPRESSION_CHOICES[1],
    "ex-worked-concat-cost": lambda sizes: _head(sum(sizes)),
    "ex-frontiers-image-occlusion": len(range(0, 32 - 8 + 1, 4)),
    "ex-align-info-nce": lambda i, t, tau: info_nce(i, t, tau),
    "ex-align-recall": recall,
    "ex-align-confusion": confusion_matrix,
    "ex-align-cone": CONE_CHOICES[0],
    "ex-own-majority": majority_baseline,
    "ex-appendix-fastest": fastest_run,
    "ex-scaling-ghost-bn": ghost_gradient,
    "ex-gen-chair": chair,
    "ex-gen-beam-step": beam_step,
    "ex-reason-pairs": RelationNetwork.pairs,
    "ex-gen-prefix-parameters": prefix_trainable_parameters,
    "ex-reason-tokens": lambda size, patch: (size // patch) ** 2 + 1 if size % patch == 0 else _raise(ValueError),
    "ex-reason-closest": closest_colour,
}


#: label -> typical wrong answers (at least two each).
MISTAKES: dict[str, list[Any]] = {
    "ex-cnn-conv2d": [
        lambda images, weight, bias, stride, padding: conv2d(images, weight, None, stride, padding),  # no bias
        lambda images, weight, bias, stride, padding: conv2d(images, weight.flip(2, 3), bias, stride, padding),
        lambda images, weight, bias, stride, padding: conv2d(images, weight, bias, stride, 0),  # padding ignored
        lambda images, weight, bias, stride, padding: conv2d(images, weight, bias, 1, padding),  # stride ignored
        lambda images, weight, bias, stride, padding: None,
    ],
    "ex-text-lstm-cell": [
        lambda *args: lstm_cell(*args, order="figo"),  # input and forget gates swapped
        lambda *args: lstm_cell(*args, swap=True),  # (c, h) instead of (h, c)
        lambda *args: lstm_cell(*args, hh_bias=False),
        lambda *args: lstm_cell(*args)[0],  # h only
        lambda *args: lstm_cell(*args)[0].T,  # one transposed tensor
    ],
    "ex-text-attention": [
        lambda q, k, v, mask=None: attention(q, k, v, mask, scale=False),
        lambda q, k, v, mask=None: attention(q, k, v, mask, use_mask=False),
        lambda q, k, v, mask=None: attention(q, k, v, mask, invert=True),
        lambda q, k, v, mask=None: attention(q, k, v, mask, dim=1),  # softmax over the queries
        lambda q, k, v, mask=None: attention(q, k, v, mask)[0],  # the output only
        lambda q, k, v, mask=None: (attention(q, k, v, mask)[0].transpose(1, 2), attention(q, k, v, mask)[1]),
    ],
    "ex-fusion-gmu": [GMUWithoutText, GMUWithWrongSize, GMUWithoutOutFeatures, GMUThatMixesTheBatch],
    "ex-obj-iou": [
        lambda a, b: iou(a, b, clamp=False),
        lambda a, b: iou(a, b, subtract=False),
        lambda a, b: iou(a, b, plus_one=1.0),
        lambda a, b: iou(a, b, area_of_a=True),
        lambda a, b: iou(a, b).diagonal(),  # the wrong shape
        lambda a, b: None,
    ],
    "ex-obj-entity-f1": [token_f1, untyped_f1, strict_b_f1, macro_f1, lambda truth, guess: None,
                         lambda truth, guess: float("nan")],
    "ex-intro-seeds": [
        lambda d: t_interval(d, quantile=lambda n: 1.96),
        lambda d: t_interval(d, unbiased=False),
        lambda d: t_interval(d, per_mean=False),
        lambda d: t_interval(d, quantile=lambda n: t_975(n + 1)),  # n degrees of freedom
        lambda d: (d.mean(), t_975(len(d)) * d.std() / len(d) ** 0.5),  # (mean, half-width)
        lambda d: d.mean(),
    ],
    "ex-concepts-head-params": [
        lambda d: d * 128 + 128 * 10,  # no biases
        lambda d: d * 128 + 128,  # no second layer
        lambda d: _head(d) + 1,  # off by one
        lambda d: _head(d) - 10,  # the second layer's biases missing
        lambda d: None,
    ],
    "ex-concepts-bag-of-words": [
        lambda ids, v: bag_of_words(ids, v, padding=True),
        lambda ids, v: bag_of_words(ids, v, presence=True),
        lambda ids, v: bag_of_words(ids, v).T,
        lambda ids, v: None,
    ],
    "ex-cnn-receptive-field": [(10, 42), (11, 17), (16, 43), (11, 53), (11, 23), (12, 44), (0, 0), 11],
    "ex-cnn-pool-shapes": [(8, 4), (7, 5), (14, 3), (7, 7), (8, 3), (6, 2), (0, 0), (15, 15)],
    "ex-cnn-lenet-params": [(61770, 324600), (62006, 491640), (62006, 48120), (62006, 324480), (62007, 324600),
                            (61984, 324600), (61706, 324600), (62006, 20400), (62006, 1298040), (0, 0)],
    "ex-cnn-flops": ["stem", "block2", "block3", "head", "block9"],
    "ex-cnn-tta": [(1, 6), (2, 4), (2, 3), (2, 2), (3, 6), (2, 7), (0, 0)],
    "ex-text-left-padding": [
        lambda ids, lengths: ids.flip(1),
        lambda ids, lengths: ids,
        lambda ids, lengths: left_pad(ids, lengths).T,
        lambda ids, lengths: None,
    ],
    "ex-text-relu-rnn": [
        lambda x, h, wi, wh, bi, bh: torch.tanh(x @ wi.T + bi + h @ wh.T + bh),
        lambda x, h, wi, wh, bi, bh: torch.relu(x @ wi.T + bi + h @ wh.T),
        lambda x, h, wi, wh, bi, bh: torch.relu(x @ wi + bi + h @ wh + bh),  # weights not transposed
        lambda x, h, wi, wh, bi, bh: None,
    ],
    "ex-text-gru-cell": [
        lambda *args: gru_cell(*args, torch_form=True),
        lambda *args: gru_cell(*args, swap_z=True),
        lambda x, h, *weights: h,
        lambda *args: None,
    ],
    "ex-text-causal": [
        lambda t: torch.tril(torch.ones(t, t, dtype=torch.bool)),
        lambda t: torch.triu(torch.ones(t, t, dtype=torch.bool)),
        lambda t: torch.triu(torch.ones(t, t), diagonal=1),  # float, not bool
        lambda t: torch.tril(torch.ones(t, t, dtype=torch.bool), diagonal=-1),  # transposed
        lambda t: None,
    ],
    "ex-text-reverse": [
        lambda tokens, lengths: tokens.flip(1),
        lambda tokens, lengths: tokens,
        lambda tokens, lengths: reverse_real_tokens(tokens, lengths)[:, :-1],
        lambda tokens, lengths: None,
    ],
    "ex-fusion-concat-cost": [
        lambda m, d: m * d * 128 + 128 * 10,
        lambda m, d: _head(d),
        lambda m, d: m * d * 10 + 10,
        lambda m, d: _head(m * d) + 1,
    ],
    "ex-fusion-accuracy-per-parameter": [
        lambda runs: pareto_front(runs, bigger_is_better=True),
        lambda runs: list(runs),
        lambda runs: [],
        lambda runs: pareto_front(runs) + ["c"],
        lambda runs: pareto_front(runs)[1:],
        lambda runs: ",".join(pareto_front(runs)),
    ],
    "ex-fusion-weights-layernorm": [True, "maybe"],
    "ex-fusion-word-dropout": [
        lambda tokens, level: drop_words(tokens, level, touch_padding=True),
        lambda tokens, level: drop_words(tokens, level, whole=True),
        lambda tokens, level: drop_words(tokens, level, unk=0),
        lambda tokens, level: drop_words(tokens, level, keep_probability=True),
        lambda tokens, level: tokens,
        lambda tokens, level: drop_words(tokens, level)[:, :8],
    ],
    "ex-fusion-ogm": [
        lambda mine, other: 1 - math.tanh(mine / other - 1),
        lambda mine, other: math.tanh(mine / other - 1) if mine > other else 1.0,
        lambda mine, other: 1 - math.tanh(mine / other) if mine > other else 1.0,
        lambda mine, other: 1.0,
        lambda mine, other: None,
    ],
    "ex-obj-ece-blind-spot": [0.5, 4.42 / 6, 3 / 6 - 4.42 / 6, abs(3 / 6 - 4.42 / 6) / 2, 0.0, 0.24, 1.0],
    "ex-obj-nms": [
        lambda *args: greedy_nms(*args, keep_order=False),
        lambda *args: greedy_nms(*args, compare_all=True),
        lambda *args: greedy_nms(*args, keep_overlapping=True),
        lambda boxes, scores, threshold: scores.argsort(descending=True),  # nothing suppressed
        lambda *args: None,
    ],
    "ex-obj-shuffled-expressions": [SHUFFLED_EXPRESSION_CHOICES[0], SHUFFLED_EXPRESSION_CHOICES[2], "about 50%"],
    "ex-worked-concat-cost": [
        lambda sizes: sum(sizes) * 128 + 1280,
        lambda sizes: _head(sizes[0]),
        lambda sizes: _head(sum(sizes)) + 1,
        lambda sizes: None,
    ],
    "ex-frontiers-image-occlusion": [8, 6, 4, 9, 49, 24, 0],
    "ex-align-info-nce": [
        lambda i, t, tau: F.cross_entropy(i @ t.T / tau, torch.arange(len(i))),
        lambda i, t, tau: info_nce(i, t, 1 / tau),
        lambda i, t, tau: info_nce(i, t, tau) * len(i),
        lambda i, t, tau: 2 * info_nce(i, t, tau),
        lambda i, t, tau: info_nce(i, t, 1.0),
        lambda i, t, tau: torch.tensor(0.0),
        lambda i, t, tau: torch.zeros(len(i)),
    ],
    "ex-align-recall": [
        lambda s, r, k: recall_at_k(-s, r, k),
        lambda s, r, k: recall_at_k(s, r, k, "fraction"),
        lambda s, r, k: recall_at_k(s, r, min(k + 1, s.shape[1])),
        lambda s, r, k: recall(s, r, 1),
        lambda s, r, k: 0.0,
    ],
    "ex-align-confusion": [
        lambda labels, predicted, classes: confusion_matrix(labels, predicted, classes).T,
        lambda labels, predicted, classes: (confusion_matrix(labels, predicted, classes) > 0).long(),
        lambda labels, predicted, classes: confusion_matrix(labels, predicted, classes)[:, :-1],
        lambda labels, predicted, classes: None,
    ],
    "ex-align-cone": [CONE_CHOICES[1], CONE_CHOICES[2], "the gap"],
    "ex-own-majority": [
        lambda train, test: majority_baseline(train, test, peek=True),
        lambda train, test: majority_baseline(train, test, score_on_train=True),
        lambda train, test: float((test == 2).sum()),  # a count, not a share
        lambda train, test: 2,  # the majority label itself
        lambda train, test: None,
    ],
    "ex-appendix-fastest": [
        lambda records, threshold: fastest_run(records, 1e-9),  # the threshold ignored
        lambda records, threshold: fastest_run(records, threshold, key="test_accuracy"),
        lambda records, threshold: fastest_run(records, threshold).recipe,
        lambda records, threshold: fastest_run(records, -1, training_only=False),
        lambda records, threshold: None,
    ],
    "ex-scaling-ghost-bn": [
        lambda *args: ghost_gradient(*args, split=False),
        lambda *args: ghost_gradient(*args, mean=False),
        lambda *args: ghost_gradient(*args, first_only=True),
        lambda *args: None,
    ],
    "ex-gen-chair": [
        lambda m, p: (sum(len(a - b) for a, b in zip(m, p)) / sum(len(b) for b in p), chair(m, p)[1]),
        lambda m, p: (chair(m, p)[1], chair(m, p)[1]),
        lambda m, p: (chair(m, p)[0], 0.0),
        lambda m, p: list(chair(m, p)),
        lambda m, p: None,
    ],
    "ex-gen-beam-step": [
        _best_word_per_beam,
        lambda scores, log_probs, width: beam_step(torch.zeros_like(scores), log_probs, width),
        lambda scores, log_probs, width: beam_step(scores, log_probs, width)[::-1],  # (word, parent, scores)
        lambda scores, log_probs, width: (beam_step(scores, log_probs, width)[0],) + beam_step(scores, log_probs, width)[:0:-1],
        lambda scores, log_probs, width: None,
    ],
    "ex-gen-prefix-parameters": [
        lambda c, d: c * d,  # no bias
        lambda c, d: d * d + d,  # the projection's input taken to be the width
        lambda c, d: c * d + d + 10**6,  # the frozen language model counted too
        lambda c, d: float(c * d + d),
        lambda c, d: None,
    ],
    "ex-reason-tokens": [
        lambda size, patch: (size // patch) ** 2,  # no class token
        lambda size, patch: size // patch + 1,  # one direction only
        lambda size, patch: (size // patch) ** 2 + 1,  # does not refuse 5x5 patches of 32x32 images
        lambda size, patch: (size // patch) ** 2 + 2,
        lambda size, patch: None,
    ],
    "ex-reason-closest": [
        lambda objects, colour: colour,  # the object itself
        lambda objects, colour: _farthest_colour(objects, colour),
        lambda objects, colour: _closest_by_x(objects, colour),  # x only
        lambda objects, colour: None,
    ],
    "ex-reason-pairs": [
        lambda o, q: RelationNetwork.pairs(o, q).reshape(o.shape[0], o.shape[1], o.shape[1], -1).transpose(1, 2)
        .reshape(o.shape[0], o.shape[1] ** 2, -1),  # [o_j; o_i; q]
        lambda o, q: RelationNetwork.pairs(o, q)[:, :, : 2 * o.shape[2]],  # no question
        lambda o, q: RelationNetwork.pairs(o, q)[:, [i * o.shape[1] + j for i in range(o.shape[1])
                                                     for j in range(i + 1, o.shape[1])]],  # unordered pairs only
        lambda o, q: RelationNetwork.pairs(o, q.flip(0)),  # another scene's question
        lambda o, q: None,
    ],
}

#: label -> correct intermediate results and give-away phrases, besides the reference answer itself.
SECRETS: dict[str, list[Any]] = {
    "ex-cnn-lenet-params": [456, 2416, 2704, 10164, 850, "13x13", "13 x 13", "16 * 13 * 13"],
    "ex-cnn-receptive-field": ["1 + 5", "5 * 2", "5 x 2"],
    "ex-cnn-pool-shapes": ["(15 - 2)", "(7 - 3)", "15 // 2", "7 // 2"],
    "ex-cnn-tta": ["two shifted", "six", "doubles", "twice"],
    "ex-frontiers-image-occlusion": [24, "32 - 8", "7x7", "7 x 7", "seven"],
    "ex-obj-ece-blind-spot": [4.42 / 6, "|0.5 - "],
    "ex-cnn-flops": ["block 1", "first block", "most pixels", "15x15"],
    "ex-fusion-weights-layernorm": ["changes nothing", "does not change", "no effect", "unchanged", "undoes",
                                    "cancels"],
    "ex-obj-shuffled-expressions": ["image-only", "image only", "by chance"],
    "ex-align-cone": ["before training", "never trained", "untrained", "cone of its own", "both clouds here are images",
                      "random tower"],
    "ex-text-causal": ["diagonal=1"],
}

#: Labels whose function's output shape is part of the answer (computing H_out is the exercise).
SHAPES_ARE_SECRET = {"ex-cnn-conv2d"}


# --- recording and scanning -----------------------------------------------------------------------------------


def recording(function, outputs: list):
    """``function``, recording each of its results in ``outputs`` (a class is returned as it is)."""
    if isinstance(function, type) or not callable(function):
        return function

    def recorded(*args, **kwargs):
        result = function(*args, **kwargs)
        outputs.append(result)
        return result

    return recorded


def _significant(text: str) -> int:
    return len(text.lstrip("-").replace(".", "").replace("%", "").lstrip("0"))


def number_forms(value: float, small_ints: bool = True) -> set[str]:
    """The ways a message could write ``value``: 62006, 62,006, 62 006, 0.24, 0.237, 0.2367, .237, 23.7% ..."""
    value = float(value)
    if not math.isfinite(value):
        return set()
    if value.is_integer():
        n = int(value)
        if abs(n) < 10 and not small_ints:
            return set()
        grouped = f"{n:_}"
        return {str(n), f"{n:,}", f"{n}.0", grouped.replace("_", " "), grouped.replace("_", "\u202f"),
                grouped.replace("_", "\u00a0"), grouped.replace("_", "'")}
    forms = {f"{value:.{d}f}" for d in (2, 3, 4)} | {f"{value:.{g}g}" for g in (3, 4, 5)}
    if 0 < abs(value) <= 1:
        forms |= {f"{100 * value:.0f}%", f"{100 * value:.1f}%", f"{100 * value:.2f}%"}
    forms = {form for form in forms if _significant(form) >= 2}
    forms |= {form.replace("0.", ".", 1) for form in forms if form.lstrip("-").startswith("0.")}
    return forms


def _forms(value: Any, small_ints: bool, shapes: bool) -> set[str]:
    """Renderings of an expected (or the student's own) value, for scanning (or blanking) a message."""
    if value is None or isinstance(value, type):
        return set()
    if isinstance(value, bool):
        return {str(value)}
    if isinstance(value, (int, float)):
        return number_forms(value, small_ints)
    if isinstance(value, str):
        return {value}
    if hasattr(value, "recipe") and hasattr(value, "run"):  # a results Record
        return {value.recipe} if value.recipe else set()
    if isinstance(value, torch.Tensor):
        forms = {str(tuple(value.shape))} if shapes and value.dim() > 0 else set()
        if value.numel() == 1:
            return forms | number_forms(value.item(), small_ints)
        if value.numel() <= 64:
            forms |= {str(value.tolist()), str(tuple(value.tolist()))}
        return forms
    if isinstance(value, (list, tuple, set)):
        items = sorted(value, key=str) if isinstance(value, set) else list(value)
        forms = set()
        if items and all(isinstance(item, (int, float, str)) for item in items):
            forms |= {str(list(items)), str(tuple(items)), ", ".join(map(str, items))}
            if all(isinstance(item, str) for item in items):
                forms |= {str(set(items)), str(sorted(items))}
        for item in items:  # a name is scanned in quotes: a bare "a" is in every sentence
            forms |= {f"'{item}'", f'"{item}"'} if isinstance(item, str) else _forms(item, small_ints, shapes)
        return forms
    return set()


def _pattern(form: str) -> re.Pattern:
    if re.fullmatch(r"-?[\d.,'\s\u202f\u00a0]*\d%?", form):  # a number: not inside a longer one or a word
        return re.compile(r"(?<![\w.])" + re.escape(form) + r"(?![\w]|[.,]\d)")
    return re.compile(re.escape(form), re.IGNORECASE)


def leaks(message: str, secrets: set[str], own: set[str]) -> list[str]:
    """The secrets found in ``message`` once the student's own values (``own``) are blanked out."""
    for form in sorted(own, key=len, reverse=True):
        if form:
            message = _pattern(form).sub("<yours>", message)
    return sorted(form for form in secrets if form and _pattern(form).search(message))


def _choice_secrets(label: str) -> set[str]:
    reference = REFERENCES[label]
    options = {"ex-obj-shuffled-expressions": SHUFFLED_EXPRESSION_CHOICES, "ex-align-cone": CONE_CHOICES}.get(label)
    if options is None:
        return set()
    index = list(options).index(reference)
    return {f"option {index}", f"option {index + 1}", f"choice {index + 1}", f"CHOICES[{index}]", f"({'abc'[index]})"}


_SECRETS_CACHE: dict[str, tuple[set[str], list]] = {}


def secrets_of(label: str, capsys) -> set[str]:
    """The reference answer's renderings for ``label`` (running the reference through the checker once)."""
    if label not in _SECRETS_CACHE:
        reference, outputs = REFERENCES[label], []
        check(label, recording(reference, outputs))
        assert capsys.readouterr().out.strip().endswith(passed_line(label)), label
        function = callable(reference) and not isinstance(reference, type)
        values = outputs if function else [reference]
        secrets = set().union(*(_forms(value, not function, label in SHAPES_ARE_SECRET) for value in values))
        if label == "ex-obj-nms":  # how many boxes NMS keeps is the answer for each case
            secrets |= {f"{len(kept)} boxes" for kept in outputs} | {f"keeps {len(kept)}" for kept in outputs}
        for extra in SECRETS.get(label, []):
            secrets |= _forms(extra, True, False) if not isinstance(extra, str) else {extra}
        _SECRETS_CACHE[label] = (secrets | _choice_secrets(label), outputs)
    return _SECRETS_CACHE[label][0]


# --- the tests ------------------------------------------------------------------------------------------------

ALL_MISTAKES = [(label, index) for label in sorted(MISTAKES) for index in range(len(MISTAKES[label]))]


@pytest.mark.parametrize("label", sorted(exercises.CHECKERS))
def test_every_checker_has_typical_mistakes(label):
    assert label in MISTAKES, f"{label} has a checker but no typical mistakes in tests/test_checker_messages.py"
    assert len(MISTAKES[label]) >= 2, f"{label}: list at least two typical mistakes"
    assert label in REFERENCES, f"{label} has a checker but no reference answer in tests/test_checker_messages.py"


def test_the_tables_name_only_registered_exercises():
    assert set(MISTAKES) <= set(exercises.CHECKERS) and set(REFERENCES) <= set(exercises.CHECKERS)
    assert len(ALL_MISTAKES) >= 2 * len(MISTAKES)


@pytest.mark.parametrize("label", sorted(REFERENCES))
def test_the_reference_answer_passes(label, capsys):
    check(label, REFERENCES[label])
    assert capsys.readouterr().out.strip().endswith(passed_line(label))


@pytest.mark.parametrize("label, index", ALL_MISTAKES)
def test_a_typical_mistake_fails_without_giving_the_answer_away(label, index, capsys):
    secrets = secrets_of(label, capsys)
    mistake, own_outputs = MISTAKES[label][index], []
    # As the student would call it. A function whose body only returns None reads as the untouched starter.
    with pytest.raises((ExerciseError, ExerciseNotDone)) as failure:
        check(label, mistake)
    assert isinstance(failure.value, ExerciseError) or is_unfinished(mistake)
    # Through a wrapper that records what the student's function returns (it may be echoed back), and that
    # takes even a function that only returns None to the checker.
    with pytest.raises(ExerciseError) as failure:
        check(label, recording(mistake, own_outputs))
    assert passed_line(label) not in capsys.readouterr().out
    message = str(failure.value)
    assert message.startswith(f"{label}: ")
    message = message[len(label) + 2:]
    if label in SHAPES_ARE_SECRET:  # the case's description names the inputs' shapes, which may coincide
        message = re.sub(r"(?m)^\s*case:.*$", "", message)
    if "choose one of" in message:  # an answer that is not an option: listing the options is fine
        assert not isinstance(mistake, bool) and mistake != REFERENCES[label]
        message = message[:message.index("choose one of")]
    function = callable(mistake) and not isinstance(mistake, type)
    own = set().union(*(_forms(value, True, False) for value in (own_outputs if function else [mistake])))
    found = leaks(message, secrets, own)
    assert not found, f"{label}: the message for mistake {index} gives away {found}: {message!r}"
    assert "but should be" not in message and "expected value" not in message, message


def test_the_scan_finds_the_usual_renderings():
    secrets = _forms((62006, 324600), True, False) | _forms(0.23666, True, False)
    for message in ("LeNet's parameter count is 0 but should be 62,006", "should be 62006", "is 62 006",
                    "fc1 needs 324,600", "your ECE should be 0.2367", "about 0.237", "0.24 expected", "(62006, 324600)",
                    "23.7%"):
        assert leaks(message, secrets, set()), message
    for message in ("your answer is 0, which is too small", "0.2 of the tokens", "level 0.5", "620060 is too large",
                    "the 3x3 window", "0.123"):
        assert not leaks(message, secrets, set()), message
    assert not leaks("your ECE is -0.2367, which is too small", secrets, _forms(-0.23666, True, False))
