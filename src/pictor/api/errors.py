"""Every error leaves as the OpenAI error shape: {"error": {message, type, param, code}}."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from pictor.service.errors import ServiceError
from pictor.storage import NotFound

log = logging.getLogger(__name__)

STATUS_BY_KIND = {"invalid_request": 400, "not_found": 404, "model_not_found": 404, "model_failure": 500,
                  "moderation_blocked": 400, "quota_exceeded": 429, "rate_limited": 429}


class ApiError(Exception):
    """An error raised by the HTTP layer itself (auth, limits, request shape)."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None,
               details: dict | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code, **(details or {})}}


def error_response(status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                   code: str | None = None, headers: dict[str, str] | None = None,
                   details: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, type_, param, code, details), status_code=status, headers=headers)


def _validation_param(error: dict) -> str | None:
    location = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path")]
    return ".".join(location) or None


def allowed_methods(app: FastAPI, scope: dict) -> list[str]:
    """Every method some route serves at this request's path."""
    methods: set[str] = set()
    found: list = []
    routes = list(app.router.routes)
    while routes:
        route = routes.pop()
        included = getattr(route, "original_router", None)  # an included router (its paths are whole: no prefix)
        if included is not None:
            routes.extend(included.routes)
            continue
        match, _ = route.matches({**scope, "method": "GET"})
        if match != Match.NONE:
            found.append(route)
    # A fixed path wins over a template that also matches it (/v1/images/variations is not /v1/images/{image_id}).
    fixed = [route for route in found if "{" not in getattr(route, "path", "")]
    for route in fixed or found:
        methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.message, error.type, error.param, error.code, error.headers)

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, error: ServiceError) -> JSONResponse:
        status = STATUS_BY_KIND.get(error.kind, 400)
        type_ = "server_error" if status >= 500 else "invalid_request_error"
        headers = None
        if error.kind == "quota_exceeded":
            type_ = "insufficient_quota"  # upstream's type (and code) for an exhausted quota
        elif error.kind == "rate_limited":
            type_ = "rate_limit_error"
            retry = getattr(error, "retry_after", None)
            headers = {"retry-after": str(retry)} if retry else None
        return error_response(status, error.message, type_, error.param, error.code, headers, error.details)

    @app.exception_handler(NotFound)
    async def not_found(_: Request, error: NotFound) -> JSONResponse:
        message = f"No such object: '{error}'." if str(error) else "Not found."
        return error_response(404, message, "invalid_request_error", None, "not_found")

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        param = _validation_param(first)
        kind = first.get("type")
        if kind == "json_invalid":
            return error_response(400, "The request body is not valid JSON.", "invalid_request_error", None,
                                  "invalid_json")
        if kind == "extra_forbidden":
            message, code = f"Unrecognized request argument supplied: {param}", "unknown_parameter"
        elif kind == "missing" and param:
            message, code = f"Missing required parameter: '{param}'.", "missing_required_parameter"
        elif kind == "string_too_long" and param:
            message = f"Invalid '{param}': string too long ({first.get('msg', '')})."
            code = "string_above_max_length"
        else:
            message = f"Invalid value for '{param}': {first.get('msg', 'invalid')}." if param else "Invalid request."
            code = "invalid_value" if param else "invalid_request"
        return error_response(400, message, "invalid_request_error", param, code)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code)
        headers = getattr(error, "headers", None)
        if error.status_code == 405:
            # RFC 9110: Allow names every method of the resource; Starlette names only those of the first route
            # whose path matched, and a path here may be served by several routes (GET and POST /v1/files).
            headers = {"Allow": ", ".join(allowed_methods(app, request.scope))}
        return error_response(error.status_code, str(error.detail), "invalid_request_error", None, code,
                              headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "The server had an error while processing your request.", "server_error")
