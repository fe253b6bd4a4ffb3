"""The two-tower model: an image tower and a text tower projected into one normalised space.

:class:`TwoTower` (CLIP's dual encoder in miniature) and its scene image tower; how the learned
temperature is kept in range (:func:`clamp_logit_scale_`, after each optimiser step, as open_clip
does) and which parameters get weight decay (:func:`contrastive_parameter_groups`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from mmbook.objectives.backbone import SceneBackbone, coordinate_channels
from mmbook.text import TextEncoder

INIT_TEMPERATURE = 0.07  # CLIP's initial temperature
MAX_SCALE = 100.0  # CLIP and open_clip keep the logit scale 1 / temperature in [1, 100]


class SceneImageTower(nn.Module):
    """Image tower for square images whose side is a multiple of 8 (the scenes: 64x64): ``(B, 3, S, S)`` -> ``(B, out_features)``.

    The objectives chapter's :class:`~mmbook.objectives.backbone.SceneBackbone` gives an ``S/8 x S/8``
    grid of features (8x8 for the scenes). Two paths read it:

    - *what*: a global max-pool over the grid, ``(B, 2w)``: a channel that detects cats fires wherever
      the cat is, so what is learned at one place serves at every place;
    - *where*: two coordinate channels are appended, a 1x1 convolution reduces the grid to 16 channels,
      and it is flattened (not pooled), so the feature keeps where things are, which captions talk about::

        backbone   (B, 2w, S/8, S/8) -> max over the grid                          (B, 2w)
                                     -> + x, y, 1x1 conv (B, 16, S/8, S/8) -> flatten -> linear + ReLU (B, 128)
        output     concatenation                                               (B, 2w + 128)

    Args:
        width: the backbone's width ``w``.
        where_features: the size of the *where* feature.
        image_size: the side ``S`` of the square input images, a multiple of 8 (default 64, the scenes).
    """

    def __init__(self, width: int = 16, where_features: int = 128, image_size: int = 64) -> None:
        super().__init__()
        if not isinstance(image_size, int) or image_size < 8 or image_size % 8:
            raise ValueError(f"image_size must be a multiple of 8 (the backbone downsamples by 8), got {image_size!r}; "
                             f"resize the images, e.g. to 64")
        self.image_size = image_size
        cells = image_size // 8
        self.backbone = SceneBackbone(width)
        self.reduce = nn.Conv2d(self.backbone.out_channels + 2, 16, 1)
        self.fc = nn.Linear(16 * cells * cells, where_features)
        self.out_features = self.backbone.out_channels + where_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` -> ``(B, out_features)``."""
        size = self.image_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size) or not images.is_floating_point():
            raise ValueError(f"expected normalised float images (B, 3, {size}, {size}), got {images.dtype} "
                             f"{tuple(images.shape)}; the tower was built with image_size={size}")
        grid = self.backbone(images)  # (B, 2w, S/8, S/8)
        what = torch.amax(grid, dim=(2, 3))  # (B, 2w)
        where = F.relu(self.fc(F.relu(self.reduce(coordinate_channels(grid))).flatten(1)))  # (B, 128)
        return torch.cat([what, where], dim=1)


