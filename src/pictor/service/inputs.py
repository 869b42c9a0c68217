"""Decode and check uploaded images and masks before anything else sees them.

Only the header is read before the size check, so a decompression bomb is refused without being
decoded; the real file type is sniffed from the bytes, never taken from the client's label.
"""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

from pictor.service.errors import InvalidRequest

ACCEPTED_FORMATS = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp"}
MAX_INPUT_PIXELS = 4096 * 4096
MAX_INPUT_SIDE = 8192


def open_image(data: bytes, param: str = "image") -> Image.Image:
    """A fully decoded image from PNG / JPEG / WebP bytes, or a 400-style InvalidRequest."""
    if not data:
        raise InvalidRequest(f"The '{param}' file is empty.", param, "invalid_image_file")
    try:
        return _decode(data, param)
    except _MetadataTooLarge:
        # A colour profile or text chunk that unpacks past Pillow's safety limit (1 MiB): a 2 MiB ICC profile is
        # ordinary. The pixels are read without those chunks (outputs are made in sRGB, so the profile would not
        # be used), and a zTXt bomb costs nothing.
        try:
            return _decode(without_png_metadata(data), param)
        except _MetadataTooLarge:
            raise InvalidRequest(f"The '{param}' file is corrupt or truncated.", param,
                                 "invalid_image_file") from None


class _MetadataTooLarge(Exception):
    pass


def _decode(data: bytes, param: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise InvalidRequest(f"The '{param}' file is not an image Pictor can read. Supported: png, jpeg, webp.",
                             param, "invalid_image_file") from None
    except Image.DecompressionBombError:
        raise InvalidRequest(f"The '{param}' image has too many pixels.", param, "image_too_large") from None
    except ValueError:  # Pillow's "Decompressed Data Too Large" for an iCCP or zTXt chunk read with the header
        raise _MetadataTooLarge from None
    except (OSError, SyntaxError):
        raise InvalidRequest(f"The '{param}' file is corrupt or truncated.", param, "invalid_image_file") from None
    if image.format not in ACCEPTED_FORMATS:
        raise InvalidRequest(f"Unsupported image type '{(image.format or 'unknown').lower()}' for '{param}'. "
                             "Supported: png, jpeg, webp.", param, "unsupported_file_mimetype")
    width, height = image.size
    if width * height > MAX_INPUT_PIXELS or max(width, height) > MAX_INPUT_SIDE:
        raise InvalidRequest(f"The '{param}' image is {width}x{height}: at most {MAX_INPUT_PIXELS} pixels "
                             f"and {MAX_INPUT_SIDE} pixels a side are accepted.", param, "image_too_large")
    try:
        image.load()
    except ValueError as error:
        if image.format == "PNG" and "too large" in str(error).lower():  # a text chunk after the pixels
            raise _MetadataTooLarge from None
        raise InvalidRequest(f"The '{param}' file is corrupt or truncated.", param, "invalid_image_file") from None
    except (OSError, SyntaxError, Image.DecompressionBombError):
        raise InvalidRequest(f"The '{param}' file is corrupt or truncated.", param, "invalid_image_file") from None
    return image


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_METADATA_CHUNKS = (b"iCCP", b"zTXt", b"iTXt", b"tEXt")


def without_png_metadata(data: bytes) -> bytes:
    """A PNG's bytes without its colour profile and text chunks (every other chunk as it was). Not a PNG, or
    chunks that run past the end: the bytes unchanged, for the decoder to refuse."""
    if not data.startswith(PNG_SIGNATURE):
        return data
    kept, pos = [PNG_SIGNATURE], len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        end = pos + 12 + length
        if end > len(data):
            return data
        if data[pos + 4:pos + 8] not in _METADATA_CHUNKS:
            kept.append(data[pos:end])
        pos = end
    return b"".join(kept) + data[pos:]


def editable_area(mask_data: bytes, image_size: tuple[int, int]) -> Image.Image:
    """The OpenAI mask convention (alpha 0 = change here) as an L image, white where the edit may change."""
    mask = open_image(mask_data, "mask")
    if mask.size != image_size:
        raise InvalidRequest(f"The mask is {mask.size[0]}x{mask.size[1]} but the image is "
                             f"{image_size[0]}x{image_size[1]}; they must be the same size.", "mask",
                             "invalid_mask_size")
    if "A" not in mask.getbands() and "transparency" not in mask.info:
        raise InvalidRequest("The mask must have an alpha channel: fully transparent pixels mark the area to edit.",
                             "mask", "invalid_mask_format")
    alpha = mask.convert("RGBA").getchannel("A")
    editable = alpha.point(lambda a: 255 if a == 0 else 0)
    if editable.getbbox() is None:
        raise InvalidRequest("The mask has no fully transparent pixels, so there is nothing to edit.", "mask",
                             "invalid_mask_format")
    return editable
