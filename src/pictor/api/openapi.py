"""The served OpenAPI document, made to describe what the server really does.

FastAPI documents what it can see: typed JSON bodies, and a 422 for validation errors. Pictor answers
validation errors with 400 in the upstream error shape, reads multipart bodies itself, and returns dicts, so
the document is completed here: a success schema for every operation (the models below are documentation;
the routes keep building their bodies), the error shape under every status a route can answer, the multipart
request bodies, and 202 where a job is accepted. Generated clients and contract tests (schemathesis in CI)
then learn the real contract.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

from pictor.api.schemas import EditFields, EditJsonRequest, VariationFields

# ---- documentation models -----------------------------------------------------------------------


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")  # fields may be added; clients ignore what they do not know


class ErrorObject(_Open):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    error: ErrorObject


class ImageData(_Open):
    id: str
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None
    seed: int | None = None
    unknown_words: list[str] = Field(default_factory=list)


class ImagesResponse(_Open):
    created: int
    data: list[ImageData]
    background: str | None = None
    output_format: str | None = None
    quality: str | None = None
    size: str | None = None
    usage: dict[str, Any] | None = None


class ModelCard(_Open):
    id: str
    object: Literal["model"]


class ModelList(_Open):
    object: Literal["list"]
    data: list[ModelCard]


class JobObject(_Open):
    id: str
    object: Literal["image.job"]
    status: str
    endpoint: str
    progress: float
    result: ImagesResponse | None
    error: dict[str, Any] | None


class JobList(_Open):
    object: Literal["list"]
    data: list[JobObject]


class FileObject(_Open):
    id: str
    object: Literal["file"]
    bytes: int
    created_at: int
    filename: str
    purpose: str


class FileList(_Open):
    object: Literal["list"]
    data: list[FileObject]


class Deleted(_Open):
    id: str
    deleted: bool


class BatchObject(_Open):
    id: str
    object: Literal["batch"]
    endpoint: str
    status: str
    input_file_id: str
    request_counts: dict[str, int]


class BatchList(_Open):
    object: Literal["list"]
    data: list[BatchObject]


class TurnObject(_Open):
    id: str
    object: Literal["session.turn"]
    session_id: str
    text: str
    image: dict[str, Any]


class SessionObject(_Open):
    id: str
    object: Literal["session"]
    turns: list[TurnObject]


class GalleryList(_Open):
    object: Literal["list"]
    data: list[dict[str, Any]]
    has_more: bool


class Lineage(_Open):
    id: str
    ancestors: list[dict[str, Any]]
    descendants: list[dict[str, Any]]
    edges: list[dict[str, Any]]


class Verification(_Open):
    c2pa: dict[str, Any] | None
    image: dict[str, Any] | None
    watermark: dict[str, Any]


class Checkpoint(_Open):
    size: int
    root: str
    checkpoint: str


class Status(_Open):
    status: str


class Usage(_Open):
    object: Literal["usage"]
    day: str
    used: dict[str, int]
    quotas: dict[str, int | None]


class KeyObject(_Open):
    id: str
    object: Literal["api_key"]
    role: str


class KeyList(_Open):
    object: Literal["list"]
    data: list[KeyObject]


class TenantSettings(_Open):
    object: Literal["tenant.settings"]
    quotas: dict[str, int]


class ResponseObject(_Open):
    id: str
    object: Literal["response"]
    output: list[dict[str, Any]]


SUCCESS: dict[tuple[str, str], tuple[int, type[BaseModel] | str]] = {
    ("post", "/v1/images/generations"): (200, ImagesResponse),
    ("post", "/v1/images/edits"): (200, ImagesResponse),
    ("post", "/v1/images/variations"): (200, ImagesResponse),
    ("get", "/v1/images"): (200, GalleryList),
    ("get", "/v1/images/{image_id}/content"): (200, "image/*"),
    ("get", "/v1/images/{image_id}/provenance"): (200, _Open),
    ("get", "/v1/images/{image_id}/lineage"): (200, Lineage),
    ("delete", "/v1/images/{image_id}/prompt"): (200, _Open),
    ("delete", "/v1/images/{image_id}"): (200, Deleted),
    ("get", "/v1/provenance/trust_anchors"): (200, "application/x-pem-file"),
    ("post", "/v1/provenance/verify"): (200, Verification),
    ("get", "/v1/audit/checkpoint"): (200, Checkpoint),
    ("get", "/v1/audit/entries/{index}/proof"): (200, _Open),
    ("get", "/v1/audit/consistency"): (200, _Open),
    ("get", "/v1/models"): (200, ModelList),
    ("get", "/v1/models/{name}"): (200, ModelCard),
    ("get", "/v1/usage"): (200, Usage),
    ("get", "/v1/admin/keys"): (200, KeyList),
    ("post", "/v1/admin/keys"): (200, KeyObject),
    ("post", "/v1/admin/keys/{key_id}/revoke"): (200, KeyObject),
    ("post", "/v1/admin/keys/{key_id}/rotate"): (200, KeyObject),
    ("get", "/v1/admin/settings"): (200, TenantSettings),
    ("patch", "/v1/admin/settings"): (200, TenantSettings),
    ("get", "/healthz"): (200, Status),
    ("get", "/readyz"): (200, Status),
    ("get", "/metrics"): (200, "text/plain"),
    ("post", "/v1/sessions"): (200, SessionObject),
    ("get", "/v1/sessions/{session_id}"): (200, SessionObject),
    ("post", "/v1/sessions/{session_id}/turns"): (200, TurnObject),
    ("post", "/v1/sessions/{session_id}/undo"): (200, SessionObject),
    ("post", "/v1/responses"): (200, ResponseObject),
    ("get", "/v1/responses/{response_id}"): (200, ResponseObject),
    ("post", "/v1/jobs"): (202, JobObject),
    ("get", "/v1/jobs"): (200, JobList),
    ("get", "/v1/jobs/{job_id}"): (200, JobObject),
    ("post", "/v1/jobs/{job_id}/cancel"): (200, JobObject),
    ("get", "/v1/jobs/{job_id}/events"): (200, "text/event-stream"),
    ("post", "/v1/files"): (200, FileObject),
    ("get", "/v1/files"): (200, FileList),
    ("get", "/v1/files/{file_id}"): (200, FileObject),
    ("delete", "/v1/files/{file_id}"): (200, Deleted),
    ("get", "/v1/files/{file_id}/content"): (200, "application/octet-stream"),
    ("post", "/v1/batches"): (200, BatchObject),
    ("get", "/v1/batches"): (200, BatchList),
    ("get", "/v1/batches/{batch_id}"): (200, BatchObject),
    ("post", "/v1/batches/{batch_id}/cancel"): (200, BatchObject),
}

STREAMING = {("post", "/v1/images/generations"), ("post", "/v1/images/edits"), ("post", "/v1/responses")}
PUBLIC = {"/healthz", "/readyz", "/metrics", "/v1/provenance/trust_anchors"}

# Each server-sent event's data: a JSON object naming its type (image_generation.partial_image, job.succeeded...).
SSE_EVENT = {"type": "object", "properties": {"type": {"type": "string"}}, "required": ["type"]}
_FILE = {"type": "string", "format": "binary"}
MULTIPART: dict[tuple[str, str], tuple[type[BaseModel] | None, dict[str, Any], list[str]]] = {
    # (fields model, file parts, required parts)
    ("post", "/v1/images/edits"): (EditFields, {"image": _FILE, "image[]": {"type": "array", "items": _FILE},
                                                "mask": _FILE, "markup": _FILE}, ["prompt"]),
    ("post", "/v1/images/variations"): (VariationFields, {"image": _FILE}, ["image"]),
    ("post", "/v1/provenance/verify"): (None, {"image": _FILE}, ["image"]),
    ("post", "/v1/files"): (None, {"file": _FILE, "purpose": {"type": "string", "enum": ["batch"]}},
                            ["file", "purpose"]),
}
JSON_ALTERNATIVE = {("post", "/v1/images/edits"): EditJsonRequest}

ERROR_DESCRIPTIONS = {
    400: "Invalid request (the upstream error shape; also a content-policy refusal)",
    401: "No API key, or an unknown, expired or revoked one",
    403: "Beyond the key's role, or a signed link that is invalid or expired",
    404: "No such object in the caller's tenant",
    413: "The request body is larger than the server accepts",
    429: "Rate limit reached (see Retry-After), or a quota (code insufficient_quota)",
    500: "Server error (the model failed, or an unexpected error)",
    503: "The server is starting",
}


def _error_statuses(method: str, path: str, operation: dict) -> list[int]:
    statuses = [500]
    if path.startswith("/v1/") and path not in PUBLIC:
        statuses += [400, 401, 403, 404, 429]  # 403: beyond the key's role; 404: not in the caller's tenant
    if operation.get("requestBody") is not None or method in ("post", "put", "patch"):
        statuses += [400, 413]
    if path == "/v1/images/{image_id}/content":
        statuses += [400, 403]
    if path == "/readyz":
        statuses.append(503)
    if path == "/metrics":
        statuses += [401, 403, 404]  # metrics_access: token, loopback, off
    return sorted(set(statuses))


def _schema_ref(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _multipart_body(spec: tuple[type[BaseModel] | None, dict[str, Any], list[str]],
                    components: dict[str, Any]) -> dict[str, Any]:
    model, files, required = spec
    properties: dict[str, Any] = {}
    if model is not None:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        properties.update(schema.get("properties", {}))
    properties.update(files)
    return {"type": "object", "properties": properties, "required": required}


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """Add success schemas, error responses, multipart bodies and 202s to FastAPI's document (in place)."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    document["components"]["securitySchemes"] = {"apiKey": {"type": "http", "scheme": "bearer"}}
    error_ref = _schema_ref(ErrorResponse, components)
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            key = (method, path)
            responses: dict[str, Any] = {}
            status, body = SUCCESS.get(key, (200, _Open))
            if body == "text/event-stream":
                content: dict[str, Any] = {body: {"schema": SSE_EVENT}}
            elif isinstance(body, str):
                content = {body: {"schema": {"type": "string"}}}
            else:
                content = {"application/json": {"schema": _schema_ref(body, components)}}
            if key in STREAMING:
                content["text/event-stream"] = {"schema": SSE_EVENT}
            responses[str(status)] = {"description": "Success", "content": content}
            if key in MULTIPART:
                bodies = {"multipart/form-data": {"schema": _multipart_body(MULTIPART[key], components)}}
                if key in JSON_ALTERNATIVE:
                    bodies["application/json"] = {"schema": _schema_ref(JSON_ALTERNATIVE[key], components)}
                operation["requestBody"] = {"required": True, "content": bodies}
            for code in _error_statuses(method, path, operation):
                responses[str(code)] = {"description": ERROR_DESCRIPTIONS[code],
                                        "content": {"application/json": {"schema": error_ref}}}
            operation["responses"] = responses
            if path.startswith("/v1/") and path not in PUBLIC:
                operation["security"] = [{"apiKey": []}]
    return document


def install(app: FastAPI) -> None:
    """Serve the completed document at /openapi.json (built once, on first request)."""
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(get_openapi(title=app.title, version=app.version, routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
