"""What the scene autoencoder is taught to draw: a scene's layers, exact, from the world's own geometry.

The background layer is the renderer's background; each cell holds its object's colour and the signed
distance to its outline, measured on an 8x finer raster. These are the autoencoder's training targets
(the renderer knows the truth of every scene), never used when Pictor serves a request. The tokens are taught
too: a colour token's code is its cell's colour, a form token's its shape and size, the background's its
colours and direction (scene_codes). So the autoencoder's codebook is the world's own vocabulary, learned as a
classifier (encoder) and as tables of colours, distance templates and background fields (decoder).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch
from PIL import Image, ImageDraw
from scipy.ndimage import distance_transform_edt

from pictor.embedded.render import object_box, render_background, unit_polygon
from pictor.embedded.world import COLOURS, GRADIENT_DIRECTIONS, SHAPES, SIZE_ORDER, Scene, SceneObject

EMPTY_COLOUR = len(COLOURS)  # the colour token of a cell with no object
FORMS = len(SHAPES) * len(SIZE_ORDER)
# The generator's tokens: one per cell, its colour and form together (0 for an empty cell), then the two of the
# background. Deciding a cell in one token keeps its colour and its form from being drawn apart.
SCENE_TOKENS = 9 + 2
SCENE_CODES = 1 + len(COLOURS) * FORMS

FINE = 8  # raster samples per field pixel side when measuring distances


@cache
def distance_patch(shape: str, size: str, cell: int, clip: float) -> np.ndarray:
    """(cell, cell) signed distance in field pixels from each pixel centre to the object's edge (> 0 inside)."""
    side = cell * 3 * FINE
    obj = SceneObject(shape, "white", size, (0, 0))
    x0, y0, x1, y1 = object_box(obj, side, side)
    canvas = Image.new("L", (cell * FINE, cell * FINE), 0)
    points = [(x0 + u * (x1 - x0), y0 + v * (y1 - y0)) for u, v in unit_polygon(shape)]
    ImageDraw.Draw(canvas).polygon(points, fill=255)
    inside = np.asarray(canvas) > 127
    signed = (distance_transform_edt(inside) - distance_transform_edt(~inside)) / FINE
    # Each field pixel's value is its fine samples' mean: the distance at its centre, where the field is linear.
    pooled = signed.reshape(cell, FINE, cell, FINE).mean(axis=(1, 3))
    return np.clip(pooled, -clip, clip).astype(np.float32)


def scene_codes(scene: Scene) -> torch.Tensor:
    """(20,) the tokens the autoencoder is taught to read for a scene, in token order: each cell's colour (its
    index in COLOURS, or EMPTY_COLOUR), each cell's form (0 for none, else 1 + 3 * shape index + size index), the
    background's first colour, and its last colour with the gradient's direction (0 for plain)."""
    names = list(COLOURS)
    colours, forms = [EMPTY_COLOUR] * 9, [0] * 9
    for obj in scene.objects:
        cell = obj.cell[0] * 3 + obj.cell[1]
        colours[cell] = names.index(obj.colour)
        forms[cell] = 1 + SHAPES.index(obj.shape) * len(SIZE_ORDER) + SIZE_ORDER.index(obj.size)
    background = scene.background
    direction = 0 if background.direction is None else 1 + GRADIENT_DIRECTIONS.index(background.direction)
    last = names.index(background.colours[-1]) * (1 + len(GRADIENT_DIRECTIONS)) + direction
    return torch.tensor([*colours, *forms, names.index(background.colours[0]), last])


def scene_layers(scene: Scene, field: int, clip: float) -> dict[str, torch.Tensor]:
    """Targets for one scene: background (3, F, F) in [-1, 1], colours (3, 3, 3), present (3, 3), distance (1, F, F),
    and its tokens (see scene_codes)."""
    cell = field // 3
    background = render_background(scene.background, field, field)
    distance = np.full((field, field), -clip, dtype=np.float32)
    colours = np.zeros((3, 3, 3), dtype=np.float32)
    present = np.zeros((3, 3), dtype=np.float32)
    for obj in scene.objects:
        row, col = obj.cell
        distance[row * cell:(row + 1) * cell, col * cell:(col + 1) * cell] = distance_patch(obj.shape, obj.size,
                                                                                          cell, clip)
        colours[:, row, col] = np.array(COLOURS[obj.colour], dtype=np.float32) / 127.5 - 1
        present[row, col] = 1.0
    return {"background": torch.from_numpy(background).permute(2, 0, 1) / 127.5 - 1,
            "colours": torch.from_numpy(colours), "present": torch.from_numpy(present),
            "distance": torch.from_numpy(distance)[None], "codes": scene_codes(scene)}


def scene_tokens(codes: torch.Tensor) -> torch.Tensor:
    """(B, 20) autoencoder codes -> (B, 11) generator tokens: each cell's colour and form as one code."""
    colour, form = codes[:, :9].clamp(max=len(COLOURS) - 1), codes[:, 9:18]
    cells = torch.where(form == 0, 0, 1 + colour * FORMS + (form - 1).clamp(0, FORMS - 1))
    return torch.cat([cells, codes[:, 18:]], 1)


def autoencoder_codes(tokens: torch.Tensor) -> torch.Tensor:
    """(B, 11) generator tokens -> (B, 20) autoencoder codes (scene_tokens undone)."""
    cells = tokens[:, :9]
    empty = cells == 0
    colour = torch.where(empty, EMPTY_COLOUR, (cells - 1).clamp(min=0) // FORMS)
    form = torch.where(empty, 0, 1 + (cells - 1).clamp(min=0) % FORMS)
    return torch.cat([colour, form, tokens[:, 9:]], 1)
