"""Grounded semantic role labelling: one BIO tag per caption word, and seqeval-style entity scores.

The text-only tagger reads the caption with two bidirectional GRU layers. The fused
tagger puts a cross-attention step between them: every word's state queries the
cells of the image feature map (multi-head attention, Vaswani et al., 2017), and
what it reads there is added to the word's state. A word like "cat" can so look
for a cat in the image and find out where it is (or that it is not there), which is
what the ``LEFT``/``RIGHT``/``ABSENT`` tags need.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from mmbook.data.scenes import TAG_PAD
from mmbook.multimodal import parse_modalities
from mmbook.objectives.backbone import SceneBackbone, coordinate_channels
from mmbook.text import PAD_ID, lengths_from_padding


class SceneTagger(nn.Module):
    """BIO tagger over caption words, text-only or fused with the image.

    Shapes::

        text      (B, T) word ids, right-padded with 0
        embedded  (B, T, E) -> BiGRU -> states (B, T, 2H)
        image+text: states += Attention(query=states, keys=values=image cells (B, S*S, 2H))
        BiGRU -> (B, T, 2H) -> Linear -> tag logits (B, T, num_tags)

    Args:
        vocab_size: caption vocabulary size.
        num_tags: number of BIO tags.
        modalities: ``"image+text"`` (read the image too, by cross-attention) or ``"text"``.
        hidden: GRU state size ``H`` per direction.
        width: backbone width.
    """

    def __init__(self, vocab_size: int, num_tags: int, modalities: str = "image+text", hidden: int = 64,
                 width: int = 32) -> None:
        super().__init__()
        names = parse_modalities(modalities)
        if "text" not in names:
            raise ValueError(f"SceneTagger tags caption words: modalities must be 'text' or 'image+text', "
                             f"got {modalities!r}")
        self.modalities = "+".join(names)
        self.reads_image = "image" in names
        self.embedding = nn.Embedding(vocab_size, 32, padding_idx=PAD_ID)
        self.encoder = nn.GRU(32, hidden, batch_first=True, bidirectional=True)
        self.decoder = nn.GRU(2 * hidden, hidden, batch_first=True, bidirectional=True)
        self.classifier = nn.Linear(2 * hidden, num_tags)
        if self.reads_image:
            self.backbone = SceneBackbone(width)
            self.project = nn.Conv2d(self.backbone.out_channels + 2, 2 * hidden, 1)
            self.attention = nn.MultiheadAttention(2 * hidden, num_heads=4, batch_first=True)
            self.norm = nn.LayerNorm(2 * hidden)

    def _run(self, gru: nn.GRU, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(inputs, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        out, _ = gru(packed)
        return nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=inputs.shape[1])[0]

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``text`` ``(B, T)`` (and ``image`` ``(B, 3, 64, 64)`` with ``"image+text"``) -> tag logits ``(B, T, num_tags)``."""
        tokens = batch["text"]
        lengths = lengths_from_padding(tokens)
        states = self._run(self.encoder, self.embedding(tokens), lengths)  # (B, T, 2H)
        if self.reads_image:
            cells = self.project(coordinate_channels(self.backbone(batch["image"])))  # (B, 2H, S, S)
            cells = cells.flatten(2).transpose(1, 2)  # (B, S*S, 2H)
            read, _ = self.attention(states, cells, cells, need_weights=False)
            states = self.norm(states + read)
        return self.classifier(self._run(self.decoder, states, lengths))


def tagging_loss(output: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Token-level cross-entropy; padding (tag ``-100``) is ignored."""
    return F.cross_entropy(output.flatten(0, 1).float(), batch["tags"].flatten(), ignore_index=TAG_PAD)


@torch.no_grad()
def tagging_accuracy(output: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """``(correct, count)`` over real (non-padding) tokens."""
    tags = batch["tags"]
    real = tags != TAG_PAD
    return ((output.argmax(dim=-1) == tags) & real).sum(), int(real.sum())


def bio_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entity spans ``(type, start, end)`` (end exclusive) of one BIO tag sequence.

    As seqeval does by default, an ``I-X`` that does not continue an ``X`` span starts a
    new span, and ``O`` ends one. Example: ``["B-LEFT", "I-LEFT", "O", "I-REL"]`` ->
    ``[("LEFT", 0, 2), ("REL", 3, 4)]``.
    """
    spans: list[tuple[str, int, int]] = []
    current: tuple[str, int] | None = None
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, kind = tag.partition("-")
        if prefix not in ("B", "I", "O") or (prefix != "O" and not kind) or (prefix == "O" and tag != "O"):
            raise ValueError(f"not a BIO tag: {tag!r}; expected 'O', 'B-TYPE' or 'I-TYPE'")
        if current is not None and (prefix != "I" or kind != current[0]):
            spans.append((current[0], current[1], i))
            current = None
        if prefix in ("B", "I") and current is None:
            current = (kind, i)
    return spans


def entity_scores(
    true_tags: Sequence[Sequence[str]], predicted_tags: Sequence[Sequence[str]], types: Sequence[str] | None = None
) -> dict[str, float]:
    """Entity-level precision, recall and F1 (micro-averaged), seqeval-style.

    A predicted entity counts only if its type, start and end all equal a true entity's.

    Args:
        true_tags, predicted_tags: one BIO tag list per sentence, of equal lengths.
        types: count only entities of these types (e.g. the image-dependent ones); default all.

    Returns:
        ``{"precision", "recall", "f1", "true_entities", "predicted_entities", "correct"}``;
        precision (recall) is 0 when nothing is predicted (nothing is true), as in seqeval.
    """
    if len(true_tags) != len(predicted_tags):
        raise ValueError(f"got {len(true_tags)} true and {len(predicted_tags)} predicted sentences")
    true_set, predicted_set = set(), set()
    for n, (truth, guess) in enumerate(zip(true_tags, predicted_tags)):
        if len(truth) != len(guess):
            raise ValueError(f"sentence {n}: {len(truth)} true tags but {len(guess)} predicted tags")
        true_set |= {(n, *span) for span in bio_spans(truth) if types is None or span[0] in types}
        predicted_set |= {(n, *span) for span in bio_spans(guess) if types is None or span[0] in types}
    correct = len(true_set & predicted_set)
    precision = correct / len(predicted_set) if predicted_set else 0.0
    recall = correct / len(true_set) if true_set else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "true_entities": len(true_set),
            "predicted_entities": len(predicted_set), "correct": correct}


def decode_tags(tag_ids: torch.Tensor, reference: torch.Tensor, tag_names: Sequence[str]) -> list[list[str]]:
    """Tag ids ``(B, T)`` -> lists of tag names, cut at the padding of ``reference`` ``(B, T)`` (the true tags)."""
    out = []
    for ids, ref in zip(tag_ids.tolist(), reference.tolist()):
        out.append([tag_names[i] for i, r in zip(ids, ref) if r != TAG_PAD])
    return out
