"""Cross-modal retrieval: recall@K in both directions, with several correct answers per query.

:func:`recall_at_k` with its two definitions ("any", the usual one, and "fraction"), its chance level
(:func:`chance_recall_at_k`), which answers are correct (:func:`caption_relevance` for identical
strings; :func:`mmbook.data.scene_captions.caption_relevance_to_scenes` for every true description of a
scene), the report of a whole gallery (:func:`retrieval_report`), and the embeddings of a loader (:func:`embed`)
or of uint8 scenes (:func:`embed_images`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mmbook.alignment.losses import check_embeddings
from mmbook.runtime import evaluating

RECALL_DEFINITIONS = ("any", "fraction")


def check_gallery(similarity: torch.Tensor, relevant: torch.Tensor, k: int) -> None:
    """Raise a clear error unless ``similarity`` and ``relevant`` are ``(Q, G)`` with ``1 <= k <= G``."""
    if not isinstance(similarity, torch.Tensor) or similarity.ndim != 2:
        raise ValueError(f"similarity must be a (queries, gallery) matrix, got "
                         f"{tuple(similarity.shape) if isinstance(similarity, torch.Tensor) else type(similarity).__name__}")
    if similarity.shape[1] == 0:
        raise ValueError("the gallery is empty: there is nothing to retrieve (similarity has 0 columns)")
    if similarity.shape[0] == 0:
        raise ValueError("there are no queries (similarity has 0 rows)")
    if not isinstance(relevant, torch.Tensor) or relevant.shape != similarity.shape or relevant.dtype != torch.bool:
        raise ValueError(f"relevant must be a bool tensor of the similarity's shape {tuple(similarity.shape)}, got "
                         f"{getattr(relevant, 'dtype', type(relevant).__name__)} {tuple(getattr(relevant, 'shape', ()))}")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if k > similarity.shape[1]:
        raise ValueError(f"k={k} is larger than the gallery ({similarity.shape[1]} items); use k <= {similarity.shape[1]}")
    if not bool(relevant.any(dim=1).all()):
        row = int((~relevant.any(dim=1)).nonzero()[0])
        raise ValueError(f"query {row} has no correct item in the gallery; every query needs at least one")


def recall_at_k(similarity: torch.Tensor, relevant: torch.Tensor, k: int, definition: str = "any") -> float:
    """Recall@K of a retrieval, averaged over the queries.

    Args:
        similarity: ``(Q, G)`` scores, higher is better; row ``q`` ranks the gallery for query ``q``.
        relevant: ``(Q, G)`` bool, True where gallery item ``g`` is a correct answer to query ``q``.
        k: how many top-ranked items count, ``1 <= k <= G``.
        definition: ``"any"``: a query scores 1 if *any* correct item is in its top ``k`` (the usual
            definition in image-text retrieval); ``"fraction"``: it scores the *fraction of its correct
            items* found in the top ``k``. With one correct item per query both are the same.

    Returns:
        The mean over queries, in ``[0, 1]``.
    """
    check_gallery(similarity, relevant, k)
    if definition not in RECALL_DEFINITIONS:
        raise ValueError(f"definition must be one of {RECALL_DEFINITIONS}, got {definition!r}")
    top = similarity.topk(k, dim=1).indices  # (Q, k)
    found = relevant.gather(1, top).sum(dim=1).float()  # correct items in the top k, per query
    if definition == "any":
        return float((found > 0).float().mean())
    return float((found / relevant.sum(dim=1).float()).mean())


def chance_recall_at_k(relevant: torch.Tensor, k: int, definition: str = "any") -> float:
    """Expected recall@K of a random ranking: ``1 - C(G - m, k) / C(G, k)`` ("any") or ``k / G`` ("fraction"),
    with ``m`` the query's number of correct items, averaged over queries."""
    gallery = relevant.shape[1]
    if not 1 <= k <= gallery:
        raise ValueError(f"k={k} must lie in 1..{gallery} (the gallery size)")
    if definition == "fraction":
        return k / gallery
    if definition != "any":
        raise ValueError(f"definition must be one of {RECALL_DEFINITIONS}, got {definition!r}")
    m = relevant.sum(dim=1).double()
    # P(no correct item in k draws without replacement) = prod_{i<k} (G - m - i) / (G - i).
    steps = torch.arange(k, dtype=torch.float64)
    miss = ((gallery - m.unsqueeze(1) - steps).clamp(min=0) / (gallery - steps)).prod(dim=1)
    return float((1 - miss).mean())


def caption_relevance(captions: Sequence[str]) -> torch.Tensor:
    """``(N, N)`` bool: pair ``(i, j)`` is correct when caption ``j`` is word for word caption ``i``.

    Identical captions describe their images equally well, so a caption shared by several images
    has all of them as correct answers (and an image has all copies of its caption).
    """
    ids: dict[str, int] = {}
    index = torch.tensor([ids.setdefault(c, len(ids)) for c in captions])
    return index.unsqueeze(0) == index.unsqueeze(1)


