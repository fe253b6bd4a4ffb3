"""Checkers for the exercises of the appendix: measured results (``ex-appendix-*``) and scaling out
(``ex-scaling-*``)."""

from __future__ import annotations

from collections.abc import Callable

from mmbook.exercises import _call, _fail, _tensor_close


def check_fastest_run(function: Callable) -> None:
    """ex-appendix-fastest: ``function(records, threshold) -> Record``, the training record with
    ``test_accuracy_tta >= threshold`` and the fewest ``train_seconds``."""
    from mmbook.results import Record

    rows = [
        {"step": "fastcnn", "recipe": "slow and good", "train_seconds": 9.0, "test_accuracy": 0.93,
         "test_accuracy_tta": 0.94},
        {"step": "seed", "recipe": "fast, good only with TTA", "train_seconds": 5.0, "test_accuracy": 0.91,
         "test_accuracy_tta": 0.925},
        {"step": "fastcnn", "recipe": "fastest, too weak", "train_seconds": 2.0, "test_accuracy": 0.80,
         "test_accuracy_tta": 0.81},
        {"step": "loader", "recipe": "a loader benchmark", "train_seconds": 0.5},
        {"step": "reference", "recipe": "failed", "error": "out of memory"},
    ]
    records = [Record("demo.jsonl", line, row) for line, row in enumerate(rows, start=1)]
    for threshold, expected in ((0.92, records[1]), (0.93, records[0])):
        got = _call(function, f"your function with threshold {threshold}", list(records), threshold)
        if got == expected:
            continue
        if isinstance(got, str):
            _fail(f"your function returned the string {got!r:.60}", "return the record itself (a Record), "
                  "so that its run, recipe and figures can be read from it")
        names = {id(record): record.recipe for record in records}
        got_name = names.get(id(got), repr(got)[:60])
        if got is records[2]:
            hint = "keep only the runs that reach the threshold before taking the fastest"
        elif got is records[3] or got is records[4]:
            hint = "keep only training records (step fastcnn, seed or reference) that have an accuracy"
        else:
            hint = ("compare the accuracy with TTA (test_accuracy_tta) with the threshold, then take the record "
                    "with the fewest train_seconds")
        _fail(f"with threshold {threshold} your function chose {got_name!r}, which is not the fastest run that "
              f"reaches it", hint)


def check_ghost_gradient(function: Callable) -> None:
    """ex-scaling-ghost-bn: ``function(net, images (B, 3, H, W), labels (B,), parts) -> (P,)``, the mean of
    the flattened parameter gradients of ``parts`` equal slices of the batch, each run through ``net`` alone."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 5))
    images, labels = torch.randn(12, 3, 8, 8), torch.randint(0, 5, (12,))

    def gradient(losses: list[torch.Tensor], scale: float) -> torch.Tensor:
        net.zero_grad()
        (sum(losses) * scale).backward()
        return torch.cat([p.grad.flatten() for p in net.parameters()]).clone()

    for parts in (2, 3):
        chunks = list(zip(images.chunk(parts), labels.chunk(parts)))
        expected = gradient([F.cross_entropy(net(x), y) for x, y in chunks], 1 / parts)
        whole = gradient([F.cross_entropy(net(images), labels)], 1.0)
        summed = expected * parts
        got = _call(function, f"your function with parts={parts}", net, images.clone(), labels.clone(), parts)
        if isinstance(got, torch.Tensor):
            got = got.detach()
        _tensor_close(got, expected, f"the gradient with parts={parts}", atol=1e-6,
                      hint="split the batch into `parts` equal slices (chunk), run each through the network on its own, "
                           "and average the slices' gradients; flatten and concatenate them in parameters() order",
                      hints=[
            (whole, "that is the whole-batch gradient (what SyncBatchNorm computes): run each slice through the "
                    "network on its own, so that BatchNorm uses that slice's statistics"),
            (summed, "average the slices' gradients, as DDP does, instead of adding them")])
