"""Neuro-symbolic question answering in miniature: parse the image into a scene, then run the question's program.

NS-VQA (Yi et al. 2018) splits visual question answering in two: a network that *sees* (it turns the image into
a table of objects and their attributes, a scene graph) and a program executor that *reasons* (it runs the
question's program on that table). Reasoning is then exact by construction; every error comes from seeing.

On Sort-of-CLEVR (:mod:`mmbook.data.shapes`) with six objects, every scene holds one object of each colour, so
the parser only has to say, for each colour, the object's shape and where its centre is::

    image (B, 3, 64, 64) -> CNN -> (B, width + 2, 16, 16) -> per colour: a score map and shape logits per cell
          -> centre = soft-argmax of the score map (B, 6, 2), shape = logits averaged under it (B, 6, 2)

:func:`parsed_objects` turns that output into :class:`~mmbook.reasoning.programs.SceneObject` lists, the form
:func:`~mmbook.reasoning.programs.execute` reads, and :func:`program_answers` runs every question's program on
the parsed scene it asks about.

On the book's CIFAR-10 scenes (:mod:`mmbook.data.scenes`) the Objectives chapter's detector does the seeing:
:func:`detect_scenes` turns its detections above a score threshold into the same :class:`SceneObject` lists
(class, kind, size, place and row of each detected box), on which the programs run unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from mmbook.data.scenes import CANVAS
from mmbook.data.shapes import COLOURS, SHAPES, ShapeScenes
from mmbook.reasoning.batches import pixels
from mmbook.reasoning.models import conv_block, with_coordinates
from mmbook.reasoning.programs import (ProgramError, QuestionSet, SceneObject, cifar_object, execute,
                                      object_attributes)

#: The side (pixels) given to every parsed object's box: the middle of the shapes' 10..12.
PARSED_SIDE = 11.0


class ShapeSceneParser(nn.Module):
    """Sees a Sort-of-CLEVR scene: ``batch["image"]`` ``(B, 3, 64, 64)`` -> ``{"shape": (B, 6, 2)`` logits over
    :data:`~mmbook.data.shapes.SHAPES` per colour, ``"centre": (B, 6, 2)`` each colour's object's ``(x, y)``
    centre as a fraction of the canvas ``}``; colours in the order of :data:`~mmbook.data.shapes.COLOURS`.

    Four 3x3 convolutions (strides 2, 1, 2, 1) keep a 16x16 grid of features, with the coordinates appended. A
    1x1 convolution gives, for every colour, a score map (where is that colour's object?) and shape logits at
    every cell. The centre is the score map's soft-argmax (the expected cell centre under its softmax), and the
    shape logits are averaged under the same weights.
    """

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_block(3, width, 2), conv_block(width, width, 1), conv_block(width, width, 2),
                                  conv_block(width, width, 1))
        self.head = nn.Conv2d(width + 2, len(COLOURS) * (1 + len(SHAPES)), 1)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        maps = self.head(with_coordinates(self.body(pixels(batch["image"]))))  # (B, 6 * 3, G, G)
        b, _, g, _ = maps.shape
        maps = maps.view(b, len(COLOURS), 1 + len(SHAPES), g * g)
        where = maps[:, :, 0].float().softmax(dim=-1)  # (B, 6, G*G)
        cells = (torch.arange(g, device=maps.device, dtype=torch.float32) + 0.5) / g
        ys, xs = torch.meshgrid(cells, cells, indexing="ij")
        grid = torch.stack([xs.flatten(), ys.flatten()], dim=-1)  # (G*G, 2) cell centres (x, y) in [0, 1]
        centre = where @ grid  # (B, 6, 2)
        shape = (maps[:, :, 1:].float() * where.unsqueeze(2)).sum(dim=-1)  # (B, 6, 2)
        return {"shape": shape, "centre": centre}


def parser_targets(scenes: ShapeScenes) -> dict[str, torch.Tensor]:
    """What the parser learns from, per colour: ``{"image": (N, 3, 64, 64) uint8, "shape": (N, 6)`` shape ids,
    ``"centre": (N, 6, 2)`` centres as fractions of the canvas ``}``.

    Raises:
        ValueError: when a scene does not hold one object of every colour (the parser answers per colour).
    """
    n, k = scenes.colours.shape
    if k != len(COLOURS) or not bool((scenes.colours.sort(dim=1).values == torch.arange(k)).all()):
        raise ValueError(f"the parser needs scenes with one object of each of the {len(COLOURS)} colours "
                         f"(make_shape_scenes(..., num_objects={len(COLOURS)})), got {k} objects per scene")
    order = scenes.colours.argsort(dim=1)  # object index of colour 0, 1, ...
    shapes = scenes.shapes.gather(1, order)
    boxes = scenes.boxes.gather(1, order.unsqueeze(-1).expand(-1, -1, 4))
    centres = torch.stack([(boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2], dim=-1)
    return {"image": scenes.images, "shape": shapes, "centre": centres / CANVAS}


def parser_loss(output: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of the shapes plus 10 x the squared error of the centres (fractions of the canvas)."""
    shape = F.cross_entropy(output["shape"].float().reshape(-1, len(SHAPES)), batch["shape"].reshape(-1))
    return shape + 10 * F.mse_loss(output["centre"].float(), batch["centre"].float())


def parser_shape_accuracy(output: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
                          ) -> tuple[torch.Tensor, int]:
    """``(correct, counted)`` shapes over every object of the batch."""
    return (output["shape"].argmax(dim=-1) == batch["shape"]).sum(), batch["shape"].numel()


def parsed_objects(output: Mapping[str, torch.Tensor]) -> list[list[SceneObject]]:
    """The parser's ``output`` (see :class:`ShapeSceneParser`) as one :class:`SceneObject` list per scene: for
    each colour, a box of side :data:`PARSED_SIDE` around the predicted centre and the predicted shape."""
    shapes = output["shape"].argmax(dim=-1).tolist()
    centres = (output["centre"].detach().float().clamp(0, 1) * CANVAS).tolist()
    half = PARSED_SIDE / 2
    scenes = []
    for scene_shapes, scene_centres in zip(shapes, centres):
        objects = []
        for colour, (shape, (x, y)) in enumerate(zip(scene_shapes, scene_centres)):
            box = (x - half, y - half, x + half, y + half)
            objects.append(SceneObject(box, {"shape": SHAPES[shape], "colour": COLOURS[colour],
                                             **object_attributes(box)}))
        scenes.append(objects)
    return scenes


@torch.no_grad()
def parse_scenes(parser: nn.Module, images: torch.Tensor, batch_size: int = 500) -> list[list[SceneObject]]:
    """Parse uint8 images ``(N, 3, 64, 64)`` into :class:`SceneObject` lists, ``batch_size`` at a time."""
    parser.eval()
    device = next(parser.parameters()).device
    scenes: list[list[SceneObject]] = []
    for start in range(0, len(images), batch_size):
        scenes += parsed_objects(parser({"image": images[start : start + batch_size].to(device)}))
    return scenes


def detected_objects(detections: Sequence[Mapping[str, torch.Tensor]], score_threshold: float = 0.5
                     ) -> list[list[SceneObject]]:
    """Detections of CIFAR-10 scenes, one dict per image with ``boxes`` ``(K, 4)``, ``scores`` ``(K,)`` and
    ``labels`` ``(K,)`` (as :func:`mmbook.objectives.decode_detections` returns them), as one :class:`SceneObject`
    list per scene: every detection scoring at least ``score_threshold``, with its box, class, kind, size, place
    and row (:func:`~mmbook.reasoning.programs.object_attributes`), the attributes of
    :func:`~mmbook.reasoning.programs.scene_objects`.

    Raises:
        ValueError: for a threshold outside ``[0, 1]`` or a label that is not a CIFAR-10 class.
    """
    from mmbook.data.cifar10 import CIFAR10_CLASSES

    if not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"score_threshold must be in [0, 1] (a detection score), got {score_threshold}")
    scenes = []
    for detection in detections:
        keep = detection["scores"] >= score_threshold
        objects = []
        for box, label in zip(detection["boxes"][keep].tolist(), detection["labels"][keep].tolist()):
            if not 0 <= label < len(CIFAR10_CLASSES):
                raise ValueError(f"detection label {label} is not a CIFAR-10 class (0..{len(CIFAR10_CLASSES) - 1}); "
                                 "pass the detections of the Objectives chapter's scene detector")
            objects.append(cifar_object(box, label))
        scenes.append(objects)
    return scenes


