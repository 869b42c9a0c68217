"""The Responses API subset on the wire: the request, its `image_generation` tool, its input, and the answers.

A response is a session turn, so its ids are the turn's: `turn_X` answers as response `resp_X`, its image call
as `ig_X` and its message as `msg_X` (a turn made through /v1/sessions can be continued here, and the other way
round). Fields that steer a text model (temperature, reasoning, ...) are accepted and echoed, never used.
"""

from __future__ import annotations

import base64
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pictor.api.schemas import LEGACY_QUALITY, QualityIn
from pictor.api.sessions_schemas import ImageGiven, image_input
from pictor.service.errors import InvalidRequest
from pictor.service.sessions import ImageInput, PreparedTurn, TurnRequest
from pictor.storage.database import TurnRecord

DEFAULT_MODEL = "pictor-embedded"


def response_id(turn_id: str) -> str:
    return "resp_" + turn_id.removeprefix("turn_")


def call_id(turn_id: str) -> str:
    return "ig_" + turn_id.removeprefix("turn_")


def message_id(turn_id: str) -> str:
    return "msg_" + turn_id.removeprefix("turn_")


def turn_id_of(some_id: str, prefix: str) -> str | None:
    """The turn behind a response (`resp_`) or image call (`ig_`) id; None for anything else."""
    return "turn_" + some_id.removeprefix(prefix) if some_id.startswith(prefix) and len(some_id) > len(prefix) \
        else None


