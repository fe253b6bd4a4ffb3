"""Sort-of-CLEVR: coloured squares and circles on a plain canvas, for relational questions.

Santoro et al. (2017) tested their relation network on 75x75 images with six objects of six distinct
colours (red, green, blue, orange, grey, yellow), each a square or a circle, and asked questions such as
"what is the shape of the object closest to the red object?". Here the canvas is the book's 64x64 and
every scene holds ``num_objects`` (default 6) objects of distinct colours:

- each object is a square or a disc of side (diameter) 10..12 pixels, drawn in its flat colour;
- objects never overlap and keep at least :data:`GAP` pixels of background between their boxes;
- the background is one light grey level per scene (200..240) with a little grey noise (+-6), so no object
  colour can be mistaken for it;
- every shape is a circle or a square with probability 1/2, independently, as Santoro et al. drew them
  (``circles="independent"``, the default). Then "how many other objects have the same shape as the red
  object?" is almost never 0 or 5, and answer balancing (:func:`mmbook.reasoning.generate_questions`)
  asks that question less often. ``circles="per_scene"`` draws a circle probability per scene, uniform
  in ``[0, 1]``, so the number of circles is uniform on ``0..num_objects``; but then the shapes of one
  scene agree more often than chance, and "the shape of the object closest to the red one" can be
  guessed from the scene's majority shape without finding any object.

:func:`mmbook.reasoning.programs.shape_objects` gives the ground truth as :class:`~mmbook.reasoning.SceneObject` lists, for the
question programs of :mod:`mmbook.reasoning.programs`. Everything is deterministic given ``seed`` and
vectorised: 10,000 scenes take a second or two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mmbook.data.scenes import CANVAS


SHAPES = ("circle", "square")
COLOURS = ("red", "green", "blue", "orange", "grey", "yellow")
COLOUR_RGB = {"red": (230, 25, 25), "green": (30, 190, 40), "blue": (30, 60, 230), "orange": (255, 150, 0),
              "grey": (110, 110, 110), "yellow": (250, 240, 0)}
MIN_SIDE, MAX_SIDE = 10, 12
GAP = 2  # fewest background pixels between two objects' boxes
BACKGROUND = (200, 240)  # range of the per-scene background grey level
_CANDIDATES = 64  # candidate positions tried at once for one object of every scene


@dataclass
class ShapeScenes:
    """Sort-of-CLEVR scenes and their ground truth.

    Attributes:
        images: uint8 ``(N, 3, 64, 64)``.
        boxes: float ``(N, K, 4)`` ``(x1, y1, x2, y2)`` in pixels (x2, y2 exclusive) of each object's bounding square.
        shapes: int64 ``(N, K)`` indices into :data:`SHAPES`.
        colours: int64 ``(N, K)`` indices into :data:`COLOURS`, distinct within a scene.
    """

    images: torch.Tensor
    boxes: torch.Tensor
    shapes: torch.Tensor
    colours: torch.Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, index: torch.Tensor) -> "ShapeScenes":
        """The scenes at ``index`` (a long or bool tensor), as a new :class:`ShapeScenes`."""
        if index.dtype == torch.bool:
            index = torch.nonzero(index).flatten()
        return ShapeScenes(self.images[index], self.boxes[index], self.shapes[index], self.colours[index])


def _layout(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Boxes ``(n, k, 3)`` int ``(x, y, side)`` of ``k`` non-overlapping squares per scene.

    Every object of every scene gets :data:`_CANDIDATES` random positions at once and takes the first that
    keeps :data:`GAP` pixels from the objects already placed; a scene where some object finds no room is
    laid out again from scratch.
    """
    out = np.zeros((n, k, 3), dtype=np.int64)
    pending = np.arange(n)
    for _ in range(100):
        if len(pending) == 0:
            return out
        m = len(pending)
        placed = np.zeros((m, k, 3), dtype=np.int64)
        ok_scene = np.ones(m, dtype=bool)
        for j in range(k):
            side = rng.integers(MIN_SIDE, MAX_SIDE + 1, size=(m, 1))
            x = (rng.random((m, _CANDIDATES)) * (CANVAS - side + 1)).astype(np.int64)
            y = (rng.random((m, _CANDIDATES)) * (CANVAS - side + 1)).astype(np.int64)
            ok = np.ones((m, _CANDIDATES), dtype=bool)
            for p in range(j):  # separated along x or along y by at least GAP pixels
                px, py, ps = (placed[:, p, c : c + 1] for c in range(3))
                ok &= (x + side + GAP <= px) | (px + ps + GAP <= x) | (y + side + GAP <= py) | (py + ps + GAP <= y)
            first = np.argmax(ok, axis=1)
            rows = np.arange(m)
            ok_scene &= ok[rows, first]
            placed[:, j] = np.stack([x[rows, first], y[rows, first], side[:, 0]], axis=1)
        out[pending[ok_scene]] = placed[ok_scene]
        pending = pending[~ok_scene]
    raise RuntimeError(f"could not place {k} objects without overlap in {len(pending)} scenes; use fewer objects")


