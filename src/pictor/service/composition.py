"""Composition from a reference image: "put this logo on the blue square", "place image 2 in the top left".

The service, not the model, does the placing, so it works with every backend that can inpaint:
1. the target region: an explicit mask (its bounding box), an explicit box ("at 10,10,60,60"), an object named by
   its colour / name / size words (read and found by the model's scene reader, where it has one), or a cell of the
   3x3 grid named by a position word ("top left");
2. the reference, scaled to fit that region's box with its aspect kept, centred, pasted onto the current image
   (its own alpha respected);
3. a thin ring across the pasted edge, handed to the model as the inpaint mask: the seams are remade by masked
   denoising, the reference's interior and everything away from it stay as they are.

Backends with native multi-image conditioning (none yet) would get the reference itself instead: the hook is
`ImageService._compose`, which could hand `plan.sources[1:]` straight to such a backend and skip the pasting.

A text is a composition when it says "put / place ... on / in / at ..." and the thing placed is not something the
model draws from words alone ("put a red star in the top left" is an ordinary edit on a model that draws stars;
"put the star logo in the top left" places the reference).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from pictor.engine.scene import CELL_NAMES, NO_UNDERSTANDING, FoundObject, ObjectQuery, SceneReader
from pictor.service.errors import InvalidRequest
from pictor.service.positions import cell_named

# "put / place / paste ... on / in / at ...": the thing placed comes before the preposition, the target after.
_COMPOSE = re.compile(r"^\W*(?:(?:please|now|then|and|ok|okay)\s+)*(?P<verb>put|place|paste|insert|overlay|stick|"
                      r"drop|add|position|set)\s+(?P<what>.+?)\s+(?P<prep>onto|on\s+top\s+of|on|into|inside|in|"
                      r"over|at|to)\s+(?P<where>.+)$", re.I | re.S)
_BOX = re.compile(r"(\d{1,5})\s*,\s*(\d{1,5})\s*,\s*(\d{1,5})\s*,\s*(\d{1,5})")
CELL_MARGIN = 0.08  # of a cell's side, kept free around a reference placed in a cell


@dataclass(frozen=True)
class Target:
    kind: str  # object / cell / box / mask
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1), exclusive
    label: str  # what was found: "blue square (medium, center)", "top left", ...

    def to_dict(self) -> dict:
        return {"kind": self.kind, "box": list(self.box), "label": self.label}


@dataclass
class Composition:
    canvas: Image.Image  # the current image with the reference pasted in
    ring: Image.Image  # L, white where the model remakes the seams
    target: Target
    placed: tuple[int, int, int, int]  # where the reference went

    def to_dict(self) -> dict:
        return {"target": self.target.to_dict(), "placed_box": list(self.placed)}


def composition_phrase(text: str, reader: SceneReader = NO_UNDERSTANDING) -> tuple[str, str] | None:
    """(what is placed, where) when the text asks to place an image, else None.

    A thing placed that the model draws from words alone ("put a red star in the top left", "place the circle on
    the right", on the embedded model) is an ordinary edit, not a composition.
    """
    match = _COMPOSE.match(text.strip())
    if match is None or reader.draws(match["what"]):
        return None
    return match["what"], match["where"]


def wants_composition(text: str, reader: SceneReader = NO_UNDERSTANDING) -> bool:
    return composition_phrase(text, reader) is not None


def target_start(text: str, reader: SceneReader = NO_UNDERSTANDING) -> int | None:
    """Where the target part ("the blue square", "image 1") of a composition text starts, or None."""
    stripped = text.lstrip()
    match = _COMPOSE.match(stripped)
    if match is None or composition_phrase(text, reader) is None:
        return None
    return match.start("where") + len(text) - len(stripped)


def _cell_box(cell: tuple[int, int], width: int, height: int, margin: float = CELL_MARGIN) -> tuple[int, int, int, int]:
    row, col = cell
    x0, x1 = col * width / 3, (col + 1) * width / 3
    y0, y1 = row * height / 3, (row + 1) * height / 3
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    return round(x0 + mx), round(y0 + my), round(x1 - mx), round(y1 - my)


def _named_object(where: str, reader: SceneReader) -> ObjectQuery | None:
    """The object the target phrase names (by name or colour), with a position said after it; None if none."""
    named = [query for query in reader.objects_named(where) if query.name or query.colour]
    if not named:
        return None
    query = named[0]
    return query if query.cell is not None else ObjectQuery(query.name, query.colour, query.size, cell_named(where))


def find_target(image: Image.Image, where: str, mask: Image.Image | None = None,
                reader: SceneReader = NO_UNDERSTANDING) -> Target:
    """The region a reference goes into (see the module's docstring for the order of the rules)."""
    width, height = image.size
    if mask is not None:
        box = mask.getbbox()
        if box is not None:
            return Target("mask", box, "mask")
    if (match := _BOX.search(where)) is not None:
        x0, y0, x1, y1 = (int(v) for v in match.groups())
        x0, x1 = sorted((max(0, min(width, x0)), max(0, min(width, x1))))
        y0, y1 = sorted((max(0, min(height, y0)), max(0, min(height, y1))))
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            return Target("box", (x0, y0, x1, y1), f"box {x0},{y0},{x1},{y1}")
    query = _named_object(where, reader)
    if query is not None:
        objects = reader.read(image).objects
        found = [o for o in objects if query.matches(o)]
        if not found:
            raise InvalidRequest(f"There is no {query.describe()} in the image to place the reference on "
                                 f"(found: {', '.join(o.label for o in objects) or 'no objects'}).",
                                 "prompt", "target_not_found")
        best: FoundObject = max(found, key=lambda o: (o.confidence, o.area))
        return Target("object", best.box, f"{best.label} ({best.size}, {CELL_NAMES[best.cell]})")
    cell = cell_named(where)
    if cell is not None:
        return Target("cell", _cell_box(cell, width, height), CELL_NAMES[cell])
    raise InvalidRequest("Say where to place the reference: an object ('on the blue square'), a position "
                         "('in the top left'), a box ('at 10,10,60,60') or a mask.", "prompt", "target_not_found")


def fit_box(reference_size: tuple[int, int], box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The largest box of the reference's aspect inside `box`, centred."""
    x0, y0, x1, y1 = box
    rw, rh = reference_size
    scale = min((x1 - x0) / rw, (y1 - y0) / rh)
    w, h = max(1, round(rw * scale)), max(1, round(rh * scale))
    left, top = x0 + (x1 - x0 - w) // 2, y0 + (y1 - y0 - h) // 2
    return left, top, left + w, top + h


def ring_width(size: tuple[int, int]) -> int:
    """Pixels of seam remade on each side of the pasted edge: 1 at 64 px, 3 at 256 px, 11 at 1024 px."""
    return max(1, round(min(size) / 96))


def place(image: Image.Image, reference: Image.Image, box: tuple[int, int, int, int],
          allowed: Image.Image | None = None) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """`image` with `reference` scaled into `box` (aspect kept); only where `allowed` is white, if given."""
    placed = fit_box(reference.size, box)
    x0, y0, x1, y1 = placed
    scaled = reference.convert("RGBA").resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS)
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    layer.paste(scaled, (x0, y0))
    if allowed is not None:
        alpha = np.minimum(np.asarray(layer.getchannel("A")), np.asarray(allowed.convert("L")))
        layer.putalpha(Image.fromarray(alpha.astype(np.uint8), "L"))
    mode = image.mode if image.mode in ("RGB", "RGBA") else ("RGBA" if "A" in image.getbands() else "RGB")
    base = image.convert("RGBA")
    out = Image.alpha_composite(base, layer)
    # Pixels the layer does not touch stay the input's own, byte for byte.
    untouched = np.asarray(layer.getchannel("A")) == 0
    merged = np.where(untouched[..., None], np.asarray(base), np.asarray(out))
    return Image.fromarray(merged.astype(np.uint8), "RGBA").convert(mode), placed


def seam_ring(size: tuple[int, int], placed: tuple[int, int, int, int], width: int,
              allowed: Image.Image | None = None) -> Image.Image:
    """L mask, white on a band across the pasted box's edge: `width` pixels outside, a quarter of that inside.

    Mostly outside, so that the reference itself stays as it was and the model blends the surroundings into it.
    """
    w, h = size
    inside = np.zeros((h, w), dtype=bool)
    x0, y0, x1, y1 = placed
    inside[y0:y1, x0:x1] = True
    grown = ndimage.binary_dilation(inside, iterations=width)
    inner = width // 4
    core = ndimage.binary_erosion(inside, iterations=inner) if inner else inside
    ring = grown & ~core
    if allowed is not None:
        ring &= np.asarray(allowed.convert("L")) > 0
    return Image.fromarray((ring * 255).astype(np.uint8), "L")


def compose(image: Image.Image, reference: Image.Image, text: str, mask: Image.Image | None = None,
            reader: SceneReader = NO_UNDERSTANDING) -> Composition:
    """Paste `reference` where `text` (or `mask`) says, and the seam ring for the model to blend."""
    phrase = composition_phrase(text, reader)
    where = phrase[1] if phrase else text
    target = find_target(image, where, mask, reader)
    canvas, placed = place(image, reference, target.box, mask)
    ring = seam_ring(image.size, placed, ring_width(image.size), mask)
    if ring.getbbox() is None:
        raise InvalidRequest("The target region is too small to place the reference in.", "prompt",
                             "target_not_found")
    return Composition(canvas, ring, target, placed)
