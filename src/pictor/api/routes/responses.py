"""POST /v1/responses (the image_generation tool only) and GET /v1/responses/{id}, over sessions.

A response without `previous_response_id` opens a new session; with one, it is the next turn after that
response (an older one branches from it). Streaming sends the upstream event names in the upstream order.
"""

from __future__ import annotations

import base64
import itertools
import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from pictor.api.dependencies import Caller, Components, components
from pictor.api.json_bodies import FastJSONResponse
from pictor.api.responses_schemas import (
    WIRE_PARAMS,
    ImageGenerationTool,
    ResponseCreate,
    call_id,
    message_item,
    pending_response,
    read_input,
    response_json,
    turn_id_of,
    turn_request,
)
from pictor.api.sse import sse_event
from pictor.service.errors import NotFoundError, ServiceError
from pictor.service.images import PartialImage
from pictor.service.sessions import ImageInput, NewSession, PreparedTurn, TurnOutcome, new_turn_id
from pictor.storage import NotFound, Principal
from pictor.storage.database import TurnRecord

log = logging.getLogger(__name__)
router = APIRouter()


def _turn(parts: Components, caller: Principal, some_id: str, prefix: str, param: str) -> TurnRecord:
    """The caller's turn behind a response or image call id; unknown and other tenants' ids are the same 404."""
    turn_id = turn_id_of(some_id, prefix)
    try:
        if turn_id is None:
            raise NotFound(some_id)
        return parts.sessions.turn(caller, turn_id)
    except NotFound:
        raise NotFoundError(f"No response with id '{some_id}' was found." if prefix == "resp_"
                            else f"No image_generation_call with id '{some_id}' was found.", param,
                            "not_found") from None


@router.post("/v1/responses")
async def create_response(body: ResponseCreate, request: Request, caller: Caller) -> Response:
    parts = components(request)
    tool = body.image_tool()
    text, images, calls = read_input(body.input)
    for index, call in enumerate(calls):  # earlier image calls given back as input: their images
        images.append(ImageInput(image_id=_turn(parts, caller, call, "ig_", f"input[{index}].id").image_id))
    session_id = parent = None
    if body.previous_response_id is not None:
        previous = _turn(parts, caller, body.previous_response_id, "resp_", "previous_response_id")
        session_id, parent = previous.session_id, previous.id
    quality = tool.quality if tool.quality in ("low", "medium", "high") else None
    new = NewSession(model=tool.model, size=None if tool.size == "auto" else tool.size, quality=quality,
                     title=text[:200])
    turn = turn_request(body, tool, text, images, parent, new_turn_id())
    # Every check (tool, input, references, content policy) happens here, before any answer starts.
    try:
        prepared = await parts.sessions.prepare_turn(caller, session_id, turn, new)
    except ServiceError as error:
        error.param = WIRE_PARAMS.get(error.param or "", error.param)
        raise
    if body.stream:
        return StreamingResponse(_stream(parts, caller, prepared, tool), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache"})
    outcome = await parts.sessions.run_turn(prepared, caller)
    _count(parts, prepared)
    return FastJSONResponse(response_json(outcome.turn, outcome.image.artifact.data))


@router.get("/v1/responses/{response_id}")
async def get_response(response_id: str, request: Request, caller: Caller) -> dict:
    parts = components(request)
    turn = _turn(parts, caller, response_id, "resp_", "response_id")
    data, _ = parts.service.image_bytes(caller, turn.image_id or "")
    return response_json(turn, data)


def _count(parts: Components, prepared: PreparedTurn) -> None:
    parts.metrics.images.labels(prepared.plan.model, prepared.plan.job.kind.value).inc()


async def _stream(parts: Components, caller: Principal, prepared: PreparedTurn,
                  tool: ImageGenerationTool) -> AsyncIterator[bytes]:
    numbers = itertools.count()

    def event(kind: str, **fields) -> bytes:
        return sse_event({"type": kind, **fields, "sequence_number": next(numbers)})

    item_id, plan = call_id(prepared.turn_id), prepared.plan
    pending = pending_response(prepared)
    yield event("response.created", response=pending)
    yield event("response.in_progress", response=pending)
    yield event("response.output_item.added", output_index=0,
                item={"type": "image_generation_call", "id": item_id, "status": "in_progress", "result": None})
    yield event("response.image_generation_call.in_progress", output_index=0, item_id=item_id)
    yield event("response.image_generation_call.generating", output_index=0, item_id=item_id)
    outcome: TurnOutcome | None = None
    try:
        async for update in parts.sessions.stream_turn(prepared, caller, tool.partial_images):
            if isinstance(update, PartialImage):
                yield event("response.image_generation_call.partial_image", output_index=0, item_id=item_id,
                            partial_image_b64=base64.b64encode(update.data).decode(),
                            partial_image_index=update.partial_index, size=plan.size, quality=plan.quality,
                            background=plan.background, output_format=plan.job.output_format)
            else:
                outcome = update
    except Exception as error:  # the status line has gone out: say it in the stream, as upstream does
        if isinstance(error, ServiceError):
            code, message, param = error.code, error.message, error.param
        else:
            log.exception("response stream failed")
            code, message, param = "server_error", "The server had an error while processing your request.", None
        yield event("error", code=code, message=message, param=param)
        failed = {**pending, "status": "failed", "error": {"code": code, "message": message}}
        yield event("response.failed", response=failed)
        return
    assert outcome is not None
    _count(parts, prepared)
    final = response_json(outcome.turn, outcome.image.artifact.data)
    yield event("response.image_generation_call.completed", output_index=0, item_id=item_id)
    yield event("response.output_item.done", output_index=0, item=final["output"][0])
    message = message_item(outcome.turn)
    part = message["content"][0]
    yield event("response.output_item.added", output_index=1,
                item={**message, "status": "in_progress", "content": []})
    yield event("response.content_part.added", output_index=1, item_id=message["id"], content_index=0,
                part={**part, "text": ""})
    yield event("response.output_text.delta", output_index=1, item_id=message["id"], content_index=0,
                delta=part["text"], logprobs=[])
    yield event("response.output_text.done", output_index=1, item_id=message["id"], content_index=0,
                text=part["text"], logprobs=[])
    yield event("response.content_part.done", output_index=1, item_id=message["id"], content_index=0, part=part)
    yield event("response.output_item.done", output_index=1, item=message)
    yield event("response.completed", response=final)

