"""The OpenAI Images API on the wire: request bodies, their mapping onto ImageJob, and responses.

Unknown fields are refused (400 unknown_parameter) rather than ignored, so a typo never silently
changes what is made. Pictor's additions are optional: `seed` in requests; `id`, `seed` and
`unknown_words` on each returned image.

These models parse: types, the enumerations and bounds core.py defines (so the OpenAPI document states them), and
the rules of fields only the wire has (streaming, response_format, the svg object, an output_compression sent with
a format that has none). What a job may be is ImageJob's to check (core.py), once for every way in.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pictor.core import (
    MAX_CANDIDATES,
    MAX_COMPRESSION,
    MAX_FRAMES,
    MIN_FRAMES,
    Background,
    Complexity,
    ImageFormat,
    ImageJob,
    JobKind,
    ModerationLevel,
    Quality,
)
from pictor.service.animation import MAX_FRAME_DURATION_MS
from pictor.service.errors import InvalidRequest
from pictor.service.images import ImagesResult
from pictor.service.planning import MAX_PROMPT_CHARS

QualityIn = Literal[Quality, "standard", "hd"]  # dall-e-3's names too
LEGACY_QUALITY = {"standard": "medium", "hd": "high"}
MAX_IMAGES_PER_REQUEST = 10  # upstream's `n` limit; a job itself may make more (the command line)


# The largest integer a database column holds (SQLite and PostgreSQL BIGINT): bigger offsets and indexes are a 400.
MAX_SQL_INTEGER = 2**63 - 1


class SvgReasoning(BaseModel):
    model_config = ConfigDict(extra="forbid")

    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None


class SvgOptions(BaseModel):
    """Upstream's `svg` object (the SVG author); Pictor's one vectoriser is `vtracer` (effort is recorded only)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    reasoning: SvgReasoning | None = None


SVG_MODELS = ("vtracer",)


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    n: int = Field(1, ge=1, le=MAX_IMAGES_PER_REQUEST)
    size: str = "auto"  # parsed by ImageJob (core.parse_size)
    quality: QualityIn = "auto"
    background: Background = "auto"
    output_format: ImageFormat = "png"
    output_compression: int | None = Field(None, ge=0, le=MAX_COMPRESSION)
    complexity: Complexity | None = None
    frame_count: int | None = Field(None, ge=MIN_FRAMES, le=MAX_FRAMES)
    frame_duration_ms: int | None = Field(None, ge=1, le=MAX_FRAME_DURATION_MS)
    svg: SvgOptions | None = None
    safety_identifier: str | None = None
    candidates: int | None = Field(None, ge=1, le=MAX_CANDIDATES)  # Pictor's: best of this many (beats complexity)
    moderation: ModerationLevel = "auto"
    response_format: Literal["b64_json", "url"] | None = None
    stream: bool = False
    partial_images: int = Field(0, ge=0, le=3)
    user: str | None = None
    seed: int | None = Field(None, ge=0, lt=2**63 - 16)

    def checked(self) -> None:
        """The rules of the fields only the wire has (ImageJob checks the rest)."""
        fmt = self.output_format
        if self.output_compression is not None and fmt not in ("jpeg", "webp"):
            raise InvalidRequest("output_compression applies to jpeg and webp only.", "output_compression",
                                 "invalid_value")
        if self.svg is not None and fmt != "svg":
            raise InvalidRequest("The svg object requires output_format 'svg'.", "svg", "invalid_value")
        if self.svg is not None and self.svg.model not in SVG_MODELS:
            raise InvalidRequest(f"Unknown SVG author '{self.svg.model}'; this server has {', '.join(SVG_MODELS)}.",
                                 "svg.model", "model_not_found")
        if fmt in ("gif", "svg") and (self.stream or self.partial_images):
            param = "stream" if self.stream else "partial_images"
            raise InvalidRequest(f"{fmt.upper()} output does not support streaming or partial images.", param,
                                 "invalid_value")
        if self.stream and self.response_format == "url":
            raise InvalidRequest("Streaming returns b64_json images; response_format 'url' cannot stream.",
                                 "response_format", "invalid_value")

    def job(self, kind: JobKind, prompt: str, tenant_id: str, images: tuple[bytes, ...] = (),
            mask: bytes | None = None, markup: bytes | None = None) -> ImageJob:
        """The wire's own rules, then the job (whose checks raise InvalidJob: a 400 with its param and code)."""
        self.checked()
        compression = MAX_COMPRESSION if self.output_compression is None else self.output_compression
        return ImageJob(kind=kind, prompt=prompt, images=images, mask=mask, size=self.size, n=self.n, seed=self.seed,
                        quality=LEGACY_QUALITY.get(self.quality, self.quality), output_format=self.output_format,
                        output_compression=compression, background=self.background, moderation=self.moderation,
                        model=self.model, tenant_id=tenant_id, user=self.safety_identifier or self.user,
                        complexity=self.complexity, candidates=self.candidates, frame_count=self.frame_count,
                        frame_duration_ms=self.frame_duration_ms, markup=markup)


class GenerationRequest(_Common):
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    style: Literal["vivid", "natural"] | None = None  # dall-e-3's; accepted, recorded, no effect here


class EditFields(_Common):
    """The non-file fields of a multipart edit (they arrive as strings and are coerced)."""

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    input_fidelity: Literal["high", "low"] | None = None


class VariationFields(_Common):
    pass


class ImageReference(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_url: str | None = None
    file_id: str | None = None


class EditJsonRequest(EditFields):
    """The JSON form of an edit: images (and mask) as base64 data URLs."""

    images: list[ImageReference] = Field(min_length=1, max_length=16)
    mask: ImageReference | None = None
    markup: ImageReference | None = None

    def job(self, kind: JobKind, prompt: str, tenant_id: str, images: tuple[bytes, ...] = (),
            mask: bytes | None = None, markup: bytes | None = None) -> ImageJob:
        """As for any request; the markup comes from the body itself (so async jobs and batches read it too)."""
        if markup is None and self.markup is not None:
            markup = data_url_bytes(self.markup, "markup")
        return super().job(kind, prompt, tenant_id, images, mask, markup)


class VariationJsonRequest(VariationFields):
    """A variation as JSON (async jobs and batches, which carry no files): the image as a base64 data URL."""

    image: ImageReference


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
        if produced.validation is not None:
            item["validation"] = produced.validation
        if response_format == "url":
            item["url"] = url_for(produced.artifact.id)
        else:
            item["b64_json"] = base64.b64encode(produced.artifact.data).decode()
        data.append(item)
    body = {"created": result.created, "data": data, "background": result.background,
            "output_format": result.output_format, "quality": result.quality, "size": result.size,
            "usage": result.usage}
    if result.svg_usage is not None:
        body["svg_usage"] = result.svg_usage
    return body