def _draw(rng: np.random.Generator, layout: np.ndarray, shapes: np.ndarray, colours: np.ndarray) -> torch.Tensor:
    """Canvases ``(n, 3, 64, 64)`` uint8: a light noisy background, then every object as a flat square or disc.

    Each object is drawn in its own ``MAX_SIDE x MAX_SIDE`` window: a mask of the window's pixels that the square
    (side ``s``) or the disc (diameter ``s``, pixel centres within ``s / 2`` of its centre) covers, for all scenes
    at once, then one scatter of the colour into the canvas.
    """
    n, k, _ = layout.shape
    level = rng.integers(BACKGROUND[0], BACKGROUND[1] + 1, (n, 1, 1, 1), dtype=np.int16)
    grey = (level + rng.integers(-6, 7, (n, 1, CANVAS, CANVAS), dtype=np.int16)).clip(0, 255).astype(np.uint8)
    canvas = torch.from_numpy(np.repeat(grey, 3, axis=1))
    palette = torch.tensor([COLOUR_RGB[c] for c in COLOURS], dtype=torch.uint8)  # (6, 3)
    offset = torch.arange(MAX_SIDE)
    cols, rows = offset.view(1, 1, -1), offset.view(1, -1, 1)
    geometry = torch.from_numpy(layout)
    for j in range(k):
        x, y, s = (geometry[:, j, c] for c in range(3))
        half = s.view(-1, 1, 1) / 2
        square = (cols < s.view(-1, 1, 1)) & (rows < s.view(-1, 1, 1))  # (n, MAX_SIDE, MAX_SIDE)
        disc = (cols + 0.5 - half) ** 2 + (rows + 0.5 - half) ** 2 <= half**2
        is_circle = torch.from_numpy(shapes[:, j] == SHAPES.index("circle")).view(-1, 1, 1)
        scene, dy, dx = torch.nonzero(torch.where(is_circle, disc, square), as_tuple=True)
        canvas[scene, :, y[scene] + dy, x[scene] + dx] = palette[torch.from_numpy(colours[:, j])][scene]
    return canvas


CIRCLE_DRAWS = ("independent", "per_scene")
#: Compositional conditions, in the manner of CLEVR-CoGenT (Johnson et al. 2017): in condition ``"A"`` only
#: the first three colours (red, green, blue) come as squares and the other three are always circles; in
#: ``"B"`` the roles swap. A model trained on A and tested on B meets colour-shape pairs it never saw.
CONDITIONS: dict[str, tuple[str, ...]] = {"A": COLOURS[:3], "B": COLOURS[3:]}


def make_shape_scenes(num_scenes: int, seed: int = 0, num_objects: int = 6,
                      circles: str = "independent", condition: str | None = None) -> ShapeScenes:
    """Generate ``num_scenes`` Sort-of-CLEVR scenes (see the module docstring). Deterministic given ``seed``.

    Args:
        num_scenes: how many scenes.
        seed: the seed; the same arguments always give the same scenes.
        num_objects: objects per scene, 1..6 (one per colour of :data:`COLOURS`).
        circles: ``"independent"`` (each shape a circle with probability 1/2) or ``"per_scene"`` (a circle
            probability per scene, uniform in [0, 1]); see the module docstring.
        condition: ``None`` (every colour in both shapes), or a key of :data:`CONDITIONS`: only that
            condition's colours come as squares, the others' objects are all circles (drawn as before, then
            turned into circles, so the layout and colours are those of ``condition=None``).
    """
    if not isinstance(num_scenes, int) or num_scenes <= 0:
        raise ValueError(f"num_scenes must be a positive int, got {num_scenes!r}")
    if not isinstance(num_objects, int) or not 1 <= num_objects <= len(COLOURS):
        raise ValueError(f"num_objects must be an int in 1..{len(COLOURS)} (one object per colour: "
                         f"{', '.join(COLOURS)}), got {num_objects!r}")
    if circles not in CIRCLE_DRAWS:
        raise ValueError(f"circles must be one of {', '.join(CIRCLE_DRAWS)}, got {circles!r}")
    if condition is not None and condition not in CONDITIONS:
        raise ValueError(f"condition must be None or one of {', '.join(CONDITIONS)} (colours that may be squares: "
                         + "; ".join(f"{k}: {', '.join(v)}" for k, v in CONDITIONS.items()) + f"), got {condition!r}")
    rng = np.random.default_rng(seed)
    k = num_objects
    layout = _layout(rng, num_scenes, k)
    colours = np.argsort(rng.random((num_scenes, len(COLOURS))), axis=1)[:, :k]  # distinct colours per scene
    circle_probability = rng.random((num_scenes, 1)) if circles == "per_scene" else np.full((num_scenes, 1), 0.5)
    shapes = np.where(rng.random((num_scenes, k)) < circle_probability, SHAPES.index("circle"),
                      SHAPES.index("square")).astype(np.int64)
    if condition is not None:
        may_be_square = np.isin(colours, [COLOURS.index(c) for c in CONDITIONS[condition]])
        shapes[~may_be_square] = SHAPES.index("circle")
    images = _draw(rng, layout, shapes, colours)
    boxes = np.concatenate([layout[:, :, :2], layout[:, :, :2] + layout[:, :, 2:3]], axis=2).astype(np.float32)
    return ShapeScenes(images, torch.from_numpy(boxes), torch.from_numpy(shapes),
                       torch.from_numpy(colours.astype(np.int64)))
