"""Where LeNet's training step spends its time on a CPU, and how much a faster max-pool buys.

On two CPU cores the fast path of ``mmbook bench loader`` runs close to its *ceiling* row
(LeNet's step on one fixed batch, no data path): the step itself is the limit. This script
looks inside that step:

1. LeNet's step, fp32 and bf16 autocast, at batch 512/1024/2048 (channels-last);
2. the 2x2 max-pool after the first convolution, ``F.max_pool2d`` against
   :class:`MaxPool2x2`, a pool written from plain tensor operations (below);
3. LeNet's step with that pool after ``conv1``, against the stock LeNet.

    python benchmarks/lenet_step.py            # about two minutes on two cores
    python benchmarks/lenet_step.py --quick    # a few seconds, to check that it runs

Every timing is the best of several interleaved repeats, since a virtual machine's speed can
drift by 20-40% from one minute to the next. Results are in ``benchmarks/RESULTS.md``.

Why the pool is worth a look: ``conv1``'s output, ``(B, 6, 28, 28)`` in channels-last memory,
has only six channels per pixel, fewer than one vector register holds, and ATen's pooling
kernel vectorizes over channels. :class:`MaxPool2x2` works on whole rows of pixels instead.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.nn import functional as F

from mmbook.bench import run_step_ceiling
from mmbook.cnn import LeNet


class MaxPool2x2(torch.autograd.Function):
    """``F.max_pool2d(x, 2)`` for a channels-last ``x`` ``(B, C, H, W)`` (H and W even), from plain ops.

    In channels-last memory a tensor is ``(B, H, W, C)``; a 2x2 window is two pixel pairs in two
    neighbouring rows. The forward pass takes the larger pixel of each pair in a row, then the
    larger of the two rows, and remembers each choice as a 0/1 mask *in the data's dtype*:
    on a CPU, ``torch.where`` and ``masked_fill`` with a bool mask ran 20-40 times slower than a
    multiplication by a float mask. Ties go to the first pixel in reading order, as in
    ``F.max_pool2d``, so outputs and gradients are bitwise the same.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        pairs = x.permute(0, 2, 3, 1).reshape(batch, height, width // 2, 2, channels)  # a view if x is channels-last
        left, right = pairs[:, :, :, 0], pairs[:, :, :, 1]
        right_wins = torch.gt(right, left).to(x.dtype)  # (B, H, W/2, C): 1 where the right pixel is larger
        pair_max = torch.maximum(left, right)
        rows = pair_max.view(batch, height // 2, 2, (width // 2) * channels)
        top, bottom = rows[:, :, 0], rows[:, :, 1]
        bottom_wins = torch.gt(bottom, top).to(x.dtype)  # (B, H/2, W/2 * C)
        ctx.save_for_backward(right_wins, bottom_wins)
        out = torch.maximum(top, bottom)
        return out.view(batch, height // 2, width // 2, channels).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        right_wins, bottom_wins = ctx.saved_tensors
        batch, height, half_width, channels = right_wins.shape
        grad = grad.permute(0, 2, 3, 1).reshape(batch, height // 2, half_width * channels)
        # Each gradient goes back the way its maximum came: first to the winning row, then to the winning pixel.
        to_bottom = grad * bottom_wins
        grad_pairs = torch.stack([grad - to_bottom, to_bottom], dim=2).view(batch, height, half_width, channels)
        to_right = grad_pairs * right_wins
        grad_pixels = torch.stack([grad_pairs - to_right, to_right], dim=3)
        return grad_pixels.view(batch, height, 2 * half_width, channels).permute(0, 3, 1, 2)


class LeNetCustomPool(LeNet):
    """:class:`mmbook.cnn.LeNet` with :class:`MaxPool2x2` after ``conv1`` (same parameters, same function)."""

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = F.relu(MaxPool2x2.apply(self.conv1(images).contiguous(memory_format=torch.channels_last)))
        x = F.relu(self.pool(self.conv2(x)))
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return F.relu(self.fc2(x))


def pool_milliseconds(pool, dtype: torch.dtype, repeats: int) -> float:
    """Milliseconds of forward plus backward of ``pool`` on a channels-last ``(1024, 6, 28, 28)`` tensor."""
    x = torch.randn(1024, 6, 28, 28, dtype=dtype).contiguous(memory_format=torch.channels_last).requires_grad_()
    grad = torch.randn(1024, 6, 14, 14, dtype=dtype)
    for _ in range(3):
        pool(x).backward(grad)
    started = time.perf_counter()
    for _ in range(repeats):
        pool(x).backward(grad)
    return (time.perf_counter() - started) / repeats * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat of a few steps: checks that it runs")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats; the best is reported")
    args = parser.parse_args()
    repeats, steps = (1, 2) if args.quick else (args.repeats, 20)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; best of {repeats} interleaved repeats")

    aten_pool = nn.MaxPool2d(2)
    print("\n2x2 max-pool of conv1's output (1024, 6, 28, 28), forward + backward, ms:")
    for dtype in (torch.float32, torch.bfloat16):
        aten_ms, custom_ms = [], []
        for _ in range(repeats):
            aten_ms.append(pool_milliseconds(aten_pool, dtype, steps))
            custom_ms.append(pool_milliseconds(MaxPool2x2.apply, dtype, steps))
        print(f"  {str(dtype):<16} F.max_pool2d {min(aten_ms):6.2f}   MaxPool2x2 {min(custom_ms):6.2f}")

    cpu = torch.device("cpu")
    print("\nLeNet training step on one fixed batch (the loader benchmark's ceiling), images/s:")
    print(f"  {'precision':<10}{'batch':>6}{'LeNet':>10}{'+ MaxPool2x2':>14}{'gain':>8}")
    for amp in (False, True):
        for batch_size in (512, 1024, 2048):
            stock, custom = [], []
            for _ in range(repeats):
                stock.append(run_step_ceiling(cpu, batch_size, steps, amp, model_class=LeNet))
                custom.append(run_step_ceiling(cpu, batch_size, steps, amp, model_class=LeNetCustomPool))
            print(f"  {'bf16' if amp else 'fp32':<10}{batch_size:>6}{max(stock):>10.0f}{max(custom):>14.0f}"
                  f"{max(custom) / max(stock) - 1:>+8.0%}")


if __name__ == "__main__":
    main()
