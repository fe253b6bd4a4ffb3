"""Phrase grounding: find the box of the object that a referring expression names.

The fused model encodes the expression with a GRU and uses it to modulate the image
feature map with FiLM (Perez et al., 2018): every channel ``c`` of every cell becomes
``gamma_c(text) * feature_c + beta_c(text)``. A small convolutional head then scores
every cell ("is the named object centred here?") and predicts a box for it, as the
grid detector does. The prediction is the box of the best-scoring cell.

Two baselines share the interface:

- ``modalities="image"``: no text (FiLM is skipped). It can find objects but cannot know
  which one is meant, so with ``k`` objects it is right about ``1/k`` of the time.
- ``modalities="text"``: no image. A linear layer maps the expression to cell scores and
  boxes; it learns where objects tend to be ("the leftmost object" is on the left),
  but it cannot see them.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import box_iou, generalized_box_iou_loss

from mmbook.multimodal import parse_modalities
from mmbook.objectives.backbone import SceneBackbone, coordinate_channels
from mmbook.objectives.detection import centre_cells, decode_boxes
from mmbook.text import TextEncoder


class FiLM(nn.Module):
    """Feature-wise linear modulation: ``(B, C, S, S)`` features, ``(B, D)`` condition -> ``(B, C, S, S)``."""

    def __init__(self, condition_features: int, channels: int) -> None:
        super().__init__()
        self.to_gamma_beta = nn.Linear(condition_features, 2 * channels)

    def forward(self, features: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.to_gamma_beta(condition).chunk(2, dim=1)  # (B, C) each
        # 1 + gamma: at initialisation (gamma ~ 0) FiLM is close to the identity.
        return (1 + gamma)[:, :, None, None] * features + beta[:, :, None, None]


class GroundingModel(nn.Module):
    """Referring-expression grounding: batch dict -> ``(B, 5, S, S)`` (cell score, 4 box channels).

    Args:
        vocab_size: size of the expression vocabulary.
        modalities: ``"image+text"`` (fused with FiLM), ``"image"`` or ``"text"``.
        width: backbone width.
        grid: grid size ``S`` (8 for 64x64 scenes).
    """

    def __init__(self, vocab_size: int, modalities: str = "image+text", width: int = 32, grid: int = 8) -> None:
        super().__init__()
        names = parse_modalities(modalities)
        self.modalities, self.grid = "+".join(names), grid
        if "text" in names:
            self.text = TextEncoder(vocab_size, kind="gru", embed_dim=32, hidden_size=64, out_features=None)
        if "image" in names:
            self.backbone = SceneBackbone(width)
            channels = self.backbone.out_channels
            if "text" in names:
                self.film = FiLM(self.text.out_features, channels)
            self.head = nn.Sequential(nn.Conv2d(channels + 2, channels, 3, padding=1), nn.ReLU(inplace=True),
                                      nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
                                      nn.Conv2d(channels, 5, 1))
        else:
            self.text_head = nn.Linear(self.text.out_features, 5 * grid * grid)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``image`` ``(B, 3, 64, 64)`` and/or ``expression`` ``(B, T)`` -> ``(B, 5, S, S)``."""
        if self.modalities == "text":
            encoded = self.text(batch["expression"])
            return self.text_head(encoded).view(-1, 5, self.grid, self.grid)
        features = self.backbone(batch["image"])
        if self.modalities == "image+text":
            features = F.relu(self.film(features, self.text(batch["expression"])))
        return self.head(coordinate_channels(features))


def grounding_boxes(output: torch.Tensor) -> torch.Tensor:
    """The predicted box ``(B, 4)``: the box of the highest-scoring cell of ``(B, 5, S, S)``."""
    boxes = decode_boxes(output[:, 1:5].float()).flatten(1, 2)  # (B, S*S, 4)
    best = output[:, 0].flatten(1).argmax(dim=1)
    return boxes[torch.arange(len(best), device=boxes.device), best]


def grounding_loss(output: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy over cells (the target's centre cell is the class) + GIoU and L1 loss on that cell's box."""
    size = output.shape[-1]
    target_box = batch["target_box"].float()
    rows, cols = centre_cells(target_box, size)
    cell_loss = F.cross_entropy(output[:, 0].flatten(1).float(), rows * size + cols)
    boxes = decode_boxes(output[:, 1:5].float())  # (B, S, S, 4)
    predicted = boxes[torch.arange(len(rows), device=boxes.device), rows, cols]
    box_loss = generalized_box_iou_loss(predicted, target_box, reduction="mean") + F.l1_loss(predicted, target_box) / 8
    return cell_loss + box_loss


@torch.no_grad()
def grounding_accuracy(output: torch.Tensor, batch: Mapping[str, torch.Tensor], iou_threshold: float = 0.5) -> tuple[torch.Tensor, int]:
    """``(correct, count)``: predictions whose IoU with the target box is at least ``iou_threshold``."""
    iou = box_iou(grounding_boxes(output), batch["target_box"].float()).diagonal()
    return (iou >= iou_threshold).sum(), int(iou.shape[0])
