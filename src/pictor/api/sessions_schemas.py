"""Sessions on the wire: request bodies, their mapping onto TurnRequest, and the JSON of sessions and turns.

Images in a turn are base64 data URLs (as a string or `{"image_url": ...}`) or the tenant's own images
(`{"image_id": "img_..."}`, or `{"file_id": ...}` as the Responses API says it). Unknown fields are refused.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pictor.api.schemas import LEGACY_QUALITY, ImageReference, QualityIn, data_url_bytes
from pictor.service.errors import InvalidRequest
from pictor.service.sessions import MAX_TEXT_CHARS, ImageInput, TurnOutcome, TurnRequest
from pictor.storage.database import SessionRecord, TurnRecord


class ImageGiven(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_url: str | None = None
    image_id: str | None = None
    file_id: str | None = None


def image_input(given: str | ImageGiven, param: str, name: str | None = None) -> ImageInput:
    """One image of a request: a data URL's bytes, or a stored image's id (checked against the tenant later)."""
    if isinstance(given, str):
        given = ImageGiven(image_url=given)
    stored = given.image_id or given.file_id
    if (stored is None) == (given.image_url is None):
        raise InvalidRequest(f"Give each of '{param}' as a data URL or as an image_id.", param, "invalid_value")
    if stored is not None:
        return ImageInput(image_id=stored, name=name)
    return ImageInput(data=data_url_bytes(ImageReference(image_url=given.image_url), param), name=name)


class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    size: str | None = None
    quality: QualityIn | None = None
    title: str | None = Field(None, max_length=200)


class TurnCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    images: list[str | ImageGiven] = Field(default_factory=list, max_length=16)
    image_names: list[str | None] = Field(default_factory=list, max_length=16)
    mask: str | ImageGiven | None = None
    markup: str | ImageGiven | None = None
    action: Literal["generate", "edit", "auto"] = "auto"
    parent_turn: str | None = None
    seed: int | None = Field(None, ge=0, lt=2**63 - 16)
    size: str | None = None
    quality: QualityIn | None = None
    output_format: Literal["png", "jpeg", "webp"] = "png"
    output_compression: int | None = Field(None, ge=0, le=100)
    background: Literal["auto", "transparent", "opaque"] = "auto"
    moderation: Literal["auto", "low"] = "auto"
    response_format: Literal["b64_json", "url"] = "b64_json"
    user: str | None = None

    def request(self) -> TurnRequest:
        if len(self.image_names) > len(self.images):
            raise InvalidRequest("image_names names more images than were given.", "image_names", "invalid_value")
        if self.output_compression is not None and self.output_format == "png":
            raise InvalidRequest("output_compression applies to jpeg and webp only.", "output_compression",
                                 "invalid_value")
        names = self.image_names + [None] * (len(self.images) - len(self.image_names))
        images = tuple(image_input(given, "images", name) for given, name in zip(self.images, names))
        mask = image_input(self.mask, "mask") if self.mask is not None else None
        markup = image_input(self.markup, "markup") if self.markup is not None else None
        quality = LEGACY_QUALITY.get(self.quality, self.quality) if self.quality else None
        return TurnRequest(text=self.text, images=images, mask=mask, markup=markup, action=self.action,
                           parent_turn=self.parent_turn, seed=self.seed, size=self.size, quality=quality,
                           output_format=self.output_format,
                           output_compression=100 if self.output_compression is None else self.output_compression,
                           background=self.background, moderation=self.moderation, user=self.user)


def branch_of(tip: str | None, turns: list[TurnRecord]) -> list[str]:
    """Turn ids from the first turn down to the tip: the conversation as it stands."""
    parents = {turn.id: turn.parent_id for turn in turns}
    branch, cursor = [], tip
    while cursor is not None:
        branch.append(cursor)
        cursor = parents.get(cursor)
    return branch[::-1]


def turn_json(turn: TurnRecord, url_for: Callable[[str], str] | None = None,
              children: list[str] | None = None) -> dict[str, Any]:
    params = turn.params
    image: dict[str, Any] = {"id": turn.image_id, "seed": params.get("seed"),
                             "revised_prompt": params.get("revised_prompt"),
                             "unknown_words": params.get("unknown_words", [])}
    if url_for is not None and turn.image_id:
        image["url"] = url_for(turn.image_id)
    body = {"id": turn.id, "object": "session.turn", "session_id": turn.session_id, "index": turn.position,
            "parent": turn.parent_id, "text": turn.text, "prompt": turn.prompt, "action": turn.action,
            "image": image, "inputs": list(turn.inputs), "uploads": list(turn.uploads),
            "references": list(turn.references), "size": params.get("size"), "quality": params.get("quality"),
            "background": params.get("background"), "output_format": params.get("output_format"),
            "model": params.get("model"), "created_at": int(turn.created.timestamp())}
    if children is not None:
        body["children"] = children
        body["branch_tip"] = not children
    return body


def outcome_json(outcome: TurnOutcome, response_format: str, url_for: Callable[[str], str]) -> dict[str, Any]:
    """A new turn as its request's answer: the turn, its image (b64_json or url) and the usage."""
    body = turn_json(outcome.turn)
    if response_format == "url":
        body["image"]["url"] = url_for(outcome.turn.image_id or "")
    else:
        body["image"]["b64_json"] = base64.b64encode(outcome.image.artifact.data).decode()
    if outcome.image.validation is not None:
        body["image"]["validation"] = outcome.image.validation
    body["usage"] = outcome.result.usage
    return body


def session_json(session: SessionRecord, turns: list[TurnRecord], url_for: Callable[[str], str]) -> dict[str, Any]:
    children: dict[str, list[str]] = {turn.id: [] for turn in turns}
    for turn in turns:
        if turn.parent_id in children:
            children[turn.parent_id].append(turn.id)
    options = session.options
    return {"id": session.id, "object": "session", "title": session.title, "model": options.get("model"),
            "size": options.get("size", "auto"), "quality": options.get("quality", "auto"),
            "created_at": int(session.created.timestamp()), "updated_at": int(session.updated.timestamp()),
            "current_turn": session.tip_turn_id, "branch": branch_of(session.tip_turn_id, turns),
            "turns": [turn_json(turn, url_for, children[turn.id]) for turn in turns]}
