"""Encode output images in the requested format; the bytes that are stored are the bytes returned."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from isal import isal_zlib
from PIL import Image

MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif",
              "svg": "image/svg+xml"}  # gif and svg are made by service/animation and service/vector
_PNG_COLOUR_TYPES = {"RGB": 2, "RGBA": 6}


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(image: Image.Image) -> bytes:
    """8-bit RGB / RGBA PNG: every row with the Up filter (one numpy subtraction), deflated by ISA-L at level 1.

    Measured on a 1024x1024 output (2-core CPU): with zlib at level 1 this took 14 ms for 170 KB, where Pillow's
    encoder at the same level takes 22 ms for 174 KB; ISA-L's deflate makes the same stream format several times
    faster (bench/results/server-overhead-cpu-2core.md).
    """
    if image.mode not in _PNG_COLOUR_TYPES:
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    pixels = np.asarray(image)
    height, width, channels = pixels.shape
    rows = pixels.reshape(height, width * channels)
    scanlines = np.empty((height, width * channels + 1), dtype=np.uint8)
    scanlines[:, 0] = 2  # filter type Up: each byte minus the byte above it (mod 256)
    scanlines[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=scanlines[1:, 1:])
    header = struct.pack(">IIBBBBB", width, height, 8, _PNG_COLOUR_TYPES[image.mode], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", isal_zlib.compress(scanlines, 1)) + _png_chunk(b"IEND", b""))


def encode(image: Image.Image, output_format: str, compression: int = 100) -> bytes:
    """PNG is lossless (see png_bytes); for JPEG and WebP `compression` is the quality, 0..100, and
    WebP at 100 is lossless."""
    if output_format == "png":
        return png_bytes(image)
    buffer = io.BytesIO()
    if output_format == "jpeg":
        image.convert("RGB").save(buffer, "JPEG", quality=max(1, min(compression, 100)))
    elif output_format == "webp":
        if compression >= 100:
            image.save(buffer, "WEBP", lossless=True)
        else:
            image.save(buffer, "WEBP", quality=compression)
    else:
        raise ValueError(f"unknown output format {output_format!r}")
    return buffer.getvalue()