def retrieval_report(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor, captions: Sequence[str],
                     ks: Sequence[int] = (1, 5, 10), relevant: torch.Tensor | None = None) -> dict[str, float]:
    """Recall@K in both directions and both definitions, with chance, over a gallery of images and captions.

    Args:
        image_embeddings: ``(M, d)``, one row per image.
        text_embeddings: ``(N, d)``, one row per caption.
        captions: the ``N`` caption strings.
        ks: the K values.
        relevant: ``(N, M)`` bool, True where caption ``t`` correctly describes image ``m`` (e.g.
            :func:`mmbook.data.scene_captions.caption_relevance_to_scenes`, or ``image_ids[t] == m`` for data
            with several captions per image). Default, for ``N == M`` pairs (row ``i`` of each is pair ``i``):
            :func:`caption_relevance`, a caption is correct for every image that carries the same string.

    Text to image ranks the ``M`` images for each of the ``N`` captions. Image to text ranks the *distinct*
    caption strings for each image: a caption repeated word for word has one embedding, and ranking its
    copies separately would let one text fill several of the top K places. A K larger than a gallery is
    cut to the gallery's size (recall 1).

    Returns:
        Keys ``recall_at_{k}_{direction}`` ("any" definition), ``recall_fraction_at_{k}_{direction}`` and
        ``chance_at_{k}_{direction}`` (of the "any" definition), with direction ``text_to_image`` or
        ``image_to_text``, plus ``gallery`` (M images) and ``caption_gallery`` (distinct captions).
    """
    for name, x in (("image", image_embeddings), ("text", text_embeddings)):
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"{name} embeddings must be a non-empty tensor (rows, d), got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if image_embeddings.shape[1] != text_embeddings.shape[1]:
        raise ValueError(f"embedding sizes differ: image d={image_embeddings.shape[1]}, text d={text_embeddings.shape[1]}")
    m, n = image_embeddings.shape[0], text_embeddings.shape[0]
    if len(captions) != n:
        raise ValueError(f"expected {n} captions, one per text embedding, got {len(captions)}")
    if relevant is None:
        check_embeddings(image_embeddings, text_embeddings)  # one caption per image, row i of each is pair i
        relevant = caption_relevance(captions)
    if not isinstance(relevant, torch.Tensor) or relevant.dtype != torch.bool or tuple(relevant.shape) != (n, m):
        raise ValueError(f"relevant must be a bool tensor (captions, images) = ({n}, {m}), got "
                         f"{getattr(relevant, 'dtype', type(relevant).__name__)} {tuple(getattr(relevant, 'shape', ()))}")
    if not bool(relevant.any(dim=1).all()) or not bool(relevant.any(dim=0).all()):
        raise ValueError("every caption needs a correct image and every image a correct caption in relevant "
                         "(captions, images); a caption describes at least its own image")
    relevant = relevant.to(image_embeddings.device)
    first = list(dict.fromkeys(captions))  # distinct captions, in order of first use
    index_of = {caption: i for i, caption in reversed(list(enumerate(captions)))}
    distinct = torch.tensor([index_of[caption] for caption in first], device=image_embeddings.device)
    # Copies of one string must be interchangeable for the image -> text gallery.
    position = {caption: k for k, caption in enumerate(first)}
    if not bool((relevant[distinct][torch.tensor([position[c] for c in captions])] == relevant).all()):
        raise ValueError("captions with the same string must have the same correct images in relevant")
    similarity = text_embeddings.float() @ image_embeddings.float().T  # (texts, images)
    report: dict[str, float] = {"gallery": float(m), "caption_gallery": float(len(distinct))}
    for direction, sim, rel in (("text_to_image", similarity, relevant),
                                ("image_to_text", similarity[distinct].T, relevant[distinct].T)):
        for k in ks:
            k_here = min(k, sim.shape[1])
            report[f"recall_at_{k}_{direction}"] = recall_at_k(sim, rel, k_here, "any")
            report[f"recall_fraction_at_{k}_{direction}"] = recall_at_k(sim, rel, k_here, "fraction")
            report[f"chance_at_{k}_{direction}"] = chance_recall_at_k(rel, k_here, "any")
    return report


@torch.no_grad()
def embed(model: nn.Module, loader, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Image and text embeddings ``(N, d)`` of every batch of ``loader``, on the CPU, in loader order."""
    device = device or next(model.parameters()).device
    images, texts = [], []
    with evaluating(model):
        for batch in loader:
            images.append(model.encode_image(batch["image"].to(device)).cpu())
            texts.append(model.encode_text(batch["text"].to(device)).cpu())
    return torch.cat(images), torch.cat(texts)


@torch.no_grad()
def embed_images(model: nn.Module, images: torch.Tensor, batch_size: int = 500, projected: bool = True) -> torch.Tensor:
    """Image embeddings of uint8 scenes ``(N, 3, 64, 64)``, on the CPU.

    ``projected=True``: the unit vectors of the shared space ``(N, d)``; ``projected=False``: the image
    tower's features before the projection ``(N, D)``, where CLIP trains its linear probes.
    """
    from mmbook.data.loaders import normalize_images

    device = next(model.parameters()).device
    encode = model.encode_image if projected else model.image_tower
    with evaluating(model):
        out = [encode(normalize_images(images[i : i + batch_size].to(device))).float().cpu()
               for i in range(0, len(images), batch_size)]
    return torch.cat(out)


def embed_texts(model: nn.Module, tokens: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Unit text embeddings ``(N, d)``, on the CPU, of right-padded token ids ``(N, T)``, in batches."""
    device = next(model.parameters()).device
    with evaluating(model):
        out = [model.encode_text(tokens[i : i + batch_size].to(device)).float().cpu()
               for i in range(0, len(tokens), batch_size)]
    return torch.cat(out)
