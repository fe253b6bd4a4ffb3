"""The instructor's graded checks (instructor/graded_checks.py): the shortcuts each exercise forbids
pass the formative check but fail the graded one, with a message that names what is forbidden;
correct answers pass both; the bundle sets a course seed; the judge uses them on pickled answers."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F
from torch.nn.functional import conv2d as aliased_conv2d

from mmbook import exercises
from test_checker_messages import MyGMU  # a correct GMU, the reference answer the message tests use
from mmbook.course import bundle
from mmbook.course.shortcuts import Watch, forbidden_references, resolve

ROOT = Path(__file__).resolve().parents[1]
GRADED = ROOT / "instructor" / "graded_checks.py"


@pytest.fixture
def graded():
    """The graded checks registered (as the judge does), and the package's formative ones afterwards."""
    saved = dict(exercises.CHECKERS)
    formative = {label: exercises.checker_for(label) for label in saved}
    runpy.run_path(str(GRADED), run_name="mmbook_instructor_checks")
    yield formative
    exercises.CHECKERS.clear()
    exercises.CHECKERS.update(saved)


def verdict(label: str, answer) -> str:
    try:
        exercises.check(label, answer)
    except exercises.ExerciseError as error:
        return f"fail: {error}"
    return "pass"


# --- answers ------------------------------------------------------------------------------------------

def conv_with_functional(x, w, b, s, p):
    return F.conv2d(x, w, b, stride=s, padding=p)


def conv_with_alias(x, w, b, s, p):
    return aliased_conv2d(x, w, b, stride=s, padding=p)


def conv_with_module(x, w, b, s, p):
    layer = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), stride=s, padding=p, bias=b is not None)
    with torch.no_grad():
        layer.weight.copy_(w)
        if b is not None:
            layer.bias.copy_(b)
    return layer(x)


