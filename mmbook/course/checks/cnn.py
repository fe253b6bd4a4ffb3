"""Checkers for the exercises of ch03, image features with CNNs (``ex-cnn-*``; ``ex-cnn-conv2d`` is
:func:`mmbook.cnn.check_conv2d`)."""

from __future__ import annotations

from typing import Any

from mmbook.exercises import _fail, check_choice, check_parts, check_value


def check_receptive_fields(answer: Any) -> None:
    """ex-cnn-receptive-field: ``(five 3x3 convolutions, ResNet's start)`` receptive fields in pixels."""
    def field(layers: list[tuple[int, int]], start: int = 1, jumps: bool = True, own_stride: bool = False) -> int:
        jump = 1
        for kernel, stride in layers:
            if own_stride:
                jump *= stride
            start += (kernel - 1) * (jump if jumps else 1)
            if not own_stride:
                jump *= stride
        return start

    five, resnet = [(3, 1)] * 5, [(7, 2), (3, 2)] + [(3, 1)] * 4
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        _fail(f"give two numbers, (five 3x3 convolutions, ResNet's start), got {answer!r:.60}", None)
    from_zero = "start from r_0 = 1: one output sees one pixel before any layer"

    def first_part() -> None:
        check_value(answer[0], field(five), tol=0.5, name="the field of five 3x3 convolutions",
                    hint="each convolution with stride 1 widens the field by its kernel size minus one",
                    wrong={field(five, start=0): from_zero,
                           1 + 3 * 5: "a layer widens the field by k - 1, not by k: neighbouring windows share k - 1 pixels",
                           3 * 5: "the windows overlap: a layer widens the field by k - 1 pixels, not by k"})

    def second_part() -> None:
        check_value(answer[1], field(resnet), tol=0.5, name="the field of ResNet's start",
                    hint="each layer adds (k - 1) times the product of the strides of the layers before it (the jump); "
                         "the max-pool counts as a layer",
                    wrong={field(resnet, jumps=False): "each layer adds (k - 1) times the product of the earlier strides",
                           field(resnet, start=0): from_zero,
                           field(resnet, own_stride=True): "a layer's own stride does not count: multiply the strides of "
                                                           "the layers before it",
                           field([(7, 2)] + [(3, 1)] * 4): "the max-pool is a layer too: its window widens the field and "
                                                           "its stride multiplies the jump"})

    check_parts(first_part, second_part)  # each part earns its share of the points


def check_pool_sizes(answer: Any) -> None:
    """ex-cnn-pool-shapes: spatial sizes ``(after MaxPool2d(2), after MaxPool2d(3, stride=2))`` of a 15x15 map."""
    import torch
    from torch import nn

    x = torch.zeros(1, 1, 15, 15)
    first = nn.MaxPool2d(2)(x)
    second = nn.MaxPool2d(3, stride=2)(first)
    ceil_first = nn.MaxPool2d(2, ceil_mode=True)(x)
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        _fail(f"give two sizes, (after the first pooling, after the second), got {answer!r:.60}", None)
    side = "a side becomes floor((side - kernel) / stride) + 1: count the whole windows that fit"

    def first_part() -> None:
        check_value(answer[0], first.shape[-1], tol=0.5, name="the size after the first pooling", hint=side,
                    wrong={ceil_first.shape[-1]: "the last row and column fit in no whole 2x2 window: without ceil_mode "
                                                 "the partial window is dropped (round down)",
                           15 - 2 + 1: "MaxPool2d(2) also has stride 2 (the stride defaults to the kernel size): "
                                       "pooling divides the side by its stride",
                           15: "pooling shrinks the map: it divides the side by its stride"})

    def second_part() -> None:
        check_value(answer[1], second.shape[-1], tol=0.5, name="the size after the second pooling", hint=side,
                    wrong={first.shape[-1] - 3 + 1: "the second pooling moves its window by its stride, not by one pixel",
                           nn.MaxPool2d(3, stride=2)(x).shape[-1]: "the second pooling works on the first one's output, "
                                                                   "not on the original map"})

    check_parts(first_part, second_part)  # each part earns its share of the points


