"""Contrastive losses over a batch of ``B`` matching image-text pairs.

- :func:`info_nce`: the symmetric InfoNCE of CLIP (van den Oord et al. 2018; Radford et al. 2021);
- :func:`sigmoid_loss`: SigLIP's pairwise sigmoid loss (Zhai et al. 2023), one binary decision per pair;
- ``negatives=k`` in both: the batch is cut into blocks of ``k`` pairs and each pair is compared only
  with the ``k - 1`` others of its block, so the number of negatives can be varied at a fixed batch
  size and a fixed number of steps;
- :func:`contrastive_loss` and :func:`sigmoid_contrastive_loss`: ``loss_fn`` for :func:`mmbook.training.fit`.
  Under DDP they gather the embeddings of every rank with their gradient first
  (:func:`mmbook.distributed.gather_with_grad`), so N processes with B pairs each see N·B − 1
  negatives per pair, exactly as one process with the global batch.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch.nn import functional as F

from mmbook.alignment.model import INIT_TEMPERATURE, check_temperature
from mmbook.distributed import gather_with_grad


def check_embeddings(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> None:
    """Raise a clear error unless both are ``(B, d)`` tensors with the same ``B`` and ``d``."""
    for name, x in (("image", image_embeddings), ("text", text_embeddings)):
        if not isinstance(x, torch.Tensor) or x.ndim != 2:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} embeddings must be a tensor (B, d), got {shape}")
    if image_embeddings.shape[0] != text_embeddings.shape[0]:
        raise ValueError(
            f"batch sizes differ: {image_embeddings.shape[0]} image embeddings but {text_embeddings.shape[0]} text "
            f"embeddings. InfoNCE needs one caption per image: row i of each is the i-th pair.")
    if image_embeddings.shape[1] != text_embeddings.shape[1]:
        raise ValueError(f"embedding sizes differ: image d={image_embeddings.shape[1]}, text d={text_embeddings.shape[1]}; "
                         f"project both into the same space first")
    if image_embeddings.shape[0] == 0:
        raise ValueError("the batch is empty: InfoNCE needs at least one pair")


def _blocks(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor,
            negatives: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, d)`` twice -> ``(B / k, k, d)`` twice: blocks of ``k = negatives`` pairs (one block of ``B`` if ``None``)."""
    batch = image_embeddings.shape[0]
    k = batch if negatives is None else negatives
    if not isinstance(k, int) or k < 1 or batch % k:
        raise ValueError(f"negatives={negatives!r}: the block size must be a positive int that divides the batch "
                         f"({batch} pairs); each pair is compared with the k - 1 other pairs of its block")
    return image_embeddings.reshape(batch // k, k, -1), text_embeddings.reshape(batch // k, k, -1)


def info_nce(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor,
             temperature: float | torch.Tensor = INIT_TEMPERATURE, negatives: int | None = None) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP's loss) over a batch of ``B`` matching pairs.

    Args:
        image_embeddings: ``(B, d)``, L2-normalised; row ``i`` belongs with text row ``i``.
        text_embeddings: ``(B, d)``, L2-normalised.
        temperature: positive; a float or a 0-d tensor (e.g. ``1 / model.scale``).
        negatives: ``None`` (every other pair of the batch is a negative, ``B - 1`` of them), or a block
            size ``k`` dividing ``B``: the loss is the mean over the ``B / k`` blocks of the loss within
            each block, so each pair has ``k - 1`` negatives.

    Returns:
        The scalar ``(CE(logits, arange B) + CE(logits.T, arange B)) / 2`` with
        ``logits = image @ text.T / temperature`` ``(B, B)`` (per block with ``negatives``).
    """
    check_embeddings(image_embeddings, text_embeddings)
    check_temperature(temperature)
    images, texts = _blocks(image_embeddings.float(), text_embeddings.float(), negatives)  # (n, k, d)
    logits = images @ texts.transpose(1, 2) / temperature  # (n, k, k)
    n, k, _ = logits.shape
    targets = torch.arange(k, device=logits.device).repeat(n)
    rows = logits.reshape(n * k, k)
    columns = logits.transpose(1, 2).reshape(n * k, k)
    return (F.cross_entropy(rows, targets) + F.cross_entropy(columns, targets)) / 2


def info_nce_loop(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor, temperature: float) -> torch.Tensor:
    """:func:`info_nce` written as a plain loop over the pairs (slow; a reference for checking)."""
    check_embeddings(image_embeddings, text_embeddings)
    check_temperature(temperature)
    batch = image_embeddings.shape[0]
    total = image_embeddings.new_zeros((), dtype=torch.float64)
    for i in range(batch):
        to_texts = torch.stack([image_embeddings[i].double() @ text_embeddings[j].double() for j in range(batch)]) / temperature
        to_images = torch.stack([text_embeddings[i].double() @ image_embeddings[j].double() for j in range(batch)]) / temperature
        total = total - (to_texts[i] - torch.logsumexp(to_texts, 0)) - (to_images[i] - torch.logsumexp(to_images, 0))
    return (total / (2 * batch)).float()


def sigmoid_loss(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor, scale: float | torch.Tensor = 10.0,
                 bias: float | torch.Tensor = -10.0, negatives: int | None = None) -> torch.Tensor:
    """SigLIP's sigmoid loss (Zhai et al. 2023): every image-text pair of the batch is one binary decision.

    ``logits = scale * image @ text.T + bias`` ``(B, B)``; the label is +1 on the diagonal (matching pairs)
    and -1 elsewhere, and the loss is ``-sum(log sigmoid(label * logits)) / B``, the paper's normalisation
    (a sum over the ``B`` pairs of each image, averaged over the images). No softmax couples the pairs, so
    there is no normalisation over the batch; the learned ``bias`` (initialised to -10 in the paper, with
    ``scale`` initialised to 10) offsets the many negatives at the start of training.

    Args:
        image_embeddings, text_embeddings: ``(B, d)``, L2-normalised; row ``i`` of each is pair ``i``.
        scale: ``1 / temperature``, positive.
        bias: the logit bias.
        negatives: as in :func:`info_nce`: ``None``, or a block size ``k`` (``k - 1`` negatives per pair).
    """
    check_embeddings(image_embeddings, text_embeddings)
    check_temperature(1.0 / scale if isinstance(scale, torch.Tensor) else 1.0 / float(scale))
    images, texts = _blocks(image_embeddings.float(), text_embeddings.float(), negatives)  # (n, k, d)
    logits = scale * (images @ texts.transpose(1, 2)) + bias  # (n, k, k)
    k = logits.shape[1]
    labels = 2 * torch.eye(k, device=logits.device) - 1  # +1 matching, -1 not
    return -F.logsigmoid(labels * logits).sum() / (logits.shape[0] * k)


def contrastive_loss(output: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor],
                     negatives: int | None = None) -> torch.Tensor:
    """``loss_fn`` for :func:`mmbook.training.fit`: :func:`info_nce` on a :class:`TwoTower` output.

    Under DDP the embeddings of all ranks are gathered first (with gradient), so the loss is the one of
    the global batch. ``negatives`` (bind it with ``functools.partial``) is the block size of :func:`info_nce`.
    """
    images, texts = gather_with_grad(output["image"]), gather_with_grad(output["text"])
    return info_nce(images, texts, 1.0 / output["scale"], negatives=negatives)


def sigmoid_contrastive_loss(output: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor],
                             negatives: int | None = None) -> torch.Tensor:
    """``loss_fn`` for :func:`mmbook.training.fit`: :func:`sigmoid_loss` on a :class:`TwoTower` with a ``logit_bias``."""
    if "bias" not in output:
        raise ValueError("the sigmoid loss needs a learned logit bias: build TwoTower(..., logit_bias=-10.0, "
                         "temperature=0.1) as SigLIP does")
    images, texts = gather_with_grad(output["image"]), gather_with_grad(output["text"])
    return sigmoid_loss(images, texts, output["scale"], output["bias"], negatives=negatives)


def negclip_loss(output: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``loss_fn`` for :func:`mmbook.training.fit`: InfoNCE with one hard negative caption per pair (NegCLIP).

    Yuksekgonul et al. (2023) add, for every image, a caption with its words swapped to the captions it
    must choose among: the image -> text softmax runs over the ``B`` true captions and the ``B`` hard
    negatives ``(B, 2B)``; the text -> image direction is CLIP's. The output must hold ``"hard_text"``
    (a :class:`TwoTower` output for a batch with ``"hard_text"`` tokens).
    """
    if "hard_text" not in output:
        raise ValueError("negclip_loss needs a hard negative caption per pair: put its tokens in batch['hard_text'] "
                         "(see mmbook.data.scene_negatives.hard_negative_captions)")
    images, texts = gather_with_grad(output["image"]).float(), gather_with_grad(output["text"]).float()
    hard = gather_with_grad(output["hard_text"]).float()
    check_embeddings(images, texts)
    check_embeddings(images, hard)
    scale = output["scale"]
    targets = torch.arange(images.shape[0], device=images.device)
    image_to_text = scale * images @ torch.cat([texts, hard]).T  # (B, 2B)
    text_to_image = scale * texts @ images.T  # (B, B)
    return (F.cross_entropy(image_to_text, targets) + F.cross_entropy(text_to_image, targets)) / 2


@torch.no_grad()
def in_batch_accuracy(output: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """``accuracy_fn`` for :func:`mmbook.training.fit`: how often a caption's best image in its rank's batch is its own."""
    logits = output["text"].float() @ output["image"].float().T  # (B, B)
    return (logits.argmax(dim=1) == torch.arange(logits.shape[0], device=logits.device)).sum(), int(logits.shape[0])