def conv_with_unfold(x, w, b, s, p):
    s = s if isinstance(s, tuple) else (s, s)
    p = p if isinstance(p, tuple) else (p, p)
    batch, _, height, width = x.shape
    out_channels, _, k_h, k_w = w.shape
    columns = F.unfold(x, (k_h, k_w), padding=p, stride=s)
    out = (w.reshape(out_channels, -1) @ columns).reshape(
        batch, out_channels, (height + 2 * p[0] - k_h) // s[0] + 1, (width + 2 * p[1] - k_w) // s[1] + 1)
    return out if b is None else out + b.view(1, -1, 1, 1)


def iou_from_torchvision(a, b):
    return torchvision.ops.box_iou(a, b)


def iou_by_broadcasting(a, b):
    def area(boxes):
        return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    top_left = torch.max(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    return inter / (area(a)[:, None] + area(b)[None] - inter)


def nms_from_torchvision(boxes, scores, threshold):
    return torchvision.ops.nms(boxes, scores, threshold)


def nms_in_a_loop(boxes, scores, threshold):
    order, keep = scores.argsort(descending=True).tolist(), []
    while order:
        best = order.pop(0)
        keep.append(best)
        order = [j for j in order if torchvision.ops.box_iou(boxes[best:best + 1], boxes[j:j + 1]).item() <= threshold]
    return keep


def info_nce_from_the_book(image, text, temperature):
    from mmbook.alignment import info_nce
    return info_nce(image, text, temperature)


def info_nce_by_hand(image, text, temperature):
    logits = image @ text.T / temperature
    targets = torch.arange(len(image))
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


class ConcatNoGate(nn.Module):
    def __init__(self, in_features, hidden=32):
        super().__init__()
        self.layer = nn.Linear(sum(in_features), hidden)
        self.out_features = hidden

    def forward(self, features):
        return self.layer(torch.cat(features, dim=1))


def book_gmu():
    from mmbook.fusion.weighted import GatedMultimodalUnit

    class Renamed(GatedMultimodalUnit):
        pass
    return Renamed


def lstm_with_module(x, state, weight_ih, weight_hh, bias_ih, bias_hh):
    cell = nn.LSTMCell(x.shape[1], state[0].shape[1])
    with torch.no_grad():
        for parameter, value in zip(cell.parameters(), (weight_ih, weight_hh, bias_ih, bias_hh)):
            parameter.copy_(value)
    return cell(x, state)


def lstm_by_hand(x, state, weight_ih, weight_hh, bias_ih, bias_hh):
    h, c = state
    i, f, g, o = (x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh).chunk(4, dim=1)
    c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_next), c_next


def attention_by_hand(q, k, v, key_padding_mask=None):
    scores = q @ k.transpose(1, 2) / q.shape[-1] ** 0.5
    if key_padding_mask is not None:
        scores = scores.masked_fill(key_padding_mask[:, None, :], float("-inf"))
    weights = scores.softmax(dim=-1)
    return weights @ v, weights


def attention_with_pytorch(q, k, v, key_padding_mask=None):
    _, weights = attention_by_hand(q, k, v, key_padding_mask)
    mask = None if key_padding_mask is None else ~key_padding_mask[:, None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), weights


def recall_from_the_book(similarity, relevant, k):
    from mmbook.alignment import recall_at_k
    return recall_at_k(similarity, relevant, k)


def recall_by_hand(similarity, relevant, k):
    top = similarity.topk(k, dim=1).indices
    return relevant.gather(1, top).any(dim=1).float().mean().item()


SHORTCUTS = [
    ("ex-text-lstm-cell", lstm_with_module, "torch.nn.LSTMCell"),
    ("ex-text-attention", attention_with_pytorch, "scaled_dot_product_attention"),
    ("ex-align-recall", recall_from_the_book, "recall_at_k (the book's reference)"),
    ("ex-cnn-conv2d", conv_with_functional, "torch.nn.functional.conv2d"),
    ("ex-cnn-conv2d", conv_with_alias, "torch.nn.functional.conv2d"),
    ("ex-cnn-conv2d", conv_with_module, "torch.nn."),
    ("ex-obj-iou", iou_from_torchvision, "box_iou (torchvision's IoU)"),
    ("ex-obj-nms", nms_from_torchvision, "nms (torchvision's NMS)"),
    ("ex-align-info-nce", info_nce_from_the_book, "info_nce (the book's reference)"),
]


@pytest.mark.parametrize("label, answer, named", SHORTCUTS, ids=[f"{s[0]}-{s[1].__name__}" for s in SHORTCUTS])
def test_forbidden_shortcuts_pass_formative_and_fail_graded(graded, label, answer, named, capsys):
    graded[label](answer)  # the formative check lets it through: the reason for graded checks
    result = verdict(label, answer)
    assert result.startswith("fail") and "forbids" in result and named in result, result


@pytest.mark.parametrize("label, answer", [("ex-cnn-conv2d", conv_with_unfold), ("ex-obj-iou", iou_by_broadcasting),
                                           ("ex-obj-nms", nms_in_a_loop), ("ex-align-info-nce", info_nce_by_hand),
                                           ("ex-text-lstm-cell", lstm_by_hand), ("ex-text-attention", attention_by_hand),
                                           ("ex-align-recall", recall_by_hand)])
def test_correct_answers_pass_graded(graded, label, answer, capsys):
    assert verdict(label, answer) == "pass"


def test_gmu_without_a_gate_fails_and_a_gmu_passes(graded, capsys):
    graded["ex-fusion-gmu"](ConcatNoGate)  # formative: it fuses and learns the task
    result = verdict("ex-fusion-gmu", ConcatNoGate)
    assert result.startswith("fail") and "sigmoid" in result, result
    assert verdict("ex-fusion-gmu", MyGMU) == "pass"
    result = verdict("ex-fusion-gmu", book_gmu())
    assert "forbids" in result and "GatedMultimodalUnit" in result, result


def test_further_cases_catch_what_the_formative_cases_miss(graded, capsys):
    # An answer fitted to the formative cases: right on their image shapes, zeros of the right shape otherwise.
    from mmbook.cnn import _CONV2D_CASES
    known = {(case[0], case[1], case[2], case[3]) for case in _CONV2D_CASES}

    def fitted(x, w, b, s, p):
        right = conv_with_unfold(x, w, b, s, p)
        return right if tuple(x.shape) in known else torch.zeros_like(right)
    graded["ex-cnn-conv2d"](fitted)
    result = verdict("ex-cnn-conv2d", fitted)
    assert result.startswith("fail") and "further graded case" in result, result


def test_shortcut_finder_reads_helpers_and_closures():
    forbidden = {"torch.nn.functional.conv2d": resolve("torch.nn.functional.conv2d")}

    def helper(x, w):
        return aliased_conv2d(x, w)

    def answer(x, w, b, s, p):
        return helper(x, w)
    assert forbidden_references(answer, forbidden) == ["torch.nn.functional.conv2d"]
    assert forbidden_references(conv_with_unfold, forbidden) == []
    assert resolve("torch.no_such_thing") is None and resolve("no_such_module.x") is None
    watch = Watch(forbidden)
    watched = watch.wrap(conv_with_functional)
    F.conv2d(torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 1, 1))  # outside the answer: not counted
    assert watch.used == []
    watched(torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 1, 1), None, 1, 0)
    assert watch.used == ["torch.nn.functional.conv2d"] and F.conv2d is forbidden["torch.nn.functional.conv2d"]
    # A method is watched on its class, and put back (or removed, where the class inherits it) afterwards.
    methods = Watch({"torch.Tensor.sigmoid": resolve("torch.Tensor.sigmoid"),
                     "torch.nn.Sigmoid.forward": resolve("torch.nn.Sigmoid.forward")})
    with methods:
        torch.zeros(2).sigmoid()
    assert methods.used == ["torch.Tensor.sigmoid"]
    assert "sigmoid" not in vars(torch.Tensor) and nn.Sigmoid.forward is resolve("torch.nn.Sigmoid.forward")


