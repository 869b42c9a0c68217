"""Async jobs: POST /v1/jobs, GET /v1/jobs[/{id}], POST /v1/jobs/{id}/cancel, GET /v1/jobs/{id}/events (SSE).

A job's `request` is the JSON body of a synchronous Images endpoint, parsed by the same models and checks, so a
bad request is the same 400 now rather than a failed job later. Results are rendered on read from the stored
image ids: the same body the synchronous endpoint returns, with fresh signed links for `url`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from pictor.api.dependencies import Caller, Components, components, image_links
from pictor.api.jobs_schemas import GENERATIONS, Endpoint, render_result
from pictor.api.sse import sse_event
from pictor.service.jobs import is_terminal
from pictor.storage import Principal
from pictor.storage.database import JobRecord

router = APIRouter()


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request: dict[str, Any]
    endpoint: Endpoint = GENERATIONS
    priority: int = Field(0, ge=0, le=9)
    metadata: dict[str, str] | None = Field(None, max_length=16)


def job_object(parts: Components, caller: Principal, record: JobRecord, links: Callable[[str], str],
               with_result: bool = True) -> dict[str, Any]:
    def seconds(value) -> int | None:
        return int(value.timestamp()) if value is not None else None

    body: dict[str, Any] = {
        "id": record.id, "object": "image.job", "status": record.status, "created_at": seconds(record.created),
        "started_at": seconds(record.started), "completed_at": seconds(record.finished), "priority": record.priority,
        "endpoint": record.endpoint, "progress": record.progress, "metadata": record.metadata,
        "result": None, "error": record.error}
    if with_result and record.status == "succeeded" and record.result is not None:
        body["result"] = render_result(record, parts.service, caller.tenant_id, links)
        body["timings_ms"] = record.result.get("timings_ms")  # the steps of its run, as Server-Timing names them
    return body


@router.post("/v1/jobs")
async def create_job(body: JobCreate, request: Request, caller: Caller) -> JSONResponse:
    parts = components(request)
    record = await parts.jobs.submit(caller, body.endpoint, body.request, body.priority, body.metadata)
    return JSONResponse(job_object(parts, caller, record, image_links(request, caller)), status_code=202)


@router.get("/v1/jobs")
async def list_jobs(request: Request, caller: Caller, limit: int = Query(20, ge=1, le=100)) -> dict[str, Any]:
    """Newest first, without results (read one job for its images)."""
    parts = components(request)
    records = parts.jobs.store.list_jobs(caller.tenant_id, limit + 1)
    links = image_links(request, caller)
    data = [job_object(parts, caller, record, links, with_result=False) for record in records[:limit]]
    return {"object": "list", "data": data, "has_more": len(records) > limit}


@router.get("/v1/jobs/{job_id}")
async def get_job(job_id: str, request: Request, caller: Caller) -> dict[str, Any]:
    parts = components(request)
    return job_object(parts, caller, parts.jobs.store.get_job(caller.tenant_id, job_id), image_links(request, caller))


@router.post("/v1/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, request: Request, caller: Caller) -> dict[str, Any]:
    parts = components(request)
    return job_object(parts, caller, parts.jobs.cancel(caller.tenant_id, job_id), image_links(request, caller))


@router.get("/v1/jobs/{job_id}/events")
async def job_events(job_id: str, request: Request, caller: Caller) -> StreamingResponse:
    parts = components(request)
    parts.jobs.store.get_job(caller.tenant_id, job_id)  # a 404 before the stream starts
    return StreamingResponse(_events(parts, caller, job_id, image_links(request, caller)),
                             media_type="text/event-stream", headers={"cache-control": "no-cache"})


async def _events(parts: Components, caller: Principal, job_id: str,
                  links: Callable[[str], str]) -> AsyncIterator[bytes]:
    """The job's current state, then each change as it happens, until a terminal event; comments keep idle
    connections (and proxies) alive."""
    queue = parts.jobs.subscribe(job_id)  # before reading the state, so no change between the two is lost
    try:
        record = parts.jobs.store.get_job(caller.tenant_id, job_id)
        sent = record.status
        yield sse_event({"type": f"job.{record.status}", "job": job_object(parts, caller, record, links)})
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
            yield sse_event({"type": event, "job": job_object(parts, caller, record, links)})
    finally:
        parts.jobs.unsubscribe(job_id, queue)
