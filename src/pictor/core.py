"""Core types shared by every layer: what to make, what was made, and what policy decided.

They are plain frozen dataclasses so that any layer (api, service, engine, governance, storage)
can pass them around without importing each other. Wire-level parsing (OpenAI field aliases,
`standard`/`hd`, data URLs) belongs to `api/schemas`; these types hold canonical values only and
check the invariants that every consumer relies on. ImageJob's checks are the request rules, stated
once: a broken rule is an `InvalidJob` naming the parameter and a code, which the API answers as a 400.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import cached_property
from typing import Any, Literal, get_args

ImageFormat = Literal["png", "jpeg", "webp", "gif", "svg"]
RasterFormat = Literal["png", "jpeg", "webp"]  # what inputs may be
Quality = Literal["auto", "low", "medium", "high", "xhigh", "max"]
Complexity = Literal["low", "medium", "high"]
Background = Literal["auto", "transparent", "opaque"]
ModerationLevel = Literal["auto", "low"]
Stage = Literal["input", "output"]

# Bounds of a job's counted fields; the API's wire models take them from here, so its OpenAPI document says them.
MAX_COMPRESSION = 100
MAX_CANDIDATES = 8
MIN_FRAMES, MAX_FRAMES = 2, 16

_SIZE = re.compile(r"([1-9][0-9]*)x([1-9][0-9]*)")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class JobKind(StrEnum):
    """The three operations of the Images API."""

    GENERATE = "generate"
    EDIT = "edit"
    VARIATION = "variation"


def sha256_hex(data: bytes) -> str:
    """The content hash used everywhere (blob names, lineage, cache keys), so all layers agree."""
    return hashlib.sha256(data).hexdigest()


def is_sha256_hex(value: str) -> bool:
    """True for a lowercase 64-digit hex digest; guards paths and lookups built from hashes."""
    return bool(_SHA256_HEX.match(value))


def new_image_id() -> str:
    """A fresh artifact id (`img_` + 96 random bits).

    Made before the image is stored because the invisible watermark and the C2PA manifest carry it.
    """
    return f"img_{secrets.token_hex(12)}"


class Refusal(Exception):
    """A request refused, in the terms of the OpenAI error object: a message for the user, the parameter at fault
    and a stable code. It lives here, below every layer, so that ImageJob's own checks are refusals like the
    service's (service/errors.py names this class ServiceError) and reach the caller as the same 400."""

    kind = "invalid_request"

    def __init__(self, message: str, param: str | None = None, code: str | None = None,
                 details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.details = details  # extra fields for the error object (e.g. moderation_details)


class InvalidJob(Refusal, ValueError):
    """A job that breaks one of ImageJob's rules (also a ValueError: its values are wrong)."""

    def __init__(self, message: str, param: str | None, code: str = "invalid_value"):
        super().__init__(message, param, code)


def parse_size(size: str) -> tuple[int, int] | None:
    """(width, height) of a `size`, None for 'auto': the one reading of WIDTHxHEIGHT, so that what a request may
    say is what the planner resolves. The bounds a model can make are the planner's (service/planning)."""
    if size == "auto":
        return None
    match = _SIZE.fullmatch(size)  # fullmatch: '$' would let a trailing newline through
    if match is None:
        raise InvalidJob(f"Invalid size '{size}': use 'auto' or WIDTHxHEIGHT, e.g. 1024x1024.", "size",
                         "invalid_size")
    return int(match[1]), int(match[2])


def _check_choice(name: str, value: object, allowed: Any) -> None:
    if value not in get_args(allowed):
        raise ValueError(f"{name} must be one of {get_args(allowed)}, got {value!r}")


def _check_job_choice(name: str, value: object, allowed: Any) -> None:
    if value not in get_args(allowed):
        raise InvalidJob(f"Invalid value for '{name}': {value!r}; use one of {', '.join(get_args(allowed))}.", name)


def _check_range(name: str, value: int | None, low: int, high: int) -> None:
    if value is not None and not low <= value <= high:
        raise InvalidJob(f"Invalid value for '{name}': {value}; use {low}..{high}.", name)


@dataclass(frozen=True)
class ImageJob:
    """One validated request; everything downstream trusts it instead of re-checking wire fields.

    Its checks are the request rules, stated once: the API's wire models parse (types, aliases, the fields only
    the wire has) and leave these to it, and a session turn or a command-line job meets the same rules.
    """

    kind: JobKind
    prompt: str = ""
    images: tuple[bytes, ...] = ()
    mask: bytes | None = None
    size: str = "auto"
    n: int = 1
    seed: int | None = None
    quality: Quality = "auto"
    output_format: ImageFormat = "png"
    output_compression: int = 100
    background: Background = "auto"
    moderation: ModerationLevel = "auto"
    model: str | None = None
    tenant_id: str | None = None
    user: str | None = None
    session_id: str | None = None
    # The gpt-image-2 fields (see service/validation, service/animation, service/markup) and Pictor's
    # `candidates` (how many the validator chooses from; None: what `complexity` says).
    complexity: Complexity | None = None
    candidates: int | None = None
    frame_count: int | None = None
    frame_duration_ms: int | None = None
    markup: bytes | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", JobKind(self.kind))
        object.__setattr__(self, "images", tuple(self.images))
        parse_size(self.size)
        self._check_values()
        self._check_output()
        self._check_inputs()

    def _check_values(self) -> None:
        """Each field on its own."""
        for name in ("prompt", "user", "model", "session_id"):
            if "\x00" in (getattr(self, name) or ""):  # no use for one, and PostgreSQL refuses it in text
                raise InvalidJob(f"'{name}' contains a NUL character, which no field accepts.", name,
                                 "invalid_character")
        if self.n < 1:
            raise InvalidJob(f"Invalid value for 'n': {self.n}; at least 1 image.", "n")
        _check_range("output_compression", self.output_compression, 0, MAX_COMPRESSION)
        _check_job_choice("quality", self.quality, Quality)
        _check_job_choice("output_format", self.output_format, ImageFormat)
        _check_job_choice("background", self.background, Background)
        _check_job_choice("moderation", self.moderation, ModerationLevel)
        if self.complexity is not None:
            _check_job_choice("complexity", self.complexity, Complexity)
        _check_range("candidates", self.candidates, 1, MAX_CANDIDATES)
        _check_range("frame_count", self.frame_count, MIN_FRAMES, MAX_FRAMES)

    def _check_output(self) -> None:
        """What each output format allows (upstream's refusals for gif and svg, reference: "Newer fields")."""
        fmt = self.output_format
        if (self.frame_count is not None or self.frame_duration_ms is not None) and fmt != "gif":
            param = "frame_count" if self.frame_count is not None else "frame_duration_ms"
            raise InvalidJob(f"{param} is only supported with output_format 'gif'.", param)
        if fmt == "svg" and self.n != 1:
            raise InvalidJob("SVG output makes one image: n must be 1.", "n")
        if fmt in ("gif", "svg") and self.background == "transparent":
            raise InvalidJob(f"{fmt.upper()} output is opaque here: use png or webp for a transparent background.",
                             "background")
        if fmt == "jpeg" and self.background == "transparent":
            raise InvalidJob("A transparent background needs output_format png or webp.", "background")
        if fmt == "gif" and (self.mask is not None or self.markup is not None):
            param = "mask" if self.mask is not None else "markup"
            raise InvalidJob("GIF output does not support masks (or markup).", param)

    def _check_inputs(self) -> None:
        """What each kind of job takes."""
        if self.markup is not None and self.mask is not None:
            raise InvalidJob("markup cannot be combined with mask.", "markup")
        if self.markup is not None and self.kind is not JobKind.EDIT:
            raise InvalidJob("markup guides an edit: send it with an input image.", "markup")
        if self.kind is JobKind.GENERATE and self.images:
            raise InvalidJob("A generation takes no input images.", "image")
        if self.kind is not JobKind.EDIT and self.mask is not None:
            raise InvalidJob(f"A mask goes with an edit, not a {self.kind.value}.", "mask")
        if self.kind is JobKind.EDIT and not self.images:
            raise InvalidJob("An edit needs at least one input image.", "image", "missing_image")
        if self.kind is JobKind.VARIATION and len(self.images) != 1:
            raise InvalidJob("A variation takes exactly one input image.", "image")
        if self.kind is not JobKind.VARIATION and not self.prompt:
            raise InvalidJob(f"A {self.kind.value} job needs a prompt.", "prompt")

    @property
    def dimensions(self) -> tuple[int, int] | None:
        """(width, height) for an explicit size, None for 'auto' (the service resolves it)."""
        return parse_size(self.size)

    def parameters(self) -> dict[str, Any]:
        """A JSON-safe record of the job for metadata and cache keys: inputs appear as content hashes."""
        return {
            "kind": self.kind.value,
            "prompt": self.prompt,
            "input_hashes": [sha256_hex(image) for image in self.images],
            "mask_hash": sha256_hex(self.mask) if self.mask is not None else None,
            "size": self.size,
            "n": self.n,
            "seed": self.seed,
            "quality": self.quality,
            "output_format": self.output_format,
            "output_compression": self.output_compression,
            "background": self.background,
            "moderation": self.moderation,
            "model": self.model,
            "session_id": self.session_id,
            **({"complexity": self.complexity} if self.complexity is not None else {}),
            **({"candidates": self.candidates} if self.candidates is not None else {}),
            **({"frame_count": self.frame_count, "frame_duration_ms": self.frame_duration_ms}
               if self.output_format == "gif" else {}),
            **({"markup_hash": sha256_hex(self.markup)} if self.markup is not None else {}),
        }


@dataclass(frozen=True)
class Artifact:
    """One produced image: its encoded bytes plus what is needed to trace it (lineage, model, seed)."""

    id: str
    data: bytes
    format: ImageFormat
    width: int
    height: int
    model: str | None = None
    seed: int | None = None
    parents: tuple[str, ...] = ()
    tenant_id: str | None = None
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    audit_index: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "parents", tuple(self.parents))
        _check_choice("format", self.format, ImageFormat)
        if self.width < 1 or self.height < 1:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")

    @cached_property
    def content_hash(self) -> str:
        """Derived from the bytes, never passed in, so it cannot disagree with them."""
        return sha256_hex(self.data)


@dataclass(frozen=True)
class Decision:
    """A content-policy outcome; rule ids say which rules fired so a block can be explained and audited."""

    allowed: bool
    stage: Stage
    rule_ids: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    reason: str = ""
    scores: tuple[tuple[str, float], ...] = ()  # an image classifier's score per category, for the record

    def __post_init__(self) -> None:
        object.__setattr__(self, "rule_ids", tuple(self.rule_ids))
        object.__setattr__(self, "categories", tuple(self.categories))
        object.__setattr__(self, "scores", tuple(sorted(dict(self.scores).items())))
        _check_choice("stage", self.stage, Stage)

    @property
    def blocked(self) -> bool:
        """The negation, for readable call sites (`if decision.blocked:`)."""
        return not self.allowed
