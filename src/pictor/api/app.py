"""The FastAPI application factory."""

from __future__ import annotations

import logging
import secrets
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response

from pictor.api import logs
from pictor.api.dependencies import Components
from pictor.api.errors import error_response, install_error_handlers
from pictor.api.routes import images, system
from pictor.config import Settings
from pictor.engine.registry import ModelRegistry

log = logging.getLogger("pictor.http")


def create_app(settings: Settings | None = None, registry: ModelRegistry | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.components = Components.build(settings, registry)
        try:
            yield
        finally:
            app.state.components.close()

    app = FastAPI(title="Pictor", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(images.router)
    app.include_router(system.router)

    @app.middleware("http")
    async def observe(request: Request, call_next) -> Response:
        rid = request.headers.get("x-request-id") or secrets.token_hex(8)
        token = logs.request_id.set(rid)
        started = time.perf_counter()
        try:
            length = request.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > settings.max_request_bytes:
                response = error_response(413, f"The request is larger than {settings.max_request_bytes} bytes.",
                                          code="request_too_large")
            else:
                response = await call_next(request)
            route = getattr(request.scope.get("route"), "path", "unmatched")
            elapsed = time.perf_counter() - started
            parts = getattr(request.app.state, "components", None)
            if parts is not None:
                parts.metrics.requests.labels(route, request.method, str(response.status_code)).inc()
                parts.metrics.latency.labels(route).observe(elapsed)
            response.headers["x-request-id"] = rid
            log.info("request", extra={"fields": {"method": request.method, "route": route,
                                                  "status": response.status_code, "ms": round(elapsed * 1000, 1)}})
            return response
        finally:
            logs.request_id.reset(token)

    return app
