"""``MultimodalModel(encoders, fusion, head)``: the shape of every model in the book.

A batch is a dict of tensors keyed by modality name, e.g.::

    {"image": (B, 3, 32, 32) float, "text": (B, T) int64, "label": (B,) int64}

Each encoder reads its own modality and returns features ``(B, D_m)``; the fusion
turns the list of features into one tensor; the head maps it to logits.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from mmbook.cnn import ImageRegionEncoder, LeNet
from mmbook.fusion import FUSIONS, build_fusion
from mmbook.text import TextEncoder, TokenEncoder

MODALITIES = ("image", "text")


class ClassifierHead(nn.Module):
    """A small MLP from fused features to raw class logits (as ``nn.CrossEntropyLoss`` expects).

    ``(B, in_features) -> Linear -> ReLU -> Linear -> (B, num_classes)``.
    """

    def __init__(self, in_features: int, num_classes: int = 10, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        """``(B, in_features)`` -> ``(B, num_classes)`` logits."""
        return self.net(fused)


class MultimodalModel(nn.Module):
    """Encoders, then a fusion, then a head.

    Args:
        encoders: modality name -> encoder module; each maps ``batch[name]`` to ``(B, D)``.
            One encoder gives a unimodal model through the same code path.
        fusion: maps the list of encoder outputs (in ``encoders`` order) to ``(B, F)``.
        head: maps ``(B, F)`` to logits ``(B, C)``.

    Two rules tie the parts together, and are checked here:

    * a fusion with ``produces_logits = True`` (late fusion) already returns class logits, so its
      head must be ``nn.Identity()``;
    * a fusion with ``needs_sequences = True`` (cross-attention) attends over regions and tokens,
      so every encoder must return a sequence ``(B, L, D)`` and say so with ``returns_sequences = True``
      (as :class:`~mmbook.cnn.ImageRegionEncoder` and :class:`~mmbook.text.TokenEncoder` do); other
      fusions take one vector per modality, from encoders without that attribute.
    """

    def __init__(self, encoders: Mapping[str, nn.Module], fusion: nn.Module, head: nn.Module) -> None:
        super().__init__()
        if not encoders:
            raise ValueError("MultimodalModel needs at least one encoder")
        fusion_name = type(fusion).__name__
        if getattr(fusion, "produces_logits", False) and not isinstance(head, nn.Identity):
            raise ValueError(f"{fusion_name} returns class logits itself (produces_logits); build the model with "
                             f"head=nn.Identity() instead of {type(head).__name__}")
        needs_sequences = bool(getattr(fusion, "needs_sequences", False))
        mismatched = [name for name, encoder in encoders.items()
                      if bool(getattr(encoder, "returns_sequences", False)) != needs_sequences]
        if mismatched and needs_sequences:
            raise ValueError(f"{fusion_name} attends over sequences (needs_sequences), but the encoders for "
                             f"{mismatched} return one vector per sample; use sequence encoders such as "
                             f"mmbook.cnn.ImageRegionEncoder and mmbook.text.TokenEncoder (returns_sequences = True)")
        if mismatched:
            raise ValueError(f"the encoders for {mismatched} return sequences (B, L, D), but {fusion_name} takes one "
                             f"vector (B, D) per modality; use a sequence fusion such as cross_attention, or vector "
                             f"encoders such as LeNet and TextEncoder")
        self.encoders = nn.ModuleDict(dict(encoders))
        self.fusion = fusion
        self.head = head

    @property
    def modalities(self) -> list[str]:
        """The modality names this model reads, in order."""
        return list(self.encoders.keys())

    def encode(self, batch: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        """Run each encoder on its modality: a list of ``(B, D_m)`` features.

        Raises:
            KeyError: the batch lacks a modality the model reads.
            ValueError: an image encoder built for ``image_size`` S gets images ``(B, C, H, W)`` with
                ``(H, W) != (S, S)``; the message names ``image_size``.
        """
        missing = [name for name in self.encoders if name not in batch]
        if missing:
            raise KeyError(f"the batch has no {missing} entry; this model reads {self.modalities}, the batch has {sorted(batch)}")
        for name, encoder in self.encoders.items():
            size, images = getattr(encoder, "image_size", None), batch[name]
            if (isinstance(size, int) and isinstance(images, torch.Tensor) and images.ndim == 4
                    and tuple(images.shape[2:]) != (size, size)):
                raise ValueError(f"the {name} encoder was built for {size}x{size} images (image_size={size}), but the "
                                 f"batch's {name!r} holds {images.shape[2]}x{images.shape[3]} images; build the model "
                                 f"with image_size={images.shape[3]}, e.g. image_text_model(..., "
                                 f"image_size=data.image_size) for data from mmbook.data.load_pairs")
        return [encoder(batch[name]) for name, encoder in self.encoders.items()]

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Batch dict -> ``(B, C)`` logits."""
        return self.head(self.fusion(self.encode(batch)))


def parse_modalities(spec: str | Sequence[str]) -> list[str]:
    """``"image+text"`` -> ``["image", "text"]``, checking each name."""
    names = spec.split("+") if isinstance(spec, str) else list(spec)
    unknown = [name for name in names if name not in MODALITIES]
    if not names or unknown or len(set(names)) != len(names):
        raise ValueError(f"modalities must be 'image', 'text' or 'image+text', got {spec!r}")
    return [name for name in MODALITIES if name in names]


