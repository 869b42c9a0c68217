"""Markup-guided edits: an overlay's strokes say where to change (and, with a colour, what colour).

`markup` is a transparent PNG the size of the (first) image; its opaque pixels are the strokes (scribbles, circles,
arrows). It becomes a masked edit, the same path as an uploaded `mask` (the pixels outside stay the input's own):

- where: the strokes, with what they enclose filled, grown a little; on a backend whose images are scenes of the
  embedded world, also every object the judge finds under or inside the strokes (its whole box, so a scribble across
  a star changes the star, not just the scribbled pixels);
- what: the instruction, read by the world's grammar; a stroke colour that is one of the world's named colours is
  the new colour when the instruction says none ("make this" drawn in green). For other backends the instruction
  goes to the model as is, with "in <colour>" added when the strokes give one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from pictor.embedded.grammar import EditSpec, ObjectSpec, SceneSpec, parse_instruction, parse_prompt
from pictor.embedded.judge import DetectedObject, detect
from pictor.embedded.world import CELL_NAMES, COLOURS
from pictor.service.errors import InvalidRequest
from pictor.service.inputs import open_image

STROKE_ALPHA = 128  # a markup pixel at least this opaque is part of a stroke
COLOUR_MATCH = 60.0  # RGB distance within which a stroke colour is named after the world's palette
_NAMES = tuple(COLOURS)
_VALUES = np.array([COLOURS[c] for c in _NAMES], dtype=np.float32)


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


def stroke_colour(pixels: np.ndarray) -> str | None:
    """The world's colour name nearest the strokes' median colour, when it is near enough to be meant."""
    median = np.median(pixels, axis=0)
    distances = np.linalg.norm(_VALUES - median, axis=1)
    best = int(np.argmin(distances))
    return _NAMES[best] if distances[best] <= COLOUR_MATCH else None


def _phrase(shape: str, colour: str | None, size: str | None = None) -> str:
    return "a " + " ".join(w for w in (size, colour, shape) if w)


def _touched(objects: list[DetectedObject], area: np.ndarray) -> list[DetectedObject]:
    """Objects whose box the marked area reaches into, or whose centre it encloses."""
    touched = []
    for obj in objects:
        x0, y0, x1, y1 = obj.box
        cx, cy = (int(min(area.shape[1] - 1, max(0, c))) for c in obj.centroid)
        if area[y0:y1, x0:x1].any() or area[cy, cx]:
            touched.append(obj)
    return touched


def _world_prompt(instruction: str, colour: str | None, touched: list[DetectedObject]) -> str:
    """The inpainting prompt for the marked area: the object there, changed as the instruction (or colour) says."""
    target = touched[0] if touched else None
    edit = parse_instruction(instruction).spec
    if isinstance(edit, EditSpec):
        if edit.kind == "remove":
            return ""  # the model fills the area with background
        if edit.kind == "add" and edit.new_object is not None:
            new = edit.new_object
            return _phrase(new.shape, new.colour or colour, new.size)
        if edit.kind == "recolour" and target is not None:
            return _phrase(target.shape, edit.colour or colour, target.size)
        if edit.kind == "resize" and target is not None:
            return _phrase(target.shape, target.colour, edit.size)
    described = parse_prompt(instruction).spec
    if isinstance(described, SceneSpec) and described.objects:
        spec: ObjectSpec = described.objects[0]
        return _phrase(spec.shape, spec.colour or colour or (target.colour if target else None), spec.size)
    if target is not None:  # "change this" drawn in a colour: the object under the strokes, in that colour
        return _phrase(target.shape, colour or target.colour, target.size)
    return instruction


def guide(data: bytes, image: Image.Image, instruction: str, world_scenes: bool) -> MarkupGuide:
    """The masked edit a markup overlay and its instruction ask for."""
    marked, pixels = strokes(data, image.size)
    colour = stroke_colour(pixels)
    pad = max(1, round(min(image.size) / 64))
    area = ndimage.binary_fill_holes(ndimage.binary_dilation(marked, iterations=pad))
    targets: list[str] = []
    if world_scenes:
        touched = _touched(detect(np.asarray(image.convert("RGB"))).objects, area)
        for obj in touched:
            x0, y0, x1, y1 = obj.box
            area[max(0, y0 - pad):y1 + pad, max(0, x0 - pad):x1 + pad] = True
            targets.append(f"{_phrase(obj.shape, obj.colour, obj.size)} in the {CELL_NAMES[obj.cell]}")
        prompt = _world_prompt(instruction, colour, touched)
    else:
        prompt = instruction if colour is None or colour in instruction.lower() else f"{instruction}, in {colour}"
    mask = Image.fromarray((area * 255).astype(np.uint8), "L")
    return MarkupGuide(mask, prompt, colour, targets)