def test_bundle_sets_a_course_seed(tmp_path):
    written = bundle.build(ROOT / "instructor", tmp_path / "bundle", seed=1234)
    text = written[0].read_text()
    assert "COURSE_SEED = 1234" in text and "COURSE_SEED = 0" not in text
    assert "keep private" in written[1].read_text().lower()
    other = bundle.build(ROOT / "instructor", tmp_path / "other")[0].read_text()
    assert "COURSE_SEED = 1234" not in other
    # The answer key and the rubrics come from the book: every solution, by exercise.
    names = {path.name for path in written}
    assert {"answer-key.md", "rubrics.md", "answer-key.html"} <= names
    key = (tmp_path / "bundle" / "answer-key.md").read_text()
    rubrics = (tmp_path / "bundle" / "rubrics.md").read_text()
    assert "### Your own conv2d, checked (ex-cnn-conv2d)" in key and "Autograded" in key
    assert "(ex-cnn-conv2d)" not in rubrics  # autograded: no rubric
    assert "(ex-cnn-pool-gradient)" in rubrics and "**Solution.**" in rubrics
    assert "```{" not in key and ":label:" not in key  # directive fences and options are left out
    assert "% Solution" not in key and "# Solution\n" not in key  # nor the line JupyterLab shows of a folded cell
    assert "<h3>" in (tmp_path / "bundle" / "answer-key.html").read_text()
    # An otter-grader master notebook per book notebook with exercises, beside the seeded graded checks.
    masters = [path for path in written if path.suffix == ".ipynb"]
    assert tmp_path / "bundle" / "otter" / "ch03_cnn" / "01_convolution" / "01_convolution.ipynb" in masters
    assert "COURSE_SEED = 1234" in (masters[0].parent / "graded_checks.py").read_text()
    with pytest.raises(FileNotFoundError, match="instructor/ folder"):
        bundle.build(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "graded_checks.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="COURSE_SEED"):
        bundle.build(tmp_path / "broken", tmp_path / "out")


def test_judge_uses_graded_checks_on_a_pickled_answer(tmp_path):
    cloudpickle = pytest.importorskip("cloudpickle")
    # Defined as in a notebook (module __main__), so cloudpickle carries it by value, as the grader does.
    namespace = {"__name__": "__main__"}
    exec("from torch.nn.functional import conv2d as c\n\n"
         "def my_conv2d(x, w, b, s, p):\n    return c(x, w, b, stride=s, padding=p)\n", namespace)
    answer_file = tmp_path / "ex-cnn-conv2d.0.pkl"
    answer_file.write_bytes(cloudpickle.dumps(((namespace["my_conv2d"],), {})))
    command = [sys.executable, "-m", "mmbook.course.judge", "ex-cnn-conv2d", str(answer_file)]
    package = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
    strict = json.loads(subprocess.run(command + ["--checks", str(GRADED)], capture_output=True, text=True,
                                       check=True).stdout.splitlines()[-1])
    assert package["status"] == "pass"
    assert strict["status"] == "fail" and "forbids" in strict["detail"], strict


def test_judge_gives_credit_for_the_right_parts(tmp_path):
    cloudpickle = pytest.importorskip("cloudpickle")
    first = torch.nn.MaxPool2d(2)(torch.zeros(1, 1, 15, 15)).shape[-1]
    answer_file = tmp_path / "ex-cnn-pool-shapes.0.pkl"
    answer_file.write_bytes(cloudpickle.dumps((((first, 100),), {})))
    command = [sys.executable, "-m", "mmbook.course.judge", "ex-cnn-pool-shapes", str(answer_file)]
    verdict = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
    assert verdict["status"] == "fail" and verdict["credit"] == 0.5
    assert verdict["detail"].startswith("the size after the second pooling") and "other parts are right" in verdict["detail"]