def check_lenet_parameters(answer: Any) -> None:
    """ex-cnn-lenet-params: ``(LeNet's parameters, fc1's parameters for 64x64 inputs)``."""
    import torch

    from mmbook.cnn import LeNet, count_parameters

    lenet = LeNet()
    with torch.no_grad():
        before_last_pool = lenet.conv2(lenet.pool(lenet.conv1(torch.zeros(1, 3, 64, 64))))
        x = lenet.pool(before_last_pool)
    flat = x[0].numel()
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        _fail(f"give two numbers, (LeNet's total, fc1 for 64x64 inputs), got {answer!r:.60}", None)
    total = count_parameters(lenet)
    named = dict(lenet.named_parameters())
    weights_only = sum(p.numel() for name, p in named.items() if name.endswith("weight"))
    conv_biases = sum(p.numel() for name, p in named.items() if name.startswith("conv") and name.endswith("bias"))
    linear_biases = sum(p.numel() for name, p in named.items() if name.startswith("fc") and name.endswith("bias"))
    grey_conv1 = named["conv1.weight"].numel() // named["conv1.weight"].shape[1]

    def first_part() -> None:
        check_value(answer[0], total, tol=0.5, name="LeNet's parameter count",
                    hint="add up every layer: a convolution has out * in * k * k weights, a linear layer out * in, "
                         "and each has one bias per output channel or unit",
                    wrong={weights_only: "count the biases too, one per output channel or unit",
                           total - conv_biases: "the convolutions' parameter count is off: did you count their biases "
                                                "(one per output channel)?",
                           total - linear_biases: "the linear layers' parameter count is off: did you count their biases "
                                                  "(one per output unit)?",
                           total - named["conv1.weight"].numel() + grey_conv1:
                               "the first convolution's parameter count is off: its input has 3 colour channels"})

    def second_part() -> None:
        check_value(answer[1], flat * 120 + 120, tol=0.5, name="fc1's parameters for 64x64 inputs",
                    hint="fc1 has 120 units, each with one weight per value of the flattened last feature map "
                         "(16 channels) and one bias; follow the map's side through conv, pool, conv, pool",
                    wrong={flat * 120: "add fc1's 120 biases",
                           16 * 16 * 16 * 120 + 120: "the 5x5 convolutions (no padding) shrink the map by 4 pixels each",
                           16 * 5 * 5 * 120 + 120: "that is fc1 for 32x32 inputs: the flattened map grows with the image",
                           before_last_pool[0].numel() * 120 + 120: "the last max-pool halves the map's side before fc1",
                           x.shape[-1] ** 2 * 120 + 120: "the last feature map has 16 channels: fc1 sees all of them"})

    check_parts(first_part, second_part)  # each part earns its share of the points


def check_costliest_part(answer: Any) -> None:
    """ex-cnn-flops: which part of ``SmallCNN`` costs the most FLOPs per image ("stem", "block1", ..., "head")."""
    from mmbook.cnn import SmallCNN, count_flops

    net = SmallCNN()
    flops = {"stem": count_flops(net.stem, (3, 32, 32)), "block1": count_flops(net.block1, (24, 15, 15)),
             "block2": count_flops(net.block2, (32, 7, 7)), "block3": count_flops(net.block3, (64, 3, 3)),
             "head": 2 * net.head.in_features * net.head.out_features}
    costliest = max(flops, key=flops.get)
    # One hint for every wrong part: a comparison of the parts (widest, most pixels, ...) would name the answer.
    check_choice(answer, costliest, list(flops), name="the costliest part",
                 hint="compare the parts' costs, not their sizes: a convolution costs about 2 * output pixels * "
                      "kernel area * in-channels * out-channels, a linear layer 2 * inputs * outputs; work it out "
                      "for each part, or measure each with count_flops")


def check_tta_passes(answer: Any) -> None:
    """ex-cnn-tta: forward passes per image of ``evaluate_images`` with ``tta=True``, and with ``tta=True, shift=1``."""
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        _fail(f"give two numbers, (tta=True, tta=True with shift=1), got {answer!r:.60}", None)
    passes = {(tta, shift): _count_passes(tta, shift) for tta, shift in ((False, 0), (True, 0), (True, 1))}

    def first_part() -> None:
        check_value(answer[0], passes[True, 0], tol=0.5, name="passes with tta=True",
                    hint="read evaluate_images: count the model calls for one batch with tta=True",
                    wrong={passes[False, 0]: "TTA adds the mirror image"})

    def second_part() -> None:
        check_value(answer[1], passes[True, 1], tol=0.5, name="passes with tta=True, shift=1",
                    hint="read evaluate_images: count the shifted copies that shift=1 makes, and whether each is mirrored",
                    wrong={passes[True, 0] + 2: "each shifted copy is also mirrored",
                           passes[True, 0] + 1: "count the shifted copies again (evaluate_images' docstring says "
                                                "how many), and remember that each is also mirrored",
                           passes[True, 0]: "shift=1 adds shifted copies of the image to the average"})

    check_parts(first_part, second_part)  # each part earns its share of the points


def _count_passes(tta: bool, shift: int) -> int:
    """Forward passes per batch that ``mmbook.fastcnn.evaluate_images`` makes."""
    import torch

    from mmbook.fastcnn import evaluate_images

    class Counter(torch.nn.Module):
        calls = 0

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            Counter.calls += 1
            return torch.zeros(images.shape[0], 10)

    model = Counter()
    evaluate_images(model, [{"image": torch.zeros(2, 3, 32, 32), "label": torch.zeros(2, dtype=torch.long)}],
                    tta=tta, shift=shift)
    return Counter.calls
