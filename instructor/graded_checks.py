"""The graded checks: stricter than the checks in the students' notebooks, and not shipped with them.

``mmbook grade --checks graded_checks.py`` runs this file in each fresh judging process; it
registers, for some exercises, a graded check in place of the formative one the package
ships (the others keep theirs). A graded check

- fails an answer that uses what its exercise forbids (``F.conv2d`` in "write your own
  conv2d", ``torchvision.ops`` in IoU and NMS, PyTorch's LSTM cell and attention, ``mmbook``'s own
  InfoNCE and recall@K, a GMU without its gate),
  with a message that names the forbidden routine (:mod:`mmbook.course.shortcuts`);
- runs the formative check, then further cases drawn from :data:`COURSE_SEED`, which
  ``make instructor`` sets to a random number in the bundle it writes, so the cases a course
  is graded on are known only to its instructor.

Keep the bundle (``_build/instructor/``) out of what students can see.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from mmbook.course.shortcuts import Watch, forbid, resolve
from mmbook.exercises import checker_for, reader_call, register

#: The seed of the extra cases; ``make instructor`` writes a random one into the bundle.
COURSE_SEED = 0


def _generator(label: str) -> torch.Generator:
    return torch.Generator().manual_seed(COURSE_SEED * 1000 + sum(map(ord, label)))


def _further(label: str, name: str, got, expected, atol: float = 1e-4) -> None:
    """Fail, without giving the expected value, when ``got`` is not ``expected``."""
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(expected.shape):
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        raise AssertionError(f"a further graded case failed ({name}): the result has the wrong type or shape "
                             f"({shape})")
    if not torch.allclose(got.double(), expected.double(), atol=atol, rtol=1e-4):
        raise AssertionError(f"a further graded case failed ({name}): the values are wrong")


# --- ex-cnn-conv2d ---------------------------------------------------------------------------------

def _conv2d_cases(conv2d) -> None:
    generator = _generator("ex-cnn-conv2d")
    for _ in range(6):
        c_in, c_out = (int(v) for v in torch.randint(1, 5, (2,), generator=generator))
        k_h, k_w = (int(v) for v in torch.randint(1, 4, (2,), generator=generator))
        height, width = int(torch.randint(k_h + 2, 12, (1,), generator=generator)), \
            int(torch.randint(k_w + 2, 12, (1,), generator=generator))
        stride = tuple(int(v) for v in torch.randint(1, 3, (2,), generator=generator))
        padding = tuple(int(v) for v in torch.randint(0, 3, (2,), generator=generator))
        images = torch.randn(2, c_in, height, width, generator=generator)
        weight = torch.randn(c_out, c_in, k_h, k_w, generator=generator)
        bias = torch.randn(c_out, generator=generator)
        name = f"images {tuple(images.shape)}, weight {tuple(weight.shape)}, stride={stride}, padding={padding}"
        expected = F.conv2d(images, weight, bias, stride=stride, padding=padding)
        _further("ex-cnn-conv2d", name, reader_call(conv2d, name, images.clone(), weight.clone(), bias.clone(),
                                                    stride, padding), expected)


def graded_conv2d(conv2d) -> None:
    formative["ex-cnn-conv2d"](conv2d)
    _conv2d_cases(conv2d)


# --- ex-obj-iou and ex-obj-nms -------------------------------------------------------------------------

def _random_boxes(generator: torch.Generator, n: int) -> torch.Tensor:
    corners = torch.rand(n, 2, generator=generator) * 40
    return torch.cat([corners, corners + torch.rand(n, 2, generator=generator) * 25 + 0.5], dim=1)


def graded_iou(pairwise_iou) -> None:
    from torchvision.ops import box_iou

    formative["ex-obj-iou"](pairwise_iou)
    generator = _generator("ex-obj-iou")
    for n, m in ((7, 3), (1, 9), (12, 12)):
        a, b = _random_boxes(generator, n), _random_boxes(generator, m)
        name = f"{n} and {m} random boxes"
        _further("ex-obj-iou", name, reader_call(pairwise_iou, name, a.clone(), b.clone()), box_iou(a, b), atol=1e-5)


def graded_nms(greedy_nms) -> None:
    from torchvision.ops import nms

    formative["ex-obj-nms"](greedy_nms)
    generator = _generator("ex-obj-nms")
    for n in (5, 40, 120):
        boxes = _random_boxes(generator, n)
        scores = torch.randperm(n, generator=generator).float() / n  # distinct scores: one right order
        threshold = float(torch.rand((), generator=generator) * 0.6 + 0.2)
        name = f"{n} random boxes, threshold {threshold:.2f}"
        got = reader_call(greedy_nms, name, boxes.clone(), scores.clone(), threshold)
        try:
            got = torch.as_tensor(got).long().flatten()
        except (TypeError, ValueError, RuntimeError):
            raise AssertionError(f"a further graded case failed ({name}): return the kept indices") from None
        if not torch.equal(got, nms(boxes, scores, threshold)):
            raise AssertionError(f"a further graded case failed ({name}): not the boxes greedy NMS keeps, "
                                 "or not best first")


# --- ex-align-info-nce ---------------------------------------------------------------------------------

def graded_info_nce(info_nce) -> None:
    from mmbook.alignment import info_nce as reference

    formative["ex-align-info-nce"](info_nce)
    generator = _generator("ex-align-info-nce")
    for _ in range(4):
        batch, dim = int(torch.randint(2, 24, (1,), generator=generator)), int(torch.randint(4, 40, (1,),
                                                                                               generator=generator))
        temperature = float(torch.rand((), generator=generator) * 0.9 + 0.05)
        image = F.normalize(torch.randn(batch, dim, generator=generator), dim=-1)
        text = F.normalize(image + torch.randn(batch, dim, generator=generator), dim=-1)
        name = f"B={batch}, d={dim}, temperature={temperature:.3f}"
        got = reader_call(info_nce, name, image.clone(), text.clone(), temperature)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.reshape(())
        _further("ex-align-info-nce", name, got, reference(image, text, temperature), atol=1e-4)


# --- ex-fusion-gmu ---------------------------------------------------------------------------------------

SIGMOIDS = ("torch.sigmoid", "torch.nn.functional.sigmoid", "torch.special.expit", "torch.Tensor.sigmoid",
            "torch.nn.Sigmoid.forward")


def graded_gmu(gmu_class) -> None:
    """The formative check, and then that the module is a GMU: a sigmoid gate that mixes two tanh branches."""
    formative["ex-fusion-gmu"](gmu_class)
    torch.manual_seed(COURSE_SEED)
    module = gmu_class([6, 4]).eval()
    generator = _generator("ex-fusion-gmu")
    inputs = [torch.randn(16, 6, generator=generator) * 1000, torch.randn(16, 4, generator=generator) * 1000]
    calls = Watch({name: resolve(name) for name in SIGMOIDS})
    with torch.no_grad(), calls:
        big = module(inputs)
    if not calls.used:
        raise AssertionError("the forward pass computes no sigmoid: a GMU's gate z = sigmoid(W_z [x_v; x_t]) "
                             "decides, per unit, how much of each modality to keep")
    if big.abs().max() > 1 + 1e-4:
        raise AssertionError("for large inputs the output leaves [-1, 1]: a GMU's output is z * h_v + (1 - z) * h_t, "
                             "a mix of two tanh branches, so it cannot")
    a, b = [torch.randn(8, 6, generator=generator)] * 2, [torch.randn(8, 4, generator=generator)] * 2
    a[1], b[1] = torch.randn(8, 6, generator=generator), torch.randn(8, 4, generator=generator)
    with torch.no_grad():
        interaction = module([a[0], b[0]]) - module([a[1], b[0]]) - module([a[0], b[1]]) + module([a[1], b[1]])
    if interaction.abs().max() < 1e-6:
        raise AssertionError("the output is a sum of one part per modality: a GMU's gate multiplies them "
                             "(z depends on both modalities and weighs each branch)")


# --- registration ----------------------------------------------------------------------------------------

formative = {label: checker_for(label) for label in
             ("ex-cnn-conv2d", "ex-obj-iou", "ex-obj-nms", "ex-align-info-nce", "ex-fusion-gmu", "ex-text-lstm-cell",
              "ex-text-attention", "ex-align-recall")}

CONV = {"torch.nn.functional.conv2d": "PyTorch's convolution", "torch.convolution": "PyTorch's convolution",
        "torch._convolution": "PyTorch's convolution", "torch.nn.functional.conv_transpose2d": "PyTorch's convolution",
        "torch.nn.Conv2d": "PyTorch's convolution layer"}
register("ex-cnn-conv2d", forbid(graded_conv2d, CONV, "Write the convolution with loops or unfold."))
register("ex-obj-iou", forbid(graded_iou, {"torchvision.ops.box_iou": "torchvision's IoU",
                                           "torchvision.ops.boxes.box_iou": "torchvision's IoU",
                                           "torchvision.ops.generalized_box_iou": "torchvision's IoU"},
                              "Compute the intersections and unions with broadcasting."))
register("ex-obj-nms", forbid(graded_nms, {"torchvision.ops.nms": "torchvision's NMS",
                                           "torchvision.ops.batched_nms": "torchvision's NMS",
                                           "torchvision.ops.boxes.nms": "torchvision's NMS"},
                              "Keep boxes in a loop, using only box_iou."))
register("ex-align-info-nce", forbid(graded_info_nce, {
    "mmbook.alignment.info_nce": "the book's reference", "mmbook.alignment.info_nce_loop": "the book's reference",
    "mmbook.alignment.losses.info_nce": "the book's reference"},
    "Write the loss from the similarity matrix and cross-entropy."))
register("ex-text-lstm-cell", forbid(formative["ex-text-lstm-cell"], {
    "torch.nn.LSTMCell": "PyTorch's LSTM cell", "torch.nn.LSTMCell.forward": "PyTorch's LSTM cell",
    "torch.nn.LSTM": "PyTorch's LSTM", "torch.nn.LSTM.forward": "PyTorch's LSTM",
    "torch.lstm_cell": "PyTorch's LSTM cell", "torch.lstm": "PyTorch's LSTM"},
    "Write the four gates with matrix products, sigmoid and tanh."))
register("ex-text-attention", forbid(formative["ex-text-attention"], {
    "torch.nn.functional.scaled_dot_product_attention": "PyTorch's attention",
    "torch.nn.functional.multi_head_attention_forward": "PyTorch's attention",
    "torch.nn.MultiheadAttention": "PyTorch's attention", "torch.nn.MultiheadAttention.forward": "PyTorch's attention"},
    "Compute the scores, the mask and the softmax yourself."))
register("ex-align-recall", forbid(formative["ex-align-recall"], {
    "mmbook.alignment.recall_at_k": "the book's reference", "mmbook.alignment.retrieval.recall_at_k": "the book's reference"},
    "Rank the gallery yourself (topk or argsort)."))
register("ex-fusion-gmu", forbid(graded_gmu, {
    "mmbook.fusion.weighted.GatedMultimodalUnit": "the book's GMU", "mmbook.fusion.build_fusion": "the book's GMU"},
    "Write the GMU's layers and its gate yourself."))
