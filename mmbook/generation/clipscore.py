"""A caption score without references: CLIPScore in miniature (Hessel et al. 2021).

CLIPScore judges a caption ``c`` by the image ``v`` alone, with CLIP's two towers::

    CLIPScore(c, v) = w * max(cos(E_c, E_v), 0),   w = 2.5

(the paper's weight, which stretches the cosines of CLIP ViT-B/32 over a readable range); a system's score is the
mean over its images. Here the towers are the Alignment chapter's :class:`~mmbook.alignment.model.TwoTower`,
trained contrastively (InfoNCE, as CLIP) on the training scenes' references, five per scene, in the generation
vocabulary, so it reads every word a captioner can write. It never sees a test scene's references: it can reward a
caption that is true of the image in other words than the references', and it cannot know which words the
references prefer.

One batch of the scorer's training, from the loader to the loss: ``B`` rows, each a scene ``(3, 64, 64)`` and one
of its references ``(T,)``; the towers embed both, and InfoNCE scores every image against every text of the batch.
A scene's five references are five rows, so two of them can meet in one batch and count as each other's negatives,
as in CLIP's training on data with several captions per image; with thousands of rows and batches of a hundred that
is rare.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

#: CLIPScore's weight ``w`` (Hessel et al. 2021).
CLIPSCORE_WEIGHT = 2.5
#: Quick and full defaults of :func:`train_caption_scorer`.
CAPTION_SCORER_DEFAULTS: dict[bool, dict[str, Any]] = {
    False: {"scenes": 2000, "epochs": 6, "batch_size": 128, "lr": 3e-3},
    True: {"scenes": 300, "epochs": 2, "batch_size": 64, "lr": 3e-3},
}


def train_caption_scorer(*, scenes: int | None = None, epochs: int | None = None, batch_size: int | None = None,
                         lr: float | None = None, seed: int = 0, quick: bool = False,
                         device: torch.device | str | None = None, progress: bool = False,
                         root: Path | str | None = None, download: bool = False) -> dict[str, Any]:
    """Train the two towers of :func:`clip_scores` on the references of ``scenes`` training scenes.

    ``None`` arguments take :data:`CAPTION_SCORER_DEFAULTS` ``[quick]``. Training runs through
    :func:`mmbook.alignment.recipe.fit_two_tower` (open_clip's handling of the temperature) with InfoNCE.

    Returns:
        ``model`` (the :class:`~mmbook.alignment.model.TwoTower`), ``history``, ``train_seconds``, ``train_pairs``
        (scene-reference rows), ``train_scenes``, ``epochs`` and ``temperature`` (learned).
    """
    from mmbook.alignment.losses import contrastive_loss
    from mmbook.alignment.model import TwoTower
    from mmbook.alignment.recipe import fit_two_tower
    from mmbook.data import DeviceLoader
    from mmbook.data.loaders import CIFAR10_STATS
    from mmbook.generation.recipe import caption_data
    from mmbook.generation.references import generation_vocabulary
    from mmbook.runtime import pick_device, seed_everything

    settings = dict(CAPTION_SCORER_DEFAULTS[bool(quick)])
    for key, value in {"scenes": scenes, "epochs": epochs, "batch_size": batch_size, "lr": lr}.items():
        if value is not None:
            settings[key] = value
    device = pick_device(device)
    train_set, _, tensors = caption_data("train", settings["scenes"], seed, quick, root=root, download=download)
    per_scene, length = tensors["text"].shape[1:]
    rows = {"image": train_set.images.repeat_interleave(per_scene, dim=0), "text": tensors["text"].reshape(-1, length)}
    if len(rows["text"]) < 2:
        raise ValueError(f"contrastive training needs at least 2 scene-reference pairs, got {len(rows['text'])}")
    batch_size = min(settings["batch_size"], len(rows["text"]))
    seed_everything(seed)
    model = TwoTower(len(generation_vocabulary()))
    loader = DeviceLoader(rows, batch_size, shuffle=True, drop_last=True, device=device, seed=seed, **CIFAR10_STATS)
    history, seconds = fit_two_tower(model, loader, contrastive_loss, epochs=settings["epochs"], lr=settings["lr"],
                                     weight_decay=5e-4, device=device, progress=progress,
                                     description="caption scorer")
    return {"model": model, "history": history, "train_seconds": seconds, "train_pairs": len(rows["text"]),
            "train_scenes": settings["scenes"], "epochs": settings["epochs"], "temperature": model.temperature}


def caption_token_ids(captions: Sequence[str]) -> torch.Tensor:
    """``<bos> words <eos>`` ids ``(N, T)`` of ``captions`` in the generation vocabulary, right-padded with 0.

    Unlike the references' encoding this never refuses a caption: a word outside the vocabulary becomes
    ``<unk>``, and an empty caption is ``<bos> <eos>`` (a model may write either).
    """
    from mmbook.generation.references import bos_eos_tokens, generation_vocabulary

    if isinstance(captions, str):
        raise TypeError("captions must be a sequence of caption strings, not a single string")
    if len(captions) == 0:
        raise ValueError("no captions to encode")
    vocab = generation_vocabulary()
    return bos_eos_tokens([vocab.encode(caption) for caption in captions])


@torch.no_grad()
def clip_scores(model: torch.nn.Module, images: torch.Tensor, captions: Sequence[str],
                weight: float = CLIPSCORE_WEIGHT, batch_size: int = 500) -> torch.Tensor:
    """CLIPScore of each caption against its image: ``w * max(cos(E_c, E_v), 0)``, ``(N,)`` in ``[0, w]``.

    Args:
        model: a two-tower model with ``encode_text`` (e.g. :func:`train_caption_scorer`'s).
        images: uint8 scenes ``(N, 3, 64, 64)``.
        captions: ``N`` captions, caption ``i`` of image ``i``.
        weight: ``w``, 2.5 in the paper.
    """
    from mmbook.alignment.retrieval import embed_images, embed_texts

    if images.ndim != 4 or images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 scenes (N, 3, H, W), got {images.dtype} of shape {tuple(images.shape)}")
    tokens = caption_token_ids(captions)
    if len(tokens) != len(images):
        raise ValueError(f"got {len(tokens)} captions for {len(images)} images; pass one caption per image, in order")
    image_embeddings = embed_images(model, images, batch_size)
    text_embeddings = embed_texts(model, tokens, batch_size)
    return weight * (image_embeddings * text_embeddings).sum(dim=1).clamp(min=0)


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b between two score lists over the same systems (ties counted as neither agreeing nor not).

    The agreement measure of caption metrics with each other or with human judgments across systems.
    """
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"kendall_tau needs two lists of the same length, at least 2, got {len(x)} and {len(y)}")
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denominator = ((concordant + discordant + ties_x) * (concordant + discordant + ties_y)) ** 0.5
    return (concordant - discordant) / denominator if denominator else float("nan")
