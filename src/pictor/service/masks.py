"""Hard masks: the input's own pixels outside the editable area, whatever the model did (and a soft band at the
edge where the operator asks for one)."""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage


def has_alpha(image: Image.Image) -> bool:
    return "A" in image.getbands() or "transparency" in image.info


def blend_band(editable: Image.Image, width: int) -> Image.Image:
    """The editable area with a soft band `width` pixels deep inside its edge (0 = the hard edge as it was).

    A pixel at distance d (1 = next to a kept pixel) from the kept area gets weight d / (width + 1): the band
    feathers the model's output into the original; deeper pixels stay 255 (pure output), kept pixels 0.
    """
    inside = np.asarray(editable.convert("L")) > 0
    if width <= 0 or inside.all():
        return editable
    distance = ndimage.distance_transform_edt(inside)
    weight = np.clip(np.ceil(distance) / (width + 1), 0.0, 1.0)
    weight[distance > width] = 1.0
    soft = np.where(inside, np.maximum(1, np.round(weight * 255)), 0)
    return Image.fromarray(soft.astype(np.uint8), "L")


def keep_outside_mask(made: Image.Image, source: Image.Image, editable: Image.Image) -> Image.Image:
    """`made` inside the editable area (non-zero in `editable`), `source` byte for byte everywhere else.

    Values between 0 and 255 (the blend band, see `blend_band`) mix the two in proportion; 255 is `made` as is.
    The result has an alpha channel when either image has one, so an input's transparency survives
    an edit and a transparent background stays transparent inside the edited area only.
    """
    mode = "RGBA" if made.mode == "RGBA" or has_alpha(source) else "RGB"
    if made.size != source.size:
        made = made.resize(source.size, Image.Resampling.LANCZOS)
    level = np.asarray(editable.convert("L"))
    inside = level > 0
    made_px, source_px = np.asarray(made.convert(mode)), np.asarray(source.convert(mode))
    if ((level > 0) & (level < 255)).any():
        weight = (level.astype(np.float32) / 255.0)[..., None]
        mixed = np.round(weight * made_px + (1.0 - weight) * source_px)
        made_px = np.where((level == 255)[..., None], made_px, mixed)
    out = np.where(inside[..., None], made_px, source_px)
    return Image.fromarray(out.astype(np.uint8), mode)
