"""POST /v1/images/{generations,edits,variations}, and the content of stored images."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from pictor.api.dependencies import Caller, Components, components, image_links, principal
from pictor.api.errors import ApiError, error_body
from pictor.api.forms import read_form, validated
from pictor.api.json_bodies import FastJSONResponse, json_bytes
from pictor.api.schemas import (
    EditFields,
    EditJsonRequest,
    GenerationRequest,
    VariationFields,
    _Common,
    data_url_bytes,
    images_response,
)
from pictor.api.sse import sse_event
from pictor.core import ImageJob, JobKind
from pictor.service.encoding import MIME_TYPES
from pictor.service.errors import ServiceError
from pictor.service.images import KEEP_ALIVE, ImagesResult, PartialImage, Plan
from pictor.service.timings import rounded
from pictor.storage import Principal

log = logging.getLogger(__name__)
router = APIRouter()


async def _answer(request: Request, parts: Components, caller: Principal, job: ImageJob, fields: _Common,
                  event_prefix: str) -> Response:
    # Every check runs before the answer starts, so a refused stream is a plain HTTP error too.
    plan = await parts.service.prepare(job, caller)
    await parts.service.admit(plan, caller)  # a quota refusal is a plain 429, also for a stream
    if fields.stream:
        return StreamingResponse(_stream(parts, caller, plan, fields.partial_images, event_prefix),
                                 media_type="text/event-stream", headers={"cache-control": "no-cache"})
    result = await parts.service.run(plan, caller)
    _count(parts, plan, result)
    started = time.perf_counter()
    # Rendered here: base64 and orjson hold the GIL throughout (under a millisecond for a 1024 px PNG of the embedded
    # model), so a worker thread would not free the event loop, only add a hand-off.
    body = json_bytes(images_response(result, fields.response_format, image_links(request, caller)))
    steps = {"auth": getattr(request.state, "auth_ms", 0.0), **result.steps_ms,
             "response": (time.perf_counter() - started) * 1000}
    parts.metrics.observe_steps(steps)
    # Server-Timing lets clients (and bench/server_overhead.py) tell model time from every other step.
    arrived = getattr(request.state, "arrived", None)
    total_ms = None if arrived is None else (time.perf_counter() - arrived) * 1000
    return FastJSONResponse(body, headers={"server-timing": server_timing(result, steps, total_ms)})


def server_timing(result: ImagesResult, steps: dict[str, float] | None = None, total_ms: float | None = None) -> str:
    """`model;dur=` (ms) first, then every other step of the request (`policy`, `decode`, `validation`, `mark`,
    `encode`, `sign`, `audit`, `store`, `auth`, `response`...), `cache;desc=hit|miss;dur=...` when the request
    was cacheable (it gave a seed): the time spent looking the result up and keeping it, and last `total`: from the
    request's arrival to its answer, so that what no step names is the difference."""
    steps = steps or {}
    parts = [f"model;dur={result.model_seconds * 1000:.1f}"]
    parts += [f"{name};dur={ms:.1f}" for name, ms in steps.items() if name not in ("model", "cache")]
    if result.cache is not None:
        took = f";dur={steps['cache']:.1f}" if "cache" in steps else ""
        parts.append(f"cache;desc={result.cache}{took}")
    if total_ms is not None:
        parts.append(f"total;dur={total_ms:.1f}")
    return ", ".join(parts)


def _count(parts: Components, plan: Plan, result: ImagesResult) -> None:
    parts.metrics.images.labels(plan.model, plan.job.kind.value).inc(len(result.images))