@torch.no_grad()
def detect_scenes(detector: nn.Module, images: torch.Tensor, score_threshold: float = 0.5,
                  batch_size: int = 500) -> list[list[SceneObject]]:
    """Run the Objectives chapter's scene detector on uint8 CIFAR-10 scenes ``(N, 3, 64, 64)`` (normalised with
    CIFAR-10's statistics, as it was trained) and return :func:`detected_objects` of its detections."""
    from mmbook.data.loaders import normalize_images
    from mmbook.objectives import decode_detections
    from mmbook.runtime import evaluating

    if images.ndim != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 scenes (N, 3, H, W), got {images.dtype} of shape {tuple(images.shape)}")
    device = next(detector.parameters()).device
    detections: list[dict[str, torch.Tensor]] = []
    with evaluating(detector):
        for start in range(0, len(images), batch_size):
            output = detector({"image": normalize_images(images[start : start + batch_size].to(device))})
            detections += [{key: value.cpu() for key, value in found.items()} for found in decode_detections(output)]
    return detected_objects(detections, score_threshold)


def program_answers(questions: QuestionSet, scenes: Sequence[Sequence[SceneObject]]) -> list[str | None]:
    """Run each question's program on the (parsed) scene it asks about. A program that cannot run on that scene
    (say the parsed objects make "the object closest to the red one" ambiguous) gives ``None``, a wrong answer."""
    if len(questions) and int(questions.scene_index.max()) >= len(scenes):
        raise ValueError(f"the questions ask about scene {int(questions.scene_index.max())}, but only {len(scenes)} "
                         "scenes were given; parse the scenes the questions were generated on")
    answers: list[str | None] = []
    for scene, program in zip(questions.scene_index.tolist(), questions.programs):
        try:
            answers.append(execute(program, scenes[scene]))
        except ProgramError:
            answers.append(None)
    return answers