def fusion_option_names(fusion: str) -> list[str]:
    """The options (keyword arguments) that the fusion called ``fusion`` accepts, e.g. ``["hidden", "normalize"]``.

    The feature sizes, and a late fusion's ``num_classes``, are set by the model builder, not by options.

    Raises:
        ValueError: an unknown fusion name.
    """
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; expected one of {sorted(FUSIONS)}")
    parameters = list(inspect.signature(FUSIONS[fusion].__init__).parameters.values())[2:]  # self, in_features
    return [p.name for p in parameters if p.name != "num_classes"
            and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]


def check_fusion_options(fusion: str, options: Mapping[str, object] | None) -> dict[str, object]:
    """``options`` as a dict, checked against :func:`fusion_option_names`.

    Raises:
        ValueError: an option the fusion does not accept; the message lists the ones it does.
    """
    options = dict(options or {})
    accepted = fusion_option_names(fusion)
    unknown = sorted(name for name in options if name not in accepted)
    if unknown:
        takes = f"accepts {', '.join(accepted)}" if accepted else "accepts no options"
        raise ValueError(f"fusion {fusion!r} has no option {', '.join(map(repr, unknown))}; it {takes}")
    return options


def fusion_options_with_defaults(fusion: str, options: Mapping[str, object] | None) -> dict[str, object]:
    """Every option of the fusion called ``fusion``: ``options`` (checked), the rest at their defaults.

    ``{}`` and ``{"normalize": True}`` build the same GMU, and give the same dict here
    (``{"hidden": 32, "normalize": True}``): the settings a checkpoint records, so that a run resumes whether its
    options were spelled out or left at their defaults.
    """
    chosen = check_fusion_options(fusion, options)
    parameters = inspect.signature(FUSIONS[fusion].__init__).parameters
    return {name: chosen.get(name, parameters[name].default) for name in fusion_option_names(fusion)
            if name in chosen or parameters[name].default is not inspect.Parameter.empty}


def image_text_model(
    modalities: str | Sequence[str],
    vocab_size: int,
    *,
    num_classes: int,
    fusion: str = "concat",
    text_encoder: str = "rnn",
    feature_size: int = 32,
    image_size: int = 32,
    fusion_options: Mapping[str, object] | None = None,
) -> MultimodalModel:
    """An image+text classifier: LeNet for images, a text encoder for texts, a fusion, a head.

    Args:
        modalities: ``"image"``, ``"text"`` or ``"image+text"``.
        vocab_size: size of the text vocabulary.
        num_classes: number of classes (required: e.g. ``len(data.label_vocab)`` from
            :func:`mmbook.data.load_pairs`).
        fusion: fusion name (see :data:`mmbook.fusion.FUSIONS`). ``cross_attention`` uses
            region and token encoders (:class:`~mmbook.cnn.ImageRegionEncoder`,
            :class:`~mmbook.text.TokenEncoder`); late fusions get no head. Two-stage fusion is
            trained by its recipe, :func:`mmbook.recipes.train_two_stage`.
        text_encoder: kind of the text branch (``rnn``, ``lstm``, ``gru`` or ``transformer``;
            see :data:`mmbook.text.TEXT_ENCODER_KINDS`).
        feature_size: the output size of each vector branch.
        image_size: side ``S`` of the square images ``(B, 3, S, S)`` (see :class:`~mmbook.cnn.LeNet`);
            default 32, CIFAR-10's. For data from :func:`mmbook.data.load_pairs` pass
            ``data.image_size``; a batch of another size is an error that names this argument.
        fusion_options: keyword arguments of the fusion class, e.g. ``{"hidden": 64}`` or, for
            the GMU, ``{"normalize": False}`` (:func:`fusion_option_names` lists a fusion's; an
            unknown one is a ``ValueError``).

    Returns:
        A :class:`MultimodalModel` mapping a batch dict to ``(B, num_classes)`` logits.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int (the number of classes), got {num_classes!r}")
    names = parse_modalities(modalities)
    fusion_options = check_fusion_options(fusion, fusion_options)
    if getattr(FUSIONS.get(fusion), "needs_sequences", False):
        # Cross-attention reads region and token features (B, L, D), not one vector per modality.
        if names != list(MODALITIES):
            raise ValueError(f"fusion {fusion!r} needs both modalities ('image+text'), got {'+'.join(names)!r}")
        encoders = {"image": ImageRegionEncoder(out_features=16, image_size=image_size),
                    "text": TokenEncoder(vocab_size, kind=text_encoder, out_features=16)}
    else:
        encoders = {name: LeNet(out_features=feature_size, image_size=image_size) if name == "image"
                    else TextEncoder(vocab_size, kind=text_encoder, out_features=feature_size) for name in names}
    sizes = [encoder.out_features for encoder in encoders.values()]
    fusion_module = build_fusion(fusion, sizes, num_classes=num_classes, **fusion_options)
    # A late fusion already returns class logits: no head after it.
    head = nn.Identity() if getattr(fusion_module, "produces_logits", False) else ClassifierHead(fusion_module.out_features, num_classes)
    return MultimodalModel(encoders, fusion_module, head)


def captioned_cifar_model(modalities: str | Sequence[str], vocab_size: int, fusion: str = "concat",
                          text_encoder: str = "rnn") -> MultimodalModel:
    """The worked example's model: :func:`image_text_model` for 32x32 CIFAR-10 images, 10 classes, branches of 10."""
    return image_text_model(modalities, vocab_size, num_classes=10, fusion=fusion, text_encoder=text_encoder,
                            feature_size=10)