class TwoTower(nn.Module):
    """A CLIP-style dual encoder: a batch dict in, normalised image and text embeddings out.

    Args:
        vocab_size: size of the caption vocabulary.
        dim: the shared embedding size ``d``.
        width: the image backbone's width.
        text_hidden: the GRU's state size (ch04's :class:`~mmbook.text.TextEncoder`).
        temperature: the initial temperature (CLIP: 0.07; SigLIP: 0.1).
        learn_temperature: learn ``log_scale`` (True) or keep the temperature fixed.
        logit_bias: ``None`` for InfoNCE; a number adds a learned bias to the logits, initialised to it,
            as SigLIP's sigmoid loss needs (SigLIP: -10, with ``temperature=0.1``).
        image_size: the side of the square input images, a multiple of 8 (default 64, the scenes).

    ``forward(batch)`` returns ``{"image": (B, d), "text": (B, d), "scale": ()}`` (and ``"bias": ()``
    with a ``logit_bias``, ``"hard_text": (B, d)`` when the batch holds ``"hard_text"`` tokens); both embeddings have unit length, and ``scale = exp(log_scale) = 1 / temperature``.
    As in open_clip, the forward pass does not clamp the scale (a clamp there would stop its gradient once
    it saturates): :func:`clamp_logit_scale_` clamps the parameter itself after every optimiser step,
    and :func:`contrastive_parameter_groups` keeps it (and every bias) out of weight decay.
    """

    def __init__(self, vocab_size: int, dim: int = 64, width: int = 16, text_hidden: int = 64,
                 temperature: float = INIT_TEMPERATURE, learn_temperature: bool = True,
                 logit_bias: float | None = None, image_size: int = 64) -> None:
        super().__init__()
        check_temperature(temperature)
        if not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        self.image_tower = SceneImageTower(width, image_size=image_size)
        self.text_tower = TextEncoder(vocab_size, kind="gru", embed_dim=32, hidden_size=text_hidden,
                                      out_features=None)
        self.image_projection = nn.Linear(self.image_tower.out_features, dim)
        self.text_projection = nn.Linear(self.text_tower.out_features, dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)), requires_grad=learn_temperature)
        self.logit_bias = None if logit_bias is None else nn.Parameter(torch.tensor(float(logit_bias)))
        self.dim = dim

    @property
    def scale(self) -> torch.Tensor:
        """``1 / temperature = exp(log_scale)`` as a 0-d tensor (kept in ``[1, 100]`` by :func:`clamp_logit_scale_`)."""
        return self.log_scale.exp()

    @property
    def temperature(self) -> float:
        """The current temperature, ``1 / scale``."""
        return float(1.0 / self.scale.detach())

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` normalised floats -> unit vectors ``(B, d)``."""
        return F.normalize(self.image_projection(self.image_tower(images)).float(), dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` right-padded token ids -> unit vectors ``(B, d)``."""
        return F.normalize(self.text_projection(self.text_tower(tokens)).float(), dim=-1)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"image": (B, 3, 64, 64), "text": (B, T)}`` -> ``{"image": (B, d), "text": (B, d), "scale": ()}``."""
        output = dict(image=self.encode_image(batch["image"]), text=self.encode_text(batch["text"]), scale=self.scale)
        if "hard_text" in batch:  # a hard negative caption per pair (NegCLIP)
            output["hard_text"] = self.encode_text(batch["hard_text"])
        if self.logit_bias is not None:
            output["bias"] = self.logit_bias
        return output


def check_temperature(temperature: float | torch.Tensor) -> None:
    """Raise a clear error unless ``temperature`` is a positive, finite number."""
    value = float(temperature.detach()) if isinstance(temperature, torch.Tensor) else float(temperature)
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"temperature must be positive and finite, got {value}; it divides the similarities "
                         f"(CLIP starts at 0.07). To learn it, learn log(1 / temperature) instead.")


@torch.no_grad()
def clamp_logit_scale_(model: nn.Module) -> None:
    """Clamp ``model.log_scale`` in place to ``[0, log 100]``: the scale ``1 / temperature`` stays in ``[1, 100]``.

    open_clip does this after every optimiser step (``logit_scale.clamp_(0, math.log(100))``). Pass it
    to :func:`mmbook.training.fit` as ``after_step``. A model without ``log_scale`` is left alone.
    """
    from mmbook.distributed import unwrap_model

    log_scale = getattr(unwrap_model(model), "log_scale", None)
    if isinstance(log_scale, torch.Tensor):
        log_scale.clamp_(0.0, math.log(MAX_SCALE))


def contrastive_parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two optimiser groups, as open_clip builds them: weight decay on weight matrices and filters only.

    Parameters with fewer than two dimensions (biases, normalisation gains, ``log_scale``, ``logit_bias``)
    get no weight decay: decaying ``log_scale`` would pull the temperature towards 1.
    """
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
