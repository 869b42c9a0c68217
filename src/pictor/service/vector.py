"""SVG output: a clean vector rendition of a generated raster.

The raster's colours are first merged into a small palette (median cut, then entries closer than
`MERGE_DISTANCE` joined), so that flat regions come out as one path each rather than a fringe of anti-aliasing
shades; then `vtracer` (visioncortex, a maintained tracer) fits spline paths to each colour layer, dropping
speckles. The result keeps `width`/`height` and gains a `viewBox`, so it scales.

The invisible watermark cannot survive this (there are no pixels to carry it): SVG outputs carry no watermark,
and their audit entry says why. The C2PA manifest is embedded (c2pa signs image/svg+xml, in a `<metadata>` element).
"""

from __future__ import annotations

import io
import re
from importlib.metadata import version

import numpy as np
import vtracer
from PIL import Image

MAX_COLOURS = 16
PALETTE_SIDE = 256  # the palette is found on a copy this small
MERGE_DISTANCE = 24.0  # RGB distance under which two palette entries are one colour
TRACER = f"vtracer-{version('vtracer')}"
_SVG_OPEN = re.compile(r'<svg ([^>]*)width="(\d+)" height="(\d+)"')


def merged_palette(image: Image.Image, max_colours: int = MAX_COLOURS) -> Image.Image:
    """`image` (RGB) in at most `max_colours` flat colours, near-equal ones merged, without dithering.

    The palette is found on a copy of at most PALETTE_SIDE pixels a side (k-means refined median cut), then every
    pixel of the full image takes its nearest entry: the cost stays flat with the output size.
    """
    rgb = image.convert("RGB")
    small = rgb.copy()
    small.thumbnail((PALETTE_SIDE, PALETTE_SIDE), Image.Resampling.BOX)
    quantised = small.quantize(colors=max_colours, method=Image.Quantize.MEDIANCUT, kmeans=3,
                               dither=Image.Dither.NONE)
    palette = np.array(quantised.getpalette()[: 3 * max_colours], dtype=np.float32).reshape(-1, 3)
    counts = np.bincount(np.asarray(quantised).ravel(), minlength=len(palette))[: len(palette)]
    # Most used first: a rare anti-aliasing shade joins the big region next to it, never the reverse.
    kept: list[int] = []
    for index in np.argsort(-counts):
        if counts[index] and all(np.linalg.norm(palette[k] - palette[index]) >= MERGE_DISTANCE for k in kept):
            kept.append(int(index))
    entries = palette[kept].astype(np.uint8)
    holder = Image.new("P", (1, 1))
    holder.putpalette(entries.ravel().tolist() + entries[0].tolist() * (256 - len(entries)))
    return rgb.quantize(palette=holder, dither=Image.Dither.NONE).convert("RGB")


def svg_text(image: Image.Image) -> str:
    """The vector rendition of `image` as SVG markup (UTF-8 text)."""
    flat = merged_palette(image)
    buffer = io.BytesIO()
    flat.save(buffer, "PNG")
    svg = vtracer.convert_raw_image_to_svg(buffer.getvalue(), img_format="png", colormode="color",
                                           hierarchical="stacked", mode="spline", filter_speckle=4,
                                           color_precision=8, layer_difference=8, corner_threshold=60,
                                           length_threshold=4.0, splice_threshold=45, path_precision=2)
    svg = re.sub(r"<!--.*?-->\n?", "", svg, flags=re.S)
    return _SVG_OPEN.sub(lambda m: f'<svg {m[1]}width="{m[2]}" height="{m[3]}" viewBox="0 0 {m[2]} {m[3]}"',
                         svg, count=1)


def svg_bytes(image: Image.Image) -> bytes:
    return svg_text(image).encode()


def path_count(svg: str | bytes) -> int:
    text = svg.decode(errors="replace") if isinstance(svg, bytes) else svg
    return text.count("<path")


def usage(svg: bytes) -> dict:
    """Upstream's separate `svg_usage` for the vectoriser: no language model authors Pictor's SVG, so the token counts
    are estimates in upstream's units (output: the markup's bytes / 4, as for text), reasoning none."""
    output = max(1, len(svg) // 4)
    return {"model": TRACER, "input_tokens": 0, "output_tokens": output, "reasoning_tokens": 0,
            "total_tokens": output, "paths": path_count(svg)}
