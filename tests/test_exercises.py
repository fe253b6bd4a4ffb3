"""Checkers: the shared machinery, and each chapter checker against its reference and typical wrong answers."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F
from torchvision.ops import box_iou

from mmbook import exercises
from mmbook.course.checks.alignment import CONE_CHOICES
from mmbook.results import t_975
from mmbook.course.checks.objectives import SHUFFLED_EXPRESSION_CHOICES
from mmbook.exercises import (ExerciseError, ExerciseNotDone, check, check_choice, check_module_output, check_shape,
                              check_value, is_unfinished, passed_line, todo)

# --- the machinery --------------------------------------------------------------------------------


def test_check_value_passes_and_explains_without_the_answer():
    check_value(1.8701, 1.87, tol=1e-3)
    with pytest.raises(ExerciseError, match=r"^your loss is 2\.31, which is too large \(the check allows a difference "
                                            r"of 0\.01\); did you average over the batch\?$"):
        check_value(2.31, 1.87, tol=0.01, name="your loss", wrong={2.31: "did you average over the batch?"})
    with pytest.raises(ExerciseError, match=r"^your answer is 0, which is too small; count the biases$"):
        check_value(0, 62006, tol=0.5, hint="count the biases")
    with pytest.raises(ExerciseError, match=r"should be a number, got str"):
        check_value("two", 2)
    with pytest.raises(ExerciseError, match=r"sequence of 2 numbers, got list of length 3"):
        check_value([1, 2, 3], [1, 2])
    with pytest.raises(ExerciseError, match=r"^x\[1\] is 5, which is too large$"):
        check_value([1, 5], [1, 2], name="x")
    with pytest.raises(ExerciseError, match=r"^your answer is nan, not a finite number$"):
        check_value(float("nan"), 1.0)
    for wrong in (2.31, 0, 1.5, 1e9):
        with pytest.raises(ExerciseError) as failure:
            check_value(wrong, 1.87, tol=0.01, hint="did you average over the batch?")
        assert "1.87" not in str(failure.value) and "should be" not in str(failure.value)


def test_check_value_shows_the_target_only_when_asked():
    with pytest.raises(ExerciseError, match=r"^your loss is 2\.31 but should be 1\.87 \(within 0\.01\); "
                                            r"did you average over the batch\?$"):
        check_value(2.31, 1.87, tol=0.01, name="your loss", wrong={2.31: "did you average over the batch?"},
                    show_expected=True)
    with pytest.raises(ExerciseError, match=r"x\[1\] is 5 but should be 2"):
        check_value([1, 5], [1, 2], name="x", show_expected=True)
    with pytest.raises(ExerciseError, match=r"is nan but should be 1"):
        check_value(float("nan"), 1.0, show_expected=True)


def test_check_shape_and_module_output():
    check_shape(torch.zeros(4, 10), (4, 10))
    with pytest.raises(ExerciseError, match=r"^the output has shape \(4, 20\): dimension 1 is too large; "
                                            r"a classifier gives one logit per class$"):
        check_shape(torch.zeros(4, 20), (4, 10), hint="a classifier gives one logit per class")
    with pytest.raises(ExerciseError, match=r"^the output has shape \(10, 4\): the right sizes in the wrong order"):
        check_shape(torch.zeros(10, 4), (4, 10))
    with pytest.raises(ExerciseError, match=r"^the output has shape \(40,\), 1 dimension; it should have 2$"):
        check_shape(torch.zeros(40), (4, 10))
    with pytest.raises(ExerciseError, match=r"^the output should be a tensor with 1 dimension, got list$"):
        check_shape([1, 2], (2,))
    with pytest.raises(ExerciseError, match=r"^the output has shape \(4, 20\); it should be \(4, 10\); "
                                            r"a classifier gives one logit per class$"):
        check_shape(torch.zeros(4, 20), (4, 10), hint="a classifier gives one logit per class", show_expected=True)
    with pytest.raises(ExerciseError, match=r"should be a tensor of shape \(2,\), got list"):
        check_shape([1, 2], (2,), show_expected=True)
    assert check_module_output(torch.nn.Linear(3, 2), torch.zeros(5, 3), (5, 2)).shape == (5, 2)
    with pytest.raises(ExerciseError, match=r"your module raised RuntimeError"):
        check_module_output(torch.nn.Linear(4, 2), torch.zeros(5, 3), (5, 2))
    with pytest.raises(ExerciseError, match=r"^your module's output has shape \(5, 3\): dimension 1 is too large$"):
        check_module_output(torch.nn.Linear(3, 3), torch.zeros(5, 3), (5, 2))


def test_check_choice():
    check_choice(" Block1", "block1", ["stem", "block1"])
    with pytest.raises(ExerciseError, match=r"choose one of 'stem', 'block1'"):
        check_choice("block9", "block1", ["stem", "block1"])
    with pytest.raises(ExerciseError, match=r"your choice 'stem' is not right; too few channels"):
        check_choice("stem", "block1", ["stem", "block1"], hints={"stem": "too few channels"})
    with pytest.raises(ExerciseError, match=r"^your choice 'head' is not right; compare the costs$"):
        check_choice("head", "block1", ["stem", "block1", "head"], hints={"stem": "too few channels"},
                     hint="compare the costs")


def test_unfinished_answers_are_recognised():
    def starter(x):
        """Docstring."""
        ...  # your code here

    def partly_done(x: tuple[int, ...]) -> torch.Tensor:
        y = x[..., 0]
        return ...

    def finished(x: tuple[int, ...]) -> torch.Tensor:
        return x[..., 0]

    namespace: dict = {}
    exec('def starter(x):\n    """Doc."""\n    ...\n\ndef done(x):\n    return x[..., 0]\n\n'
         "class Half:\n    def forward(self, x):\n        ...\n", namespace)  # no source to read: the code is read
    assert is_unfinished(namespace["starter"]) and is_unfinished(namespace["Half"])
    assert not is_unfinished(namespace["done"])
    assert is_unfinished(...) and is_unfinished([1, ...]) and is_unfinished({"a": ...})
    assert is_unfinished(starter) and is_unfinished(partly_done)
    assert not is_unfinished(finished) and not is_unfinished(0) and not is_unfinished(None)


def test_check_reports_not_done_wrong_and_passed(capsys):
    exercises.register("ex-test-double", lambda fn: check_value(fn(3), 6, name="double(3)", hint="multiply by 2"))
    try:
        def double(x):
            ...

        with pytest.raises(ExerciseNotDone, match=r"^exercise ex-test-double : replace the \.\.\. with your code$"):
            check("ex-test-double", double)
        with pytest.raises(ExerciseNotDone):
            check("ex-test-double", lambda x: todo("ex-test-double"))
        with pytest.raises(ExerciseError, match=r"^ex-test-double: double\(3\) is 9, which is too large; multiply by 2$"):
            check("ex-test-double", lambda x: x * x)
        check("ex-test-double", lambda x: 2 * x)
        assert capsys.readouterr().out.splitlines() == [passed_line("ex-test-double")]
    finally:
        exercises.CHECKERS.pop("ex-test-double")
    with pytest.raises(KeyError, match=r"no checker for exercise 'ex-nowhere'"):
        check("ex-nowhere", 1)


def test_errors_render_as_one_line_in_jupyter():
    assert ExerciseNotDone("ex-a")._render_traceback_() == [
        "NotImplementedError: exercise ex-a : replace the ... with your code"]
    assert ExerciseError("wrong")._render_traceback_() == ["ExerciseError: wrong"]
    assert isinstance(ExerciseNotDone("ex-a"), NotImplementedError) and isinstance(ExerciseError("x"), AssertionError)


def test_register_refuses_bad_checkers():
    with pytest.raises(TypeError, match="a checker must be a function or 'module:function'"):
        exercises.register("ex-x", "not a path")


def test_every_registered_checker_imports():
    for label in exercises.CHECKERS:
        assert callable(exercises.checker_for(label)), label


# --- the chapter checkers: the reference passes, typical mistakes fail with their explanation -------

def _interval(differences):
    n = len(differences)
    half = t_975(n) * differences.std() / n ** 0.5
    return differences.mean() - half, differences.mean() + half


def _interval_z(differences):
    half = 1.96 * differences.std() / len(differences) ** 0.5
    return differences.mean() - half, differences.mean() + half


def _bag(ids, vocab_size):
    counts = torch.zeros(ids.shape[0], vocab_size).scatter_add_(1, ids, torch.ones(ids.shape))
    counts[:, 0] = 0
    return counts


def _left_pad(ids, lengths):
    left = torch.zeros_like(ids)
    for row, length in enumerate(lengths.tolist()):
        left[row, ids.shape[1] - length:] = ids[row, :length]
    return left


def _paper_gru(x, h, weight_ih, weight_hh, bias_ih, bias_hh, torch_form=False):
    x_r, x_z, x_n = (x @ weight_ih.T + bias_ih).chunk(3, dim=1)
    w_hr, w_hz, w_hn = weight_hh.chunk(3, dim=0)
    b_hr, b_hz, b_hn = bias_hh.chunk(3)
    r = torch.sigmoid(x_r + h @ w_hr.T + b_hr)
    z = torch.sigmoid(x_z + h @ w_hz.T + b_hz)
    n = torch.tanh(x_n + r * (h @ w_hn.T + b_hn)) if torch_form else torch.tanh(x_n + (r * h) @ w_hn.T + b_hn)
    return (1 - z) * n + z * h


def _reverse(tokens, lengths):
    out = torch.zeros_like(tokens)
    for row, length in enumerate(lengths.tolist()):
        out[row, :length] = tokens[row, :length].flip(0)
    return out


def _pareto(runs, bigger_is_better=False):
    sign = -1 if bigger_is_better else 1
    return [n for n, (p, a) in runs.items()
            if not any(sign * po <= sign * p and ao > a for o, (po, ao) in runs.items() if o != n)]


def _drop_words(tokens, level, seed=0, whole=False):
    generator = torch.Generator().manual_seed(seed)
    shape = (tokens.shape[0], 1) if whole else tokens.shape
    hit = (torch.rand(shape, generator=generator) < level) & (tokens != 0)
    return torch.where(hit, torch.ones_like(tokens), tokens)


def _greedy_nms(boxes, scores, threshold, keep_order=True, compare_all=False):
    order = scores.argsort(descending=True)
    keep = []
    while len(order) > 0:
        best = order[0]
        keep.append(int(best))
        overlaps = box_iou(boxes[best].unsqueeze(0), boxes[order[1:]])[0]
        order = order[1:][overlaps <= threshold] if not compare_all else order[1:]
    kept = torch.tensor(keep, dtype=torch.long)
    return kept if keep_order else kept.sort().values


def _confusion(labels, predicted, classes):
    confusion = torch.zeros(classes, classes, dtype=torch.long)
    confusion.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
    return confusion


def _ogm(mine, other):
    return 1 - math.tanh(mine / other - 1) if mine > other else 1.0


def _majority(train, test, score_on_train=False, peek=False):
    majority = torch.mode(test if peek else train).values
    return float(((train if score_on_train else test) == majority).float().mean())


def _fastest(records, threshold, key="test_accuracy_tta"):
    reached = [r for r in records if r.step in ("fastcnn", "seed", "reference") and (r.get(key) or 0) >= threshold]
    return min(reached, key=lambda r: r.get("train_seconds"))


def _ghost(net, images, labels, parts, split=True, mean=True):
    net.zero_grad()
    chunks = list(zip(images.chunk(parts), labels.chunk(parts))) if split else [(images, labels)]
    loss = sum(F.cross_entropy(net(x), y) for x, y in chunks)
    (loss / len(chunks) if mean else loss).backward()
    return torch.cat([p.grad.flatten() for p in net.parameters()])


CASES = {
    "ex-intro-seeds": (_interval, [
        (_interval_z, "use Student's t with n - 1 degrees of freedom"),
        (lambda d: (d.mean() - t_975(len(d)) * d.std(), 0.0), "divide the standard deviation by sqrt"),
    ]),
    "ex-concepts-head-params": (lambda d: d * 128 + 128 + 128 * 10 + 10, [
        (lambda d: d * 128 + 128 * 10, "count the biases"),
        (lambda d: d * 128 + 128, "count the second layer too"),
    ]),
    "ex-concepts-bag-of-words": (_bag, [
        (lambda ids, v: torch.zeros(ids.shape[0], v).scatter_add_(1, ids, torch.ones(ids.shape)), "padding .* must not"),
        (lambda ids, v: (_bag(ids, v) > 0).float(), "count every occurrence"),
    ]),
    "ex-cnn-receptive-field": ((11, 43), [((10, 42), "start from r_0 = 1"), ((11, 17), "product of the earlier strides")]),
    "ex-cnn-pool-shapes": ((7, 3), [((8, 4), "fit in no whole 2x2 window"), ((7, 5), "moves its window by its stride"),
                                    ((14, 3), "pooling divides the side by its stride"),
                                    ((7, 7), "works on the first one's output")]),
    "ex-cnn-lenet-params": ((62006, 324600), [((61770, 324600), "count the biases too"),
                                              ((62006, 491640), "shrink the map by 4 pixels")]),
    "ex-cnn-flops": ("block1", [("block3", "compare the parts' costs"), ("head", "compare the parts' costs")]),
    "ex-cnn-tta": ((2, 6), [((1, 6), "TTA adds the mirror image"), ((2, 4), "each shifted copy is also mirrored")]),
    "ex-text-left-padding": (_left_pad, [(lambda ids, lengths: ids.flip(1), "do not reverse them"),
                                         (lambda ids, lengths: ids, "the padding should come first")]),
    "ex-text-relu-rnn": (lambda x, h, wi, wh, bi, bh: torch.relu(x @ wi.T + bi + h @ wh.T + bh), [
        (lambda x, h, wi, wh, bi, bh: torch.tanh(x @ wi.T + bi + h @ wh.T + bh), "not tanh"),
        (lambda x, h, wi, wh, bi, bh: torch.relu(x @ wi.T + bi + h @ wh.T), "add both biases"),
    ]),
    "ex-text-gru-cell": (_paper_gru, [
        (lambda *args: _paper_gru(*args, torch_form=True), "that is PyTorch's form"),
        (lambda x, h, *w: h, "differs from the reference"),
    ]),
    "ex-text-causal": (lambda t: torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1), [
        (lambda t: torch.tril(torch.ones(t, t, dtype=torch.bool)), "True marks the \\*blocked\\* positions"),
        (lambda t: torch.triu(torch.ones(t, t, dtype=torch.bool)), "a token may attend to itself"),
    ]),
    "ex-text-reverse": (_reverse, [(lambda tokens, lengths: tokens.flip(1), "the padding must stay at the end"),
                                   (lambda tokens, lengths: tokens, "nothing was reversed")]),
    "ex-fusion-concat-cost": (lambda m, d: m * d * 128 + 128 + 128 * 10 + 10, [
        (lambda m, d: m * d * 128 + 128 * 10, "count the biases"),
        (lambda m, d: d * 128 + 128 + 128 * 10 + 10, "M \\* D"),
    ]),
    "ex-fusion-accuracy-per-parameter": (_pareto, [
        (lambda runs: _pareto(runs, bigger_is_better=True), "smaller is better for parameters"),
        (lambda runs: list(runs), "leave out every method"),
    ]),
    "ex-fusion-weights-layernorm": (False, [(True, "what that step does to an input multiplied by a constant"),
                                            ("maybe", "choose one of True, False")]),
    "ex-fusion-word-dropout": (_drop_words, [
        (lambda tokens, level: torch.where(torch.rand(tokens.shape) < level, torch.ones_like(tokens), tokens),
         "padding was changed"),
        (lambda tokens, level: _drop_words(tokens, level, whole=True), "decide for each \\*word\\* separately"),
    ]),
    "ex-fusion-ogm": (_ogm, [(lambda mine, other: 1 - math.tanh(mine / other - 1), "only the dominant branch"),
                             (lambda mine, other: math.tanh(mine / other - 1) if mine > other else 1.0,
                              "the factor is 1 - tanh")]),
    "ex-obj-ece-blind-spot": (abs(3 / 6 - 4.42 / 6), [(0.5, "that is the accuracy"),
                                                      (4.42 / 6, "that is the mean confidence")]),
    "ex-obj-nms": (_greedy_nms, [
        (lambda *args: _greedy_nms(*args, keep_order=False), "in the wrong order"),
        (lambda *args: _greedy_nms(*args, compare_all=True), "drop every remaining box whose IoU with it"),
    ]),
    "ex-obj-shuffled-expressions": (SHUFFLED_EXPRESSION_CHOICES[1], [
        (SHUFFLED_EXPRESSION_CHOICES[0], "what it can no longer use"),
        (SHUFFLED_EXPRESSION_CHOICES[2], "what it can no longer use"),
        ("about 50%", "choose one of"),
    ]),
    "ex-align-confusion": (_confusion, [
        (lambda labels, predicted, classes: _confusion(labels, predicted, classes).T, "rows are the true classes"),
        (lambda labels, predicted, classes: (_confusion(labels, predicted, classes) > 0).long(), "count every"),
    ]),
    "ex-align-cone": (CONE_CHOICES[0], [(CONE_CHOICES[1], "how this experiment was set up"),
                                        (CONE_CHOICES[2], "how this experiment was set up")]),
    "ex-worked-concat-cost": (lambda sizes: sum(sizes) * 128 + 128 + 1290, [
        (lambda sizes: sum(sizes) * 128 + 1280, "count the biases"),
        (lambda sizes: sizes[0] * 128 + 128 + 1290, "sum\\(sizes\\) inputs"),
    ]),
    "ex-frontiers-image-occlusion": (7, [(8, "the patch must fit inside the image"), (6, "count the first position")]),
    "ex-own-majority": (_majority, [
        (lambda train, test: _majority(train, test, peek=True), "most common label of the \\*training\\* labels"),
        (lambda train, test: _majority(train, test, score_on_train=True), "score the constant answer on the test"),
    ]),
    "ex-appendix-fastest": (_fastest, [
        (lambda records, threshold: _fastest(records, 1e-9), "keep only the runs that reach the threshold"),
        (lambda records, threshold: _fastest(records, threshold, key="test_accuracy"), "accuracy with TTA"),
        (lambda records, threshold: _fastest(records, threshold).recipe, "return the record itself"),
    ]),
    "ex-scaling-ghost-bn": (_ghost, [
        (lambda *args: _ghost(*args, split=False), "whole-batch gradient"),
        (lambda *args: _ghost(*args, mean=False), "average the slices' gradients"),
    ]),
}


def test_every_new_checker_has_a_case():
    assert set(CASES) <= set(exercises.CHECKERS)


@pytest.mark.parametrize("label", sorted(CASES))
def test_checker_passes_the_reference(label, capsys):
    reference, _ = CASES[label]
    check(label, reference)
    assert capsys.readouterr().out.strip().endswith(passed_line(label))


@pytest.mark.parametrize("label, index", [(label, i) for label in sorted(CASES) for i in range(len(CASES[label][1]))])
def test_checker_rejects_a_typical_mistake(label, index):
    wrong, message = CASES[label][1][index]
    with pytest.raises(ExerciseError, match=message):
        check(label, wrong)


@pytest.mark.parametrize("label", sorted(CASES))
def test_checker_says_not_done_for_the_starter(label):
    with pytest.raises(ExerciseNotDone, match=label):
        check(label, ...)


def test_existing_checkers_are_wrapped():
    def my_conv2d(images, weight, bias, stride, padding):
        return F.conv2d(images, weight, bias, stride=stride, padding=padding)

    check("ex-cnn-conv2d", my_conv2d)
    with pytest.raises(ExerciseError, match=r"(?s)^ex-cnn-conv2d: values differ from F.conv2d.*the bias is missing"):
        check("ex-cnn-conv2d", lambda images, weight, bias, stride, padding: my_conv2d(images, weight, None, stride, padding))
    with pytest.raises(ExerciseNotDone):
        check("ex-cnn-conv2d", lambda images, weight, bias, stride, padding: todo("ex-cnn-conv2d"))


def test_check_parts_counts_the_parts_that_are_right():
    def right() -> None:
        pass

    def wrong(what: str):
        def part() -> None:
            raise exercises.ExerciseError(f"{what} is too large")
        return part

    with pytest.raises(exercises.PartlyRight) as caught:
        exercises.check_parts(right, wrong("the second"), right)
    assert (caught.value.passed, caught.value.total) == (2, 3)
    assert str(caught.value) == "the second is too large (the other parts are right)"
    with pytest.raises(exercises.PartlyRight, match=r"^the first is too large \(some parts are right\)$"):
        exercises.check_parts(wrong("the first"), right, wrong("the third"))
    with pytest.raises(exercises.PartlyRight) as caught:
        exercises.check_parts(wrong("the first"), wrong("the second"))
    assert caught.value.passed == 0 and str(caught.value) == "the first is too large"
    exercises.check_parts(right, right)  # all right: no exception

    def unfinished() -> None:
        raise exercises.ExerciseNotDone("ex-x")

    with pytest.raises(exercises.ExerciseNotDone):
        exercises.check_parts(wrong("the first"), unfinished)


def test_a_two_part_checker_reports_which_share_is_right():
    first = torch.nn.MaxPool2d(2)(torch.zeros(1, 1, 15, 15)).shape[-1]
    with pytest.raises(exercises.PartlyRight) as caught:
        exercises.check("ex-cnn-pool-shapes", (first, 100))
    assert (caught.value.passed, caught.value.total) == (1, 2)
    assert str(caught.value).startswith("ex-cnn-pool-shapes: the size after the second pooling")
    assert "(the other parts are right)" in str(caught.value)
    assert isinstance(caught.value, exercises.ExerciseError)  # what a student's notebook shows
