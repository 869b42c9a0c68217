"""Draw a scene at any resolution, anti-aliased, with each object's mask and box.

Shapes are rasterised by Pillow at a multiple of the target size and box-filtered down, which
gives exact area coverage at the edges (the anti-aliasing) for any output size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw

from pictor.embedded.world import COLOURS, SIZES, Background, Scene, SceneObject

SUPERSAMPLE = 4  # samples per pixel side; more for small images, where edges are most of the area
SUPERSAMPLED_SIDE = 256


@dataclass
class Rendering:
    image: np.ndarray  # (H, W, 3) uint8
    masks: list[np.ndarray]  # per object, (H, W) float32 coverage in [0, 1] (before occlusion)
    boxes: list[tuple[int, int, int, int]]  # per object, (x0, y0, x1, y1) in pixels, exclusive


@cache
def unit_polygon(shape: str) -> tuple[tuple[float, float], ...]:
    """The shape's outline in a unit box [0, 1]^2 (y grows downwards), filling the box."""
    if shape == "circle":
        points = [(0.5 + 0.5 * math.cos(t), 0.5 + 0.5 * math.sin(t))
                  for t in np.linspace(0, 2 * math.pi, 96, endpoint=False)]
    elif shape == "square":
        points = [(0, 0), (1, 0), (1, 1), (0, 1)]
    elif shape == "triangle":
        points = [(0.5, 0), (1, 1), (0, 1)]
    elif shape == "diamond":
        points = [(0.5, 0), (1, 0.5), (0.5, 1), (0, 0.5)]
    elif shape == "star":
        points = []
        for k in range(10):
            radius = 1.0 if k % 2 == 0 else 0.45
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((radius * math.cos(angle), radius * math.sin(angle)))
    elif shape == "heart":
        points = []
        for t in np.linspace(0, 2 * math.pi, 96, endpoint=False):
            x = 16 * math.sin(t) ** 3
            y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
            points.append((x, y))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    xs, ys = zip(*points)
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    return tuple(((x - x0) / (x1 - x0), (y - y0) / (y1 - y0)) for x, y in points)


def object_box(obj: SceneObject, width: int, height: int) -> tuple[float, float, float, float]:
    """The object's box in continuous pixel coordinates: centred in its grid cell."""
    row, col = obj.cell
    cx, cy = (col + 0.5) / 3 * width, (row + 0.5) / 3 * height
    half_w, half_h = SIZES[obj.size] * width / 2, SIZES[obj.size] * height / 2
    return cx - half_w, cy - half_h, cx + half_w, cy + half_h


def object_mask(obj: SceneObject, width: int, height: int) -> np.ndarray:
    """Anti-aliased coverage of one object, (H, W) float32 in [0, 1]."""
    s = max(SUPERSAMPLE, math.ceil(SUPERSAMPLED_SIDE / min(width, height)))
    x0, y0, x1, y1 = object_box(obj, width, height)
    # Only the pixels around the object are drawn (a whole-image canvas costs ten times as much at 128 px);
    # shifting by whole pixels leaves every sample where it was, so the coverage is the same.
    left, top = max(0, math.floor(x0) - 1), max(0, math.floor(y0) - 1)
    right, bottom = min(width, math.ceil(x1) + 1), min(height, math.ceil(y1) + 1)
    canvas = Image.new("L", ((right - left) * s, (bottom - top) * s), 0)
    draw = ImageDraw.Draw(canvas)
    points = [((x0 + u * (x1 - x0)) * s - left * s, (y0 + v * (y1 - y0)) * s - top * s)
              for u, v in unit_polygon(obj.shape)]
    draw.polygon(points, fill=255)
    # Box-filter down: the mean of s*s samples is the covered fraction of each pixel.
    local = np.asarray(canvas, dtype=np.float32).reshape(bottom - top, s, right - left, s).mean(axis=(1, 3))
    coverage = np.zeros((height, width), dtype=np.float32)
    coverage[top:bottom, left:right] = local / 255.0
    return coverage


def render_background(background: Background, width: int, height: int) -> np.ndarray:
    """(H, W, 3) float32 in [0, 255]."""
    first = np.array(COLOURS[background.colours[0]], dtype=np.float32)
    if not background.is_gradient:
        return np.broadcast_to(first, (height, width, 3)).copy()
    last = np.array(COLOURS[background.colours[1]], dtype=np.float32)
    xs = (np.arange(width, dtype=np.float32) + 0.5) / width
    ys = (np.arange(height, dtype=np.float32) + 0.5) / height
    if background.direction == "horizontal":
        t = np.broadcast_to(xs[None, :], (height, width))
    elif background.direction == "vertical":
        t = np.broadcast_to(ys[:, None], (height, width))
    else:  # diagonal, top left to bottom right
        t = (xs[None, :] + ys[:, None]) / 2
    return first * (1 - t[..., None]) + last * t[..., None]


def render(scene: Scene, width: int = 64, height: int | None = None) -> Rendering:
    height = height or width
    canvas = render_background(scene.background, width, height)
    masks, boxes = [], []
    for obj in scene.objects:
        mask = object_mask(obj, width, height)
        colour = np.array(COLOURS[obj.colour], dtype=np.float32)
        canvas = canvas * (1 - mask[..., None]) + colour * mask[..., None]
        masks.append(mask)
        x0, y0, x1, y1 = object_box(obj, width, height)
        boxes.append((int(math.floor(x0)), int(math.floor(y0)), int(math.ceil(x1)), int(math.ceil(y1))))
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return Rendering(image, masks, boxes)
