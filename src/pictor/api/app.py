"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pictor.api import jobs_schemas, logs, openapi
from pictor.api.errors import ApiError, error_response, install_error_handlers
from pictor.api.routes import (
    admin,
    batches,
    files,
    gallery,
    images,
    jobs,
    provenance,
    responses,
    sessions,
    studio,
    system,
)
from pictor.api.security import authenticate
from pictor.api.text_guard import NulGuard
from pictor.assembly import Components
from pictor.config import Settings
from pictor.engine.registry import ModelRegistry
from pictor.service import retention

log = logging.getLogger("pictor.http")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")  # a caller's own id is kept when it looks like one


class BodyLimit:
    """413 for a request body over `max_bytes`, announced by Content-Length or sent in chunks without one.

    A body without a Content-Length is read here (up to the limit) before the route sees it, so that no
    handler ever starts on a body that is too large; with a Content-Length the server enforces the length.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if b"chunked" not in headers.get(b"transfer-encoding", b"").lower():
            await self.app(scope, receive, send)
            return
        messages, total = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            total += len(message.get("body", b""))
            if total > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, f"The request is larger than {self.max_bytes} bytes.",
                                  code="request_too_large", headers={"connection": "close"})
        await response(scope, receive, send)


class KeyBeforeBody:
    """401 for a request with a body to `/v1/` from a caller without a valid key, before the body is read.

    Routes authenticate through their dependencies, which FastAPI resolves only after reading and parsing the
    body: without this, anyone could make the server buffer and parse 100 MB before being turned away. The
    public `/v1` routes (signed image links, trust anchors) are GETs and have no body.
    """

    BODY_METHODS = (b"POST", b"PUT", b"PATCH")

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope["method"].encode() in self.BODY_METHODS
                and scope["path"].startswith("/v1/")):
            parts = getattr(scope["app"].state, "components", None)
            if parts is not None and parts.keyless_principal is None:
                request = Request(scope)
                try:
                    # Kept for the route's own dependency, which then does not look the key up again.
                    request.state.authenticated = await asyncio.to_thread(authenticate, request, parts.database,
                                                                          None)
                except ApiError as error:
                    response = error_response(error.status, error.message, error.type, error.param, error.code,
                                              headers={"connection": "close"})
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _void_abandoned_reservations(parts: Components) -> list[int]:
    """Void the audit reservations of requests whose process died: those older than `audit_reservation_timeout_s`.
    A live process's reservations are younger, so starting or restarting one process fails no other's request."""
    age = parts.settings.audit_reservation_timeout_s
    return parts.governance.audit.void_pending(older_than=datetime.now(UTC) - timedelta(seconds=age))


async def _checkpoint_regularly(parts: Components) -> None:
    """A signed checkpoint within a minute of the last entry even when no further request comes to trigger one,
    after voiding reservations that a dead process left (they would hold every later entry out of checkpoints)."""
    audit = parts.governance.audit
    while True:
        await asyncio.sleep(audit.checkpoint_seconds / 2)
        try:
            await asyncio.to_thread(_void_abandoned_reservations, parts)
            await asyncio.to_thread(audit.maybe_checkpoint)
        except Exception:
            log.exception("audit checkpoint failed")


async def _sweep_regularly(parts: Components) -> None:
    """Images past their tenant's retention period are deleted within `retention_sweep_s`."""
    while True:
        try:
            await asyncio.to_thread(retention.sweep_expired, parts.database, parts.blobs, parts.governance)
        except Exception:
            log.exception("retention sweep failed")
        await asyncio.sleep(parts.settings.retention_sweep_s)


def create_app(settings: Settings | None = None, registry: ModelRegistry | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.components = parts = Components.build(settings, registry)
        _void_abandoned_reservations(parts)  # the serving process only: requests a crash cut short become void
        checkpoints = asyncio.create_task(_checkpoint_regularly(parts))
        sweeps = asyncio.create_task(_sweep_regularly(parts))
        parts.jobs.start(jobs_schemas.parse_request)  # jobs of dead processes are queued again here and later
        parts.batches.start(batches.explainer(app), batches.renderer(app))  # and batches resume
        try:
            yield
        finally:
            await parts.batches.stop()
            await parts.jobs.stop()  # before the model workers close; a running job goes back to the queue
            checkpoints.cancel()
            sweeps.cancel()
            parts.close()

    app = FastAPI(title="Pictor", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    openapi.install(app)
    app.include_router(images.router)
    app.include_router(provenance.router)
    app.include_router(system.router)
    app.include_router(sessions.router)
    app.include_router(responses.router)
    app.include_router(jobs.router)
    app.include_router(files.router)
    app.include_router(batches.router)
    app.include_router(gallery.router)
    app.include_router(admin.router)
    studio.install(app)  # `/` and `/studio/*`: the web studio's static files
    # Inside `observe` (middleware added later wraps what was added before), so a 413 is counted and logged.
    app.add_middleware(NulGuard)  # inside BodyLimit: it reads JSON bodies only once their size is allowed
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(KeyBeforeBody)  # outside BodyLimit: a keyless body is not even buffered

    @app.middleware("http")
    async def observe(request: Request, call_next) -> Response:
        given = request.headers.get("x-request-id", "")
        rid = given if _REQUEST_ID.match(given) else secrets.token_hex(8)
        token = logs.request_id.set(rid)
        started = request.state.arrived = time.perf_counter()  # Server-Timing's `total` counts from here
        try:
            try:
                response = await call_next(request)
            except Exception:  # answered here, not by Starlette's outer handler, so it is counted and tagged too
                log.exception("unhandled error")
                response = error_response(500, "The server had an error while processing your request.",
                                          "server_error")
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
