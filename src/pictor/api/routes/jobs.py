"""Async jobs: POST /v1/jobs, GET /v1/jobs[/{id}], POST /v1/jobs/{id}/cancel, GET /v1/jobs/{id}/events (SSE).

A job's `request` is the JSON body of a synchronous Images endpoint, parsed by the same models and checks, so a
bad request is the same 400 now rather than a failed job later. Results are rendered on read from the stored
image ids: the same body the synchronous endpoint returns, with fresh signed links for `url`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from pictor.api.dependencies import Caller, Components, components
from pictor.api.routes.images import url_for, validated
from pictor.api.schemas import (
    EditJsonRequest,
    GenerationRequest,
    VariationJsonRequest,
    _Common,
    data_url_bytes,
    images_response,
)
from pictor.api.sse import sse_event
from pictor.core import Artifact, ImageJob, JobKind
from pictor.service.errors import InvalidRequest
from pictor.service.images import ImagesResult, ProducedImage
from pictor.service.jobs import is_terminal
from pictor.storage import Principal
from pictor.storage.database import JobRecord

router = APIRouter()

GENERATIONS, EDITS, VARIATIONS = "/v1/images/generations", "/v1/images/edits", "/v1/images/variations"
Endpoint = Literal["/v1/images/generations", "/v1/images/edits", "/v1/images/variations"]


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request: dict[str, Any]
    endpoint: Endpoint = GENERATIONS
    priority: int = Field(0, ge=0, le=9)
    metadata: dict[str, str] | None = Field(None, max_length=16)


def parse_request(endpoint: str, body: dict[str, Any], tenant_id: str) -> ImageJob:
    """A job's request body into an ImageJob, exactly as the synchronous endpoint would parse it."""
    fields: _Common
    images: tuple[bytes, ...] = ()
    mask = None
    if endpoint == EDITS:
        fields = edit = validated(EditJsonRequest, body)
        images = tuple(data_url_bytes(ref, "images") for ref in edit.images)
        mask = data_url_bytes(edit.mask, "mask") if edit.mask is not None else None
        kind, prompt = JobKind.EDIT, edit.prompt
    elif endpoint == VARIATIONS:
        fields = variation = validated(VariationJsonRequest, body)
        images = (data_url_bytes(variation.image, "image"),)
        kind, prompt = JobKind.VARIATION, ""
    else:
        fields = generation = validated(GenerationRequest, body)
        kind, prompt = JobKind.GENERATE, generation.prompt
    if fields.stream:
        raise InvalidRequest("A job reports through GET /v1/jobs/{id}/events; 'stream' is not available in a job.",
                             "stream", "invalid_value")
    return fields.job(kind, prompt, tenant_id, images, mask)


def _result(request: Request, parts: Components, caller: Principal, record: JobRecord) -> dict[str, Any]:
    return render_result(parts, caller, record, url_for(request, parts, caller))


def render_result(parts: Components, caller: Principal, record: JobRecord,
                  url: Callable[[str], str]) -> dict[str, Any]:
    """A succeeded job's result as the synchronous endpoint's body (`url` makes an image's signed link)."""
    summary = record.result or {}
    response_format = record.request.get("response_format")
    produced = []
    for item in summary.get("images", []):
        data = b""
        if response_format != "url":
            data = parts.blobs.get(parts.database.get_image(caller.tenant_id, item["id"]).content_hash)
        artifact = Artifact(id=item["id"], data=data, format=summary["output_format"], width=item["width"],
                            height=item["height"])
        produced.append(ProducedImage(artifact, item["seed"], item.get("revised_prompt"), item["unknown_words"],
                                      item.get("validation")))
    result = ImagesResult(created=summary["created"], images=produced, size=summary["size"],
                          quality=summary["quality"], background=summary["background"],
                          output_format=summary["output_format"], usage=summary["usage"],
                          svg_usage=summary.get("svg_usage"))
    return images_response(result, response_format, url)


def job_object(request: Request, parts: Components, caller: Principal, record: JobRecord,
               with_result: bool = True) -> dict[str, Any]:
    def seconds(value) -> int | None:
        return int(value.timestamp()) if value is not None else None

    body: dict[str, Any] = {
        "id": record.id, "object": "image.job", "status": record.status, "created_at": seconds(record.created),
        "started_at": seconds(record.started), "completed_at": seconds(record.finished), "priority": record.priority,
        "endpoint": record.endpoint, "progress": record.progress, "metadata": record.metadata,
        "result": None, "error": record.error}
    if with_result and record.status == "succeeded" and record.result is not None:
        body["result"] = _result(request, parts, caller, record)
    return body


@router.post("/v1/jobs")
async def create_job(body: JobCreate, request: Request, caller: Caller) -> JSONResponse:
    parts = components(request)
    record = await parts.jobs.submit(caller, body.endpoint, body.request, body.priority, body.metadata)
    return JSONResponse(job_object(request, parts, caller, record), status_code=202)


@router.get("/v1/jobs")
async def list_jobs(request: Request, caller: Caller, limit: int = Query(20, ge=1, le=100)) -> dict[str, Any]:
    """Newest first, without results (read one job for its images)."""
    parts = components(request)
    records = parts.jobs.store.list_jobs(caller.tenant_id, limit + 1)
    data = [job_object(request, parts, caller, record, with_result=False) for record in records[:limit]]
    return {"object": "list", "data": data, "has_more": len(records) > limit}


@router.get("/v1/jobs/{job_id}")
async def get_job(job_id: str, request: Request, caller: Caller) -> dict[str, Any]:
    parts = components(request)
    return job_object(request, parts, caller, parts.jobs.store.get_job(caller.tenant_id, job_id))


@router.post("/v1/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, request: Request, caller: Caller) -> dict[str, Any]:
    parts = components(request)
    return job_object(request, parts, caller, parts.jobs.cancel(caller.tenant_id, job_id))


@router.get("/v1/jobs/{job_id}/events")
async def job_events(job_id: str, request: Request, caller: Caller) -> StreamingResponse:
    parts = components(request)
    parts.jobs.store.get_job(caller.tenant_id, job_id)  # a 404 before the stream starts
    return StreamingResponse(_events(request, parts, caller, job_id), media_type="text/event-stream",
                             headers={"cache-control": "no-cache"})


async def _events(request: Request, parts: Components, caller: Principal, job_id: str) -> AsyncIterator[bytes]:
    """The job's current state, then each change as it happens, until a terminal event; comments keep idle
    connections (and proxies) alive."""
    queue = parts.jobs.subscribe(job_id)  # before reading the state, so no change between the two is lost
    try:
        record = parts.jobs.store.get_job(caller.tenant_id, job_id)
        sent = record.status
        yield sse_event({"type": f"job.{record.status}", "job": job_object(request, parts, caller, record)})
        while not is_terminal(sent):
            try:
                event = await asyncio.wait_for(queue.get(), parts.settings.sse_keepalive_s or None)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            record = parts.jobs.store.get_job(caller.tenant_id, job_id)
            status_event = event != "job.progress"
            if status_event and event == f"job.{sent}":
                continue  # already announced with the first state
            if status_event:
                sent = event.removeprefix("job.")
            yield sse_event({"type": event, "job": job_object(request, parts, caller, record)})
    finally:
        parts.jobs.unsubscribe(job_id, queue)
