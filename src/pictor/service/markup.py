"""Markup-guided edits: an overlay's strokes say where to change (and, with a colour, what colour).

`markup` is a transparent PNG the size of the (first) image; its opaque pixels are the strokes (scribbles, circles,
arrows). It becomes a masked edit, the same path as an uploaded `mask` (the pixels outside stay the input's own):

- where: the strokes, with what they enclose filled, grown a little; where the model's scene reader finds objects,
  also every object under or inside the strokes (its whole box, so a scribble across a star changes the star, not
  just the scribbled pixels);
- what: the reader's inpainting prompt for the area (the embedded model's grammar reads the instruction; a stroke
  colour that is one of the model's named colours is the new colour when the instruction says none: "make this"
  drawn in green). Where the reader has none, the instruction goes to the model as is, with "in <colour>" added
  when the strokes give one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from pictor.engine.scene import FoundObject, SceneReader
from pictor.service.errors import InvalidRequest
from pictor.service.inputs import open_image

STROKE_ALPHA = 128  # a markup pixel at least this opaque is part of a stroke
COLOUR_MATCH = 60.0  # RGB distance within which a stroke colour is named after the palette
# Colour names for models whose reader has no palette of its own: the basic names, at common values.
BASIC_PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "orange": (245, 140, 20), "yellow": (245, 215, 30), "green": (40, 170, 60),
    "blue": (35, 90, 225), "purple": (130, 55, 190), "pink": (245, 125, 190), "brown": (130, 75, 35),
    "white": (246, 246, 246), "black": (20, 20, 20), "gray": (128, 128, 128),
}


@dataclass
class MarkupGuide:
    """What a markup overlay asks for: the editable area and the prompt the model is given for it."""

    mask: Image.Image  # L, white where the edit may change
    prompt: str
    colour: str | None  # the strokes' named colour, if any
    targets: list[str]  # the objects found under the strokes, as phrases

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "colour": self.colour, "targets": self.targets,
                "area": int((np.asarray(self.mask) > 0).sum())}


def strokes(data: bytes, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(stroke mask, RGB of the stroke pixels) of a markup file, checked as upstream does (400s otherwise)."""
    overlay = open_image(data, "markup")
    if overlay.format != "PNG":
        raise InvalidRequest("markup must be a PNG with transparency.", "markup", "invalid_markup_format")
    if overlay.size != size:
        raise InvalidRequest(f"The markup is {overlay.size[0]}x{overlay.size[1]} but the image is {size[0]}x{size[1]}; "
                             "they must be the same size.", "markup", "invalid_markup_size")
    if "A" not in overlay.getbands() and "transparency" not in overlay.info:
        raise InvalidRequest("markup must have an alpha channel (transparent where nothing is marked).", "markup",
                             "invalid_markup_format")
    rgba = np.asarray(overlay.convert("RGBA"))
    alpha = rgba[..., 3]
    if not (alpha == 0).any():
        raise InvalidRequest("markup must contain transparent pixels.", "markup", "invalid_markup_format")
    marked = alpha >= STROKE_ALPHA
    if not marked.any():
        raise InvalidRequest("markup has no strokes: draw opaque marks where the image should change.", "markup",
                             "invalid_markup_format")
    return marked, rgba[..., :3][marked].astype(np.float32)


def stroke_colour(pixels: np.ndarray, palette: dict[str, tuple[int, int, int]] | None = None) -> str | None:
    """The palette's colour name nearest the strokes' median colour, when it is near enough to be meant."""
    palette = palette or BASIC_PALETTE
    names = tuple(palette)
    values = np.array([palette[name] for name in names], dtype=np.float32)
    distances = np.linalg.norm(values - np.median(pixels, axis=0), axis=1)
    best = int(np.argmin(distances))
    return names[best] if distances[best] <= COLOUR_MATCH else None


def _touched(objects: list[FoundObject], area: np.ndarray) -> list[FoundObject]:
    """Objects whose box the marked area reaches into, or whose centre it encloses."""
    touched = []
    for obj in objects:
        x0, y0, x1, y1 = obj.box
        cx, cy = (int(min(area.shape[1] - 1, max(0, c))) for c in obj.centroid)
        if area[y0:y1, x0:x1].any() or area[cy, cx]:
            touched.append(obj)
    return touched


def guide(data: bytes, image: Image.Image, instruction: str, reader: SceneReader) -> MarkupGuide:
    """The masked edit a markup overlay and its instruction ask for."""
    marked, pixels = strokes(data, image.size)
    colour = stroke_colour(pixels, reader.palette)
    pad = max(1, round(min(image.size) / 64))
    area = ndimage.binary_fill_holes(ndimage.binary_dilation(marked, iterations=pad))
    touched = _touched(reader.read(image).objects, area)
    for obj in touched:
        x0, y0, x1, y1 = obj.box
        area[max(0, y0 - pad):y1 + pad, max(0, x0 - pad):x1 + pad] = True
    targets = [obj.describe() for obj in touched]
    prompt = reader.region_prompt(instruction, colour, touched)
    if prompt is None:
        prompt = instruction if colour is None or colour in instruction.lower() else f"{instruction}, in {colour}"
    mask = Image.fromarray((area * 255).astype(np.uint8), "L")
    return MarkupGuide(mask, prompt, colour, targets)
