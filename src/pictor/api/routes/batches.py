"""Batches in the upstream shape: POST /v1/batches, GET /v1/batches[/{id}], POST /v1/batches/{id}/cancel.

The work is done by `pictor.service.batches.BatchRunner` on the async jobs; this module owns what is HTTP: the
request model, the batch object, how an error becomes a status and an error body (the app's own handlers, so a
line's error is exactly what the synchronous endpoint would answer), and how a result is rendered.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from pictor.api.dependencies import Caller, Components, components, tenant_links
from pictor.api.jobs_schemas import Endpoint, render_result
from pictor.storage.batches import BatchRecord
from pictor.storage.database import JobRecord

router = APIRouter()

TIMESTAMPS = ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at",
              "cancelled_at", "expires_at")


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_file_id: str
    endpoint: Endpoint
    completion_window: Literal["24h"]
    metadata: dict[str, str] | None = Field(None, max_length=16)
    output_expires_after: dict[str, Any] | None = None  # accepted for SDK compatibility; outputs are kept


def batch_object(parts: Components, record: BatchRecord) -> dict[str, Any]:
    counts = parts.batches.store.counts(record.id)
    failed = counts.get("refused", 0) + counts.get("failed", 0) + counts.get("cancelled", 0)  # a line's job, too
    if record.status in ("cancelled", "expired"):
        failed += counts.get("pending", 0)
    errors = {"object": "list", "data": record.errors} if record.errors else None
    return {"id": record.id, "object": "batch", "endpoint": record.endpoint, "errors": errors,
            "input_file_id": record.input_file_id, "completion_window": record.completion_window,
            "status": record.status, "output_file_id": record.output_file_id, "error_file_id": record.error_file_id,
            "created_at": int(record.created.timestamp()),
            **{name: record.times.get(name) for name in TIMESTAMPS},
            "request_counts": {"total": record.total, "completed": counts.get("succeeded", 0), "failed": failed},
            "metadata": record.metadata or None, "model": None, "usage": None}


def explainer(app: FastAPI):
    """An exception -> (status, error object), by the app's own exception handlers; None for an unexpected one."""
    async def explain(error: Exception) -> tuple[int, dict[str, Any]] | None:
        for kind in type(error).__mro__:
            handler = app.exception_handlers.get(kind)
            if handler is not None and kind is not Exception:
                response = await handler(None, error)  # type: ignore[arg-type]  (the handlers ignore the request)
                return response.status_code, json.loads(response.body)["error"]
        return None

    return explain


def renderer(app: FastAPI):
    def render(batch: BatchRecord, job: JobRecord) -> dict[str, Any]:
        parts: Components = app.state.components
        links = tenant_links(parts, batch.tenant_id, batch.extra.get("base_url", ""))  # where the batch was made
        return render_result(job, parts.service, batch.tenant_id, links)

    return render


@router.post("/v1/batches")
async def create_batch(body: BatchCreate, request: Request, caller: Caller) -> dict[str, Any]:
    parts = components(request)
    record = parts.batches.create(caller, body.input_file_id, body.endpoint, body.completion_window,
                                  body.metadata or {}, {"base_url": str(request.base_url)})
    return batch_object(parts, record)


@router.get("/v1/batches")
async def list_batches(request: Request, caller: Caller, limit: int = Query(20, ge=1, le=100),
                       after: str | None = None) -> dict[str, Any]:
    parts = components(request)
    records = parts.batches.store.list_batches(caller.tenant_id, limit + 1, after)
    data = [batch_object(parts, record) for record in records[:limit]]
    return {"object": "list", "data": data, "has_more": len(records) > limit,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}


@router.get("/v1/batches/{batch_id}")
async def get_batch(batch_id: str, request: Request, caller: Caller) -> dict[str, Any]:
    parts = components(request)
    return batch_object(parts, parts.batches.store.get_batch(caller.tenant_id, batch_id))


@router.post("/v1/batches/{batch_id}/cancel")
async def cancel_batch(batch_id: str, request: Request, caller: Caller) -> dict[str, Any]:
    parts = components(request)
    return batch_object(parts, parts.batches.cancel(caller.tenant_id, batch_id))
