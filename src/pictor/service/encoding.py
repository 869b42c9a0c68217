"""Encode output images in the requested format; the bytes that are stored are the bytes returned."""

from __future__ import annotations

import io

from PIL import Image

MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


def encode(image: Image.Image, output_format: str, compression: int = 100) -> bytes:
    """PNG is lossless (fast zlib level: flat-colour images compress well anyway); for JPEG and WebP
    `compression` is the quality, 0..100, and WebP at 100 is lossless."""
    buffer = io.BytesIO()
    if output_format == "png":
        image.save(buffer, "PNG", compress_level=1)
    elif output_format == "jpeg":
        image.convert("RGB").save(buffer, "JPEG", quality=max(1, min(compression, 100)))
    elif output_format == "webp":
        if compression >= 100:
            image.save(buffer, "WEBP", lossless=True)
        else:
            image.save(buffer, "WEBP", quality=compression)
    else:
        raise ValueError(f"unknown output format {output_format!r}")
    return buffer.getvalue()
