"""The image changes the invisible watermark is specified to survive: what a re-upload, a screenshot or an
editor does to a file. Shared by the watermark's tests and its benchmark, and usable by operators to check
their own settings."""

from __future__ import annotations

import io
from collections.abc import Callable

from PIL import Image, ImageEnhance


def encoded(image: Image.Image, fmt: str, quality: int) -> Image.Image:
    """Saved as JPEG or WebP at `quality` and decoded again."""
    out = io.BytesIO()
    image.save(out, format=fmt, quality=quality)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def resized(image: Image.Image, factor: float) -> Image.Image:
    """Scaled by `factor` (bicubic), not restored."""
    w, h = image.size
    return image.resize((round(w * factor), round(h * factor)), Image.Resampling.BICUBIC)


def cropped(image: Image.Image, area: float, cx: float, cy: float) -> Image.Image:
    """A crop keeping `area` of the image, placed at (cx, cy) in 0..1 of the room left over."""
    w, h = image.size
    cw, ch = round(w * area**0.5), round(h * area**0.5)
    x0, y0 = round((w - cw) * cx), round((h - ch) * cy)
    return image.crop((x0, y0, x0 + cw, y0 + ch))


NAMED_ATTACKS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "JPEG q50": lambda im: encoded(im, "JPEG", 50),
    "WebP q75": lambda im: encoded(im, "WEBP", 75),
    "resize x0.5 (not restored)": lambda im: resized(im, 0.5),
    "crop 80% area, centre": lambda im: cropped(im, 0.8, 0.5, 0.5),
    "crop 80% area, off-centre": lambda im: cropped(im, 0.8, 0.1, 0.85),
    "brightness x1.2": lambda im: ImageEnhance.Brightness(im).enhance(1.2),
    "JPEG q75 then resize x0.75": lambda im: resized(encoded(im, "JPEG", 75), 0.75),
    "resize x0.75 then JPEG q75": lambda im: encoded(resized(im, 0.75), "JPEG", 75),
}