async def _stream(parts: Components, caller: Principal, plan: Plan, partial_images: int,
                  prefix: str) -> AsyncIterator[bytes]:
    try:
        async for event in parts.service.stream(plan, caller, partial_images, parts.settings.sse_keepalive_s or None):
            if event is KEEP_ALIVE:
                yield b": keep-alive\n\n"
                continue
            elif isinstance(event, PartialImage):
                yield sse_event({"type": f"{prefix}.partial_image", "b64_json": base64.b64encode(event.data).decode(),
                                 "partial_image_index": event.partial_index, "created_at": int(time.time()),
                                 "size": plan.size, "quality": plan.quality, "background": plan.background,
                                 "output_format": plan.job.output_format})
                continue
            _count(parts, plan, event)
            parts.metrics.observe_steps(event.steps_ms)
            for produced in event.images:
                yield sse_event({"type": f"{prefix}.completed", "b64_json": base64.b64encode(produced.artifact.data)
                                 .decode(), "created_at": event.created, "size": event.size, "quality": event.quality,
                                 "background": event.background, "output_format": event.output_format,
                                 "usage": event.usage, "id": produced.artifact.id, "seed": produced.seed,
                                 # Server-Timing has gone out with the status line: the steps come here.
                                 "timings_ms": rounded(event.steps_ms)})
    except ServiceError as error:
        type_ = "server_error" if error.kind == "model_failure" else "invalid_request_error"
        yield sse_event({"type": "error", **error_body(error.message, type_, error.param, error.code, error.details)})
    except Exception:  # the status line has gone out: report in the stream, as upstream does
        log.exception("stream failed")
        yield sse_event({"type": "error", **error_body("The server had an error while processing your request.",
                                                       "server_error")})


@router.post("/v1/images/generations")
async def generations(body: GenerationRequest, request: Request, caller: Caller) -> Response:
    parts = components(request)
    job = body.job(JobKind.GENERATE, body.prompt, caller.tenant_id)
    return await _answer(request, parts, caller, job, body, "image_generation")


@router.post("/v1/images/edits")
async def edits(request: Request, caller: Caller) -> Response:
    parts = components(request)
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            raw = await request.json()
        except ValueError:
            raise ApiError(400, "The request body is not valid JSON.", code="invalid_json") from None
        body = validated(EditJsonRequest, raw)
        images = tuple(data_url_bytes(ref, "images") for ref in body.images)
        mask = data_url_bytes(body.mask, "mask") if body.mask is not None else None
        markup = None  # EditJsonRequest.job reads it from the body
    else:
        fields, files = await read_form(request)
        body = validated(EditFields, fields)
        images = tuple(files.get("image", []) + files.get("image[]", []))
        if not images:
            raise ApiError(400, "An edit needs at least one 'image' file.", param="image", code="missing_image")
        masks = files.get("mask", [])
        if len(masks) > 1:
            raise ApiError(400, "Send at most one mask.", param="mask", code="invalid_mask_format")
        mask = masks[0] if masks else None
        markups = files.get("markup", [])
        if len(markups) > 1:
            raise ApiError(400, "Send at most one markup.", param="markup", code="invalid_markup_format")
        markup = markups[0] if markups else None
    job = body.job(JobKind.EDIT, body.prompt, caller.tenant_id, images, mask, markup)
    return await _answer(request, parts, caller, job, body, "image_edit")


@router.post("/v1/images/variations")
async def variations(request: Request, caller: Caller) -> Response:
    parts = components(request)
    fields, files = await read_form(request)
    body = validated(VariationFields, fields)
    images = files.get("image", [])
    if len(images) != 1:
        raise ApiError(400, "A variation needs exactly one 'image' file.", param="image", code="missing_image")
    job = body.job(JobKind.VARIATION, "", caller.tenant_id, (images[0],))
    return await _answer(request, parts, caller, job, body, "image_generation")


@router.get("/v1/images/{image_id}/content")
async def content(image_id: str, request: Request) -> Response:
    """The stored bytes: with an API key, or through a signed link from a `url` response."""
    parts = components(request)
    if "signature" in request.query_params:
        tenant_id = parts.signer.signed_tenant(image_id, request.query_params)
        if tenant_id is None:
            raise ApiError(403, "This link is invalid or has expired.", code="invalid_signature")
        data, fmt = parts.service.tenant_image_bytes(tenant_id, image_id)
    else:
        data, fmt = parts.service.image_bytes(principal(request), image_id)
    return Response(data, media_type=MIME_TYPES[fmt], headers={"cache-control": "private, max-age=3600"})
