"""Core types shared by every layer: what to make, what was made, and what policy decided.

They are plain frozen dataclasses so that any layer (api, service, engine, governance, storage)
can pass them around without importing each other. Wire-level parsing (OpenAI field aliases,
`standard`/`hd`, data URLs) belongs to `api/schemas`; these types hold canonical values only and
check the invariants that every consumer relies on.
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

_SIZE = re.compile(r"^(auto|[1-9][0-9]*x[1-9][0-9]*)$")
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


def _check_choice(name: str, value: object, allowed: Any) -> None:
    if value not in get_args(allowed):
        raise ValueError(f"{name} must be one of {get_args(allowed)}, got {value!r}")


@dataclass(frozen=True)
class ImageJob:
    """One validated request; everything downstream trusts it instead of re-checking wire fields."""

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
        if not _SIZE.match(self.size):
            raise ValueError(f"size must be 'auto' or 'WxH', got {self.size!r}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if not 0 <= self.output_compression <= 100:
            raise ValueError(f"output_compression must be in 0..100, got {self.output_compression}")
        _check_choice("quality", self.quality, Quality)
        _check_choice("output_format", self.output_format, ImageFormat)
        _check_choice("background", self.background, Background)
        _check_choice("moderation", self.moderation, ModerationLevel)
        if self.background == "transparent" and self.output_format == "jpeg":
            raise ValueError("background 'transparent' needs output_format png or webp")
        if self.kind is JobKind.GENERATE and (self.images or self.mask is not None):
            raise ValueError("a generate job takes no input images or mask")
        if self.kind is JobKind.EDIT and not self.images:
            raise ValueError("an edit job needs at least one input image")
        if self.kind is JobKind.VARIATION and (len(self.images) != 1 or self.mask is not None):
            raise ValueError("a variation job takes exactly one input image and no mask")
        if self.kind is not JobKind.VARIATION and not self.prompt:
            raise ValueError(f"a {self.kind.value} job needs a prompt")
        if self.complexity is not None:
            _check_choice("complexity", self.complexity, Complexity)
        if self.candidates is not None and not 1 <= self.candidates <= 8:
            raise ValueError(f"candidates must be in 1..8, got {self.candidates}")
        if self.output_format == "svg" and self.n != 1:
            raise ValueError("output_format 'svg' makes one image (n=1)")
        if (self.frame_count is not None or self.frame_duration_ms is not None) and self.output_format != "gif":
            raise ValueError("frame_count and frame_duration_ms need output_format 'gif'")
        if self.frame_count is not None and not 2 <= self.frame_count <= 16:
            raise ValueError(f"frame_count must be in 2..16, got {self.frame_count}")
        if self.markup is not None and (self.kind is not JobKind.EDIT or self.mask is not None):
            raise ValueError("markup guides an edit and cannot be combined with a mask")

    @property
    def dimensions(self) -> tuple[int, int] | None:
        """(width, height) for an explicit size, None for 'auto' (the service resolves it)."""
        if self.size == "auto":
            return None
        width, height = self.size.split("x")
        return int(width), int(height)

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
