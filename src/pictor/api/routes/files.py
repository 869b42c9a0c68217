"""Files in the upstream shape: POST /v1/files (purpose `batch`), GET /v1/files[/{id}[/content]], DELETE.

Only batch input files are accepted (JSONL, checked when a batch is created); the batch outputs are files of
purpose `batch_output`. The bytes live in the blob store; the record belongs to the caller's tenant.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response
from starlette.datastructures import UploadFile

from pictor.api.dependencies import Caller, components
from pictor.api.errors import ApiError
from pictor.storage.batches import FileRecord

router = APIRouter()

MAX_FILE_BYTES = 100 * 1024 * 1024  # (the server's request limit applies too)
PURPOSES = ("batch",)


def file_object(record: FileRecord) -> dict[str, Any]:
    return {"id": record.id, "object": "file", "bytes": record.size, "created_at": int(record.created.timestamp()),
            "filename": record.filename, "purpose": record.purpose, "status": "processed", "expires_at": None,
            "status_details": None}


@router.post("/v1/files")
async def upload_file(request: Request, caller: Caller) -> dict[str, Any]:
    try:
        form = await request.form(max_files=1, max_fields=8)
    except Exception as error:
        raise ApiError(400, f"Could not read the multipart form: {error}", code="invalid_form") from None
    upload, purpose = form.get("file"), form.get("purpose")
    if not isinstance(upload, UploadFile):
        raise ApiError(400, "Missing required parameter: 'file' (a file upload).", param="file",
                       code="missing_required_parameter")
    if purpose not in PURPOSES:
        raise ApiError(400, f"Invalid value for 'purpose': {purpose!r}; this server accepts 'batch'.",
                       param="purpose", code="invalid_value")
    name = upload.filename or "upload.jsonl"
    if len(name) > 256 or any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise ApiError(400, "The file name must be at most 256 characters, with no control characters.",
                       param="file", code="invalid_file_name")
    data = await upload.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ApiError(400, f"The file is larger than {MAX_FILE_BYTES} bytes.", param="file", code="file_too_large")
    if not data:
        raise ApiError(400, "The file is empty.", param="file", code="invalid_file")
    record = await asyncio.to_thread(components(request).files.upload, caller.tenant_id, name, data, purpose)
    return file_object(record)


@router.get("/v1/files")
async def list_files(request: Request, caller: Caller, limit: int = Query(20, ge=1, le=10_000),
                     after: str | None = None, purpose: str | None = None) -> dict[str, Any]:
    records, more = components(request).files.page(caller.tenant_id, limit, after, purpose)
    data = [file_object(record) for record in records]
    return {"object": "list", "data": data, "has_more": more,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}


@router.get("/v1/files/{file_id}")
async def get_file(file_id: str, request: Request, caller: Caller) -> dict[str, Any]:
    return file_object(components(request).files.get(caller.tenant_id, file_id))


@router.get("/v1/files/{file_id}/content")
async def file_content(file_id: str, request: Request, caller: Caller) -> Response:
    record, data = await asyncio.to_thread(components(request).files.content, caller.tenant_id, file_id)
    return Response(data, media_type="application/octet-stream",
                    headers={"content-disposition": attachment_disposition(record.filename)})


def attachment_disposition(name: str) -> str:
    """An ASCII fallback name and the exact one in RFC 5987 form: a header carries any name safely."""
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


@router.delete("/v1/files/{file_id}")
async def delete_file(file_id: str, request: Request, caller: Caller) -> dict[str, Any]:
    components(request).files.delete(caller.tenant_id, file_id)
    return {"id": file_id, "object": "file", "deleted": True}
