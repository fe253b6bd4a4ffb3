"""Does the model read how the words are composed? Accuracy on captions with swapped words.

:func:`swap_accuracy` scores each test image against its true caption and a swapped one
(:func:`mmbook.data.scene_negatives.swap_benchmark`): an item is passed when the true caption is the
closer one. A model that reads captions as bags of words cannot tell the two apart: chance is 0.5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from mmbook.alignment.retrieval import embed_images
from mmbook.runtime import evaluating


@torch.no_grad()
def swap_accuracy(model: nn.Module, images: torch.Tensor, benchmark: Mapping[str, Mapping[str, Sequence]],
                  vocab=None) -> dict[str, float]:
    """Share of items whose true caption scores above the swapped one, per swap type and over all items.

    Args:
        model: a :class:`~mmbook.alignment.TwoTower` (``encode_image``, ``encode_text``).
        images: the scenes' uint8 images ``(N, 3, 64, 64)``; ``benchmark[swap]["scene"]`` indexes them.
        benchmark: :func:`mmbook.data.scene_negatives.swap_benchmark` of the same scenes.

    Returns:
        ``{"swap_accuracy_<swap>": ..., "swap_items_<swap>": n, ..., "swap_accuracy": over all items}``; chance is 0.5.
    """
    from mmbook.data.scene_captions import encode_captions

    device = next(model.parameters()).device
    report: dict[str, float] = {}
    passed, total = 0, 0
    with evaluating(model):
        for swap, items in benchmark.items():
            if not items["scene"]:
                continue
            image_embeddings = embed_images(model, images[torch.tensor(items["scene"])]).to(device)  # (n, d)
            positive = model.encode_text(encode_captions(items["positive"], vocab).to(device))
            negative = model.encode_text(encode_captions(items["negative"], vocab).to(device))
            wins = ((image_embeddings * positive).sum(1) > (image_embeddings * negative).sum(1)).float()
            report[f"swap_accuracy_{swap}"] = float(wins.mean())
            report[f"swap_items_{swap}"] = float(len(wins))
            passed += int(wins.sum())
            total += len(wins)
    if total == 0:
        raise ValueError("the benchmark holds no item: it needs scenes with two or more objects")
    report["swap_accuracy"] = passed / total
    return report