def program_accuracy(questions: QuestionSet, scenes: Sequence[Sequence[SceneObject]], answer_vocab
                     ) -> dict[str, float]:
    """Accuracy per family, relational, non-relational and overall (:func:`~mmbook.reasoning.recipe.accuracy_by_family`)
    of the :func:`program_answers` on ``scenes``, and ``"unrunnable"``: the share of the questions whose program
    cannot run on its scene (a ``unique`` that finds no object or several, an object the scene lacks). Such a
    question, or an answer outside ``answer_vocab`` (say a count of 5 detected objects where no scene holds more
    than 4), is wrong."""
    from mmbook.reasoning.recipe import accuracy_by_family

    answers = program_answers(questions, scenes)
    predicted = torch.tensor([answer_vocab.encode(a) if a is not None and a in answer_vocab else -1 for a in answers])
    report = accuracy_by_family(predicted, questions.answer_ids(answer_vocab), questions)
    report["unrunnable"] = sum(answer is None for answer in answers) / len(answers)
    return report


def train_scene_parser(scenes: ShapeScenes, *, epochs: int = 8, batch_size: int = 64, lr: float = 5e-3,
                       width: int = 32, seed: int = 0, device: torch.device | str | None = None,
                       progress: bool = True) -> tuple[ShapeSceneParser, object]:
    """Train a :class:`ShapeSceneParser` on the ground truth of ``scenes`` (no questions) with
    :func:`mmbook.training.fit`; returns ``(parser, history)``. History's accuracy is the shape accuracy."""
    from mmbook.data import DeviceLoader
    from mmbook.runtime import pick_device, seed_everything
    from mmbook.training import fit

    device = pick_device(device)
    targets = parser_targets(scenes)
    seed_everything(seed)
    parser = ShapeSceneParser(width)
    loader = DeviceLoader(targets, batch_size, shuffle=True, drop_last=len(scenes) > batch_size, device=device,
                          seed=seed, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    history = fit(parser, loader, epochs=epochs, lr=lr, weight_decay=1e-4, device=device, loss_fn=parser_loss,
                  accuracy_fn=parser_shape_accuracy, progress=progress, description="scene parser")
    return parser, history
