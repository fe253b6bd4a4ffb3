"""Element-level alignment: which part of the image a word points at, read out of a trained two-tower model.

A :class:`~mmbook.alignment.TwoTower` is trained on whole images and whole captions, yet its image
embedding is linear in a max-pool over an 8x8 grid of region features (the *what* path of
:class:`~mmbook.alignment.SceneImageTower`). Projecting each grid cell's features with the *what*
columns of the image projection gives one vector per region in the shared space; its dot product with
a word's text embedding is a word-region similarity map ``(8, 8)``. The rest of the image embedding (the
*where* path and the bias) adds the same amount to every cell, so it does not move the map's maximum.

:func:`pointing_game` scores such maps against the scenes' ground-truth boxes: a map *hits* when its
highest cell's centre lies inside a box of the named class (the pointing game of Zhang et al. 2016);
chance is the share of cell centres that lie inside those boxes.
"""

from __future__ import annotations

import torch
from torch import nn

from mmbook.runtime import evaluating


@torch.no_grad()
def region_embeddings(model: nn.Module, images: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    """Region vectors in the shared space ``(N, H, W, d)`` for uint8 scenes ``(N, 3, 64, 64)`` (``H = W = 8``).

    Each is the projection of one grid cell's *what* features, ``W_what @ grid[:, :, i, j]``, unnormalised.
    """
    from mmbook.data.loaders import normalize_images

    tower = model.image_tower
    width = tower.backbone.out_channels
    w_what = model.image_projection.weight[:, :width]  # (d, 2w): the columns that read the pooled grid
    device = next(model.parameters()).device
    out = []
    with evaluating(model):
        for start in range(0, len(images), batch_size):
            grid = tower.backbone(normalize_images(images[start : start + batch_size].to(device)))  # (b, 2w, H, W)
            out.append(torch.einsum("bchw,dc->bhwd", grid.float(), w_what.float()).cpu())
    return torch.cat(out)


def word_region_maps(regions: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
    """Similarity maps ``(N, K, H, W)`` of ``K`` word embeddings ``(K, d)`` over region vectors ``(N, H, W, d)``."""
    if regions.ndim != 4 or words.ndim != 2 or regions.shape[-1] != words.shape[-1]:
        raise ValueError(f"expected regions (N, H, W, d) and words (K, d) with the same d, got "
                         f"{tuple(regions.shape)} and {tuple(words.shape)}")
    return torch.einsum("nhwd,kd->nkhw", regions, words)


def pointing_game(maps: torch.Tensor, boxes: torch.Tensor, canvas: int = 64) -> dict[str, float]:
    """Hits of similarity maps against boxes: the share of maps whose highest cell lies in the box, and chance.

    Args:
        maps: ``(M, H, W)``, one map per (image, word) query.
        boxes: ``(M, 4)`` the ``(x1, y1, x2, y2)`` box, in pixels of a ``canvas``-sized image, of the object
            the word names (one box per query; for a class with several objects, any of them may be given).
        canvas: the image side in pixels.

    Returns:
        ``{"accuracy", "chance", "queries"}``: the hit rate, the expected hit rate of a uniformly random cell
        (the mean share of cell centres inside the box), and ``M``.
    """
    if maps.ndim != 3 or boxes.shape != (maps.shape[0], 4):
        raise ValueError(f"expected maps (M, H, W) and boxes (M, 4), got {tuple(maps.shape)} and {tuple(boxes.shape)}")
    m, h, w = maps.shape
    if m == 0:
        raise ValueError("the pointing game needs at least one query")
    cell_y = (torch.arange(h, dtype=torch.float32) + 0.5) * canvas / h
    cell_x = (torch.arange(w, dtype=torch.float32) + 0.5) * canvas / w
    cy, cx = torch.meshgrid(cell_y, cell_x, indexing="ij")  # (H, W) centres in pixels
    boxes = boxes.float()
    inside = ((cx >= boxes[:, 0, None, None]) & (cx < boxes[:, 2, None, None]) &
              (cy >= boxes[:, 1, None, None]) & (cy < boxes[:, 3, None, None]))  # (M, H, W)
    best = maps.reshape(m, -1).argmax(dim=1)
    hits = inside.reshape(m, -1).gather(1, best[:, None]).squeeze(1)
    return {"accuracy": float(hits.float().mean()), "chance": float(inside.float().mean()), "queries": float(m)}
