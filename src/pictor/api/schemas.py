"""The OpenAI Images API on the wire: request bodies, their mapping onto ImageJob, and responses.

Unknown fields are refused (400 unknown_parameter) rather than ignored, so a typo never silently
changes what is made. Pictor's additions are optional: `seed` in requests; `id`, `seed` and
`unknown_words` on each returned image.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pictor.core import ImageJob, JobKind
from pictor.service.errors import InvalidRequest
from pictor.service.images import ImagesResult

QualityIn = Literal["auto", "low", "medium", "high", "standard", "hd"]
LEGACY_QUALITY = {"standard": "medium", "hd": "high"}
_SIZE = re.compile(r"^[1-9][0-9]*x[1-9][0-9]*$")


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    n: int = Field(1, ge=1, le=10)
    size: str = "auto"
    quality: QualityIn = "auto"
    background: Literal["auto", "transparent", "opaque"] = "auto"
    output_format: Literal["png", "jpeg", "webp"] = "png"
    output_compression: int | None = Field(None, ge=0, le=100)
    moderation: Literal["auto", "low"] = "auto"
    response_format: Literal["b64_json", "url"] | None = None
    stream: bool = False
    partial_images: int = Field(0, ge=0, le=3)
    user: str | None = None
    seed: int | None = Field(None, ge=0, lt=2**63 - 16)

    def checked(self) -> None:
        if self.size != "auto" and not _SIZE.match(self.size):
            raise InvalidRequest(f"Invalid size '{self.size}': use 'auto' or WIDTHxHEIGHT, e.g. 1024x1024.", "size",
                                 "invalid_size")
        if self.output_compression is not None and self.output_format == "png":
            raise InvalidRequest("output_compression applies to jpeg and webp only.", "output_compression",
                                 "invalid_value")
        if self.background == "transparent" and self.output_format == "jpeg":
            raise InvalidRequest("A transparent background needs output_format png or webp.", "background",
                                 "invalid_value")
        if self.stream and self.response_format == "url":
            raise InvalidRequest("Streaming returns b64_json images; response_format 'url' cannot stream.",
                                 "response_format", "invalid_value")

    def job(self, kind: JobKind, prompt: str, tenant_id: str, images: tuple[bytes, ...] = (),
            mask: bytes | None = None) -> ImageJob:
        self.checked()
        try:
            return ImageJob(kind=kind, prompt=prompt, images=images, mask=mask, size=self.size, n=self.n,
                            seed=self.seed, quality=LEGACY_QUALITY.get(self.quality, self.quality),
                            output_format=self.output_format,
                            output_compression=100 if self.output_compression is None else self.output_compression,
                            background=self.background, moderation=self.moderation, model=self.model,
                            tenant_id=tenant_id, user=self.user)
        except ValueError as error:
            raise InvalidRequest(str(error), None, "invalid_value") from None


class GenerationRequest(_Common):
    prompt: str = Field(min_length=1)
    style: Literal["vivid", "natural"] | None = None  # dall-e-3's; accepted, recorded, no effect here


class EditFields(_Common):
    """The non-file fields of a multipart edit (they arrive as strings and are coerced)."""

    prompt: str = Field(min_length=1)
    input_fidelity: Literal["high", "low"] | None = None


class VariationFields(_Common):
    pass


class ImageReference(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_url: str | None = None
    file_id: str | None = None


class EditJsonRequest(EditFields):
    """The newer JSON form of an edit: images (and mask) as base64 data URLs."""

    images: list[ImageReference] = Field(min_length=1, max_length=16)
    mask: ImageReference | None = None


def data_url_bytes(reference: ImageReference, param: str) -> bytes:
    if reference.file_id is not None:
        raise InvalidRequest("file_id references are not supported; send the image as a base64 data URL.", param,
                             "unsupported_reference")
    url = reference.image_url or ""
    if not url.startswith("data:") or ";base64," not in url:
        raise InvalidRequest("image_url must be a base64 data URL (data:image/png;base64,...).", param,
                             "invalid_image_url")
    try:
        return base64.b64decode(url.split(";base64,", 1)[1], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("The data URL's base64 payload is invalid.", param, "invalid_image_url") from None


def images_response(result: ImagesResult, response_format: str | None, url_for: Callable[[str], str]) -> dict:
    data = []
    for produced in result.images:
        item: dict = {"revised_prompt": produced.revised_prompt, "id": produced.artifact.id, "seed": produced.seed,
                      "unknown_words": produced.unknown_words}
        if response_format == "url":
            item["url"] = url_for(produced.artifact.id)
        else:
            item["b64_json"] = base64.b64encode(produced.artifact.data).decode()
        data.append(item)
    return {"created": result.created, "data": data, "background": result.background,
            "output_format": result.output_format, "quality": result.quality, "size": result.size,
            "usage": result.usage}