class ImageGenerationTool(BaseModel):
    """The upstream tool's options that Pictor honours (input_fidelity and complexity are accepted, no effect)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["image_generation"]
    action: Literal["generate", "edit", "auto"] = "auto"
    background: Literal["transparent", "opaque", "auto"] = "auto"
    input_image_mask: ImageGiven | None = None
    model: str | None = None
    moderation: Literal["auto", "low"] = "auto"
    output_compression: int | None = Field(None, ge=0, le=100)
    output_format: Literal["png", "webp", "jpeg"] = "png"
    partial_images: int = Field(0, ge=0, le=3)
    quality: QualityIn = "auto"
    size: str = "auto"
    input_fidelity: Literal["high", "low"] | None = None
    complexity: Literal["low", "medium", "high"] | None = None


class ResponseCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    input: str | list[dict[str, Any]]
    tools: list[dict[str, Any]] = Field(default_factory=list)
    tool_choice: str | dict[str, Any] | None = None
    previous_response_id: str | None = None
    stream: bool = False
    instructions: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    background: bool | None = None
    user: str | None = None
    safety_identifier: str | None = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    truncation: str | None = None
    include: list[str] | None = None
    text: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    seed: int | None = Field(None, ge=0, lt=2**63 - 16)  # Pictor's addition, as in the Images API

    def image_tool(self) -> ImageGenerationTool:
        """The one image_generation tool; any other tool is a 400 naming it (Pictor has no other tools)."""
        if self.background:
            raise InvalidRequest("Background (asynchronous) responses are not supported; use stream=true.",
                                 "background", "unsupported_value")
        if not self.tools:
            raise InvalidRequest("Pictor answers with images: include the image_generation tool in 'tools'.",
                                 "tools", "missing_required_parameter")
        found = None
        for index, tool in enumerate(self.tools):
            if tool.get("type") != "image_generation":
                raise InvalidRequest(f"Unsupported tool type {tool.get('type')!r}: Pictor offers 'image_generation'.",
                                     f"tools[{index}].type", "unsupported_tool")
            if found is not None:
                raise InvalidRequest("Give the image_generation tool once.", f"tools[{index}]", "invalid_value")
            try:
                found = ImageGenerationTool.model_validate(tool)
            except ValidationError as error:
                first = error.errors()[0]
                field = ".".join(str(part) for part in first["loc"])
                unknown = first["type"] == "extra_forbidden"
                message = (f"Unknown parameter: 'tools[{index}].{field}'." if unknown
                           else f"Invalid value for 'tools[{index}].{field}': {first['msg']}.")
                raise InvalidRequest(message, f"tools[{index}].{field}",
                                     "unknown_parameter" if unknown else "invalid_value") from None
        assert found is not None
        if found.output_compression is not None and found.output_format == "png":
            raise InvalidRequest("output_compression applies to jpeg and webp only.", "tools[0].output_compression",
                                 "invalid_value")
        return found


# What the service calls a parameter, as a Responses request says it (the tool is always tools[0]: the only one).
WIRE_PARAMS = {"size": "tools[0].size", "quality": "tools[0].quality", "background": "tools[0].background",
               "output_format": "tools[0].output_format", "output_compression": "tools[0].output_compression",
               "model": "tools[0].model", "moderation": "tools[0].moderation", "action": "tools[0].action",
               "mask": "tools[0].input_image_mask", "image": "input", "images": "input", "text": "input"}


def read_input(given: str | list[dict[str, Any]]) -> tuple[str, list[ImageInput], list[str]]:
    """(the user's text, its input images, ids of earlier image_generation_call items it points at).

    Only user messages drive the image; system / developer / assistant messages are accepted and not used.
    """
    if isinstance(given, str):
        return given, [], []
    texts: list[str] = []
    images: list[ImageInput] = []
    calls: list[str] = []
    for i, item in enumerate(given):
        kind = item.get("type", "message")
        if kind == "image_generation_call":
            if not isinstance(item.get("id"), str):
                raise InvalidRequest("An image_generation_call item needs its 'id'.", f"input[{i}].id", "invalid_value")
            calls.append(item["id"])
            continue
        if kind != "message":
            raise InvalidRequest(f"Unsupported input item type {kind!r}.", f"input[{i}].type", "invalid_value")
        role = item.get("role")
        if role not in ("user", "system", "developer", "assistant"):
            raise InvalidRequest(f"Invalid role {role!r}.", f"input[{i}].role", "invalid_value")
        if role != "user":
            continue
        content = item.get("content")
        if isinstance(content, str):
            texts.append(content)
            continue
        if not isinstance(content, list):
            raise InvalidRequest("content must be a string or a list of parts.", f"input[{i}].content",
                                 "invalid_value")
        for j, part in enumerate(content):
            where = f"input[{i}].content[{j}]"
            part_type = part.get("type") if isinstance(part, dict) else None
            if part_type == "input_text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif part_type == "input_image":
                given_image = ImageGiven(image_url=part.get("image_url"), file_id=part.get("file_id"))
                images.append(image_input(given_image, where))
            else:
                raise InvalidRequest(f"Unsupported content part {part_type!r}: use input_text or input_image.",
                                     f"{where}.type", "invalid_value")
    text = "\n".join(t.strip() for t in texts if t.strip())
    if not text:
        raise InvalidRequest("The input has no text saying what to make.", "input", "missing_text")
    return text, images, calls


def turn_request(body: ResponseCreate, tool: ImageGenerationTool, text: str, images: list[ImageInput],
                 parent_turn: str | None, turn_id: str) -> TurnRequest:
    mask = image_input(tool.input_image_mask, "tools[0].input_image_mask") if tool.input_image_mask else None
    echo = {"model": body.model, "tools": [tool.model_dump(exclude_none=True)], "instructions": body.instructions,
            "metadata": body.metadata or {}, "previous_response_id": body.previous_response_id,
            "user": body.user, "tool_choice": body.tool_choice if isinstance(body.tool_choice, str) else "auto"}
    return TurnRequest(text=text, images=tuple(images), mask=mask, action=tool.action, parent_turn=parent_turn,
                       seed=body.seed, size=None if tool.size == "auto" else tool.size,
                       quality=LEGACY_QUALITY.get(tool.quality, tool.quality), output_format=tool.output_format,
                       output_compression=100 if tool.output_compression is None else tool.output_compression,
                       background=tool.background, moderation=tool.moderation, model=tool.model,
                       user=body.safety_identifier or body.user, extra={"response": echo}, turn_id=turn_id)


# ---- answers ---------------------------------------------------------------------------------------------------


def _envelope(turn_id: str, session_id: str, echo: dict[str, Any], created: float, completed: float | None,
              output: list[dict], usage: dict | None) -> dict[str, Any]:
    return {"id": response_id(turn_id), "object": "response", "created_at": created, "completed_at": completed,
            "status": "in_progress" if completed is None else "completed",
            "model": echo.get("model") or DEFAULT_MODEL, "output": output,
            "previous_response_id": echo.get("previous_response_id"), "tools": echo.get("tools", []),
            "tool_choice": echo.get("tool_choice", "auto"), "parallel_tool_calls": True,
            "instructions": echo.get("instructions"), "metadata": echo.get("metadata", {}), "error": None,
            "incomplete_details": None, "temperature": 1.0, "top_p": 1.0, "text": {"format": {"type": "text"}},
            "truncation": "disabled", "store": True, "background": False, "user": echo.get("user"), "usage": usage,
            "session_id": session_id, "turn_id": turn_id}


def pending_response(prepared: PreparedTurn) -> dict[str, Any]:
    """The response as `response.created` announces it: in progress, no output yet."""
    echo = prepared.request.extra.get("response", {})
    return _envelope(prepared.turn_id, prepared.session.id, echo, time.time(), None, [], None)


def message_text(turn: TurnRecord) -> str:
    made = f"Edited {turn.inputs[0]}" if turn.action == "edit" and turn.inputs else "Generated an image"
    text = f"{made} ({turn.image_id}) for: {turn.prompt}"
    unknown = turn.params.get("unknown_words") or []
    if unknown:
        text += f" Words the model does not know: {', '.join(unknown)}."
    return text


def call_item(turn: TurnRecord, result_b64: str | None) -> dict[str, Any]:
    params = turn.params
    return {"type": "image_generation_call", "id": call_id(turn.id), "status": "completed", "result": result_b64,
            "revised_prompt": params.get("revised_prompt") or turn.prompt, "action": turn.action,
            "size": params.get("size"), "quality": params.get("quality"), "output_format": params.get("output_format"),
            "background": params.get("background"), "image_id": turn.image_id, "seed": params.get("seed"),
            "unknown_words": params.get("unknown_words", []), "references": list(turn.references)}


def message_item(turn: TurnRecord) -> dict[str, Any]:
    return {"type": "message", "id": message_id(turn.id), "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": message_text(turn), "annotations": []}]}


def usage_of(turn: TurnRecord) -> dict[str, Any]:
    images = turn.params.get("usage") or {}
    inputs, outputs = images.get("input_tokens", 0), images.get("output_tokens", 0)
    return {"input_tokens": inputs, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": outputs,
            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": inputs + outputs}


def response_json(turn: TurnRecord, image_data: bytes) -> dict[str, Any]:
    """A finished turn as a completed response: the image call (base64 result) and a short message."""
    params = turn.params
    # A turn made through /v1/sessions has no Responses request to echo: its tool is what it was made with.
    made_with = {"type": "image_generation", **{key: params.get(key) for key in
                                                ("size", "quality", "output_format", "background")}}
    echo = {"tools": [made_with], **turn.extra.get("response", {})}
    output = [call_item(turn, base64.b64encode(image_data).decode()), message_item(turn)]
    created = turn.created.timestamp()
    return _envelope(turn.id, turn.session_id, echo, created, created, output, usage_of(turn))
