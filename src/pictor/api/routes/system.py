"""Models, health and metrics."""

from __future__ import annotations

import asyncio
import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pictor.api.dependencies import Caller, Components, components
from pictor.api.errors import ApiError

router = APIRouter()


def _model_card(name: str, worker, created: int = 0) -> dict:
    caps = worker.backend.capabilities
    return {"id": name, "object": "model", "created": created, "owned_by": "pictor",
            "capabilities": {"tasks": sorted(caps.tasks), "native_resolution": caps.native_resolution,
                             "max_side": caps.max_side, "default_steps": caps.default_steps,
                             "previews": caps.previews, "transparent_background": caps.transparent_background,
                             "step_range": list(caps.step_range)},
            "family": getattr(getattr(worker.backend, "family", None), "name", "pictor-embedded"),
            "weights_sha256": worker.backend.weights_hash}


@router.get("/v1/models")
async def list_models(request: Request, _: Caller) -> dict:
    registry = components(request).registry
    return {"object": "list", "data": [_model_card(n, w) for n, w in registry.workers.items()]}


@router.get("/v1/models/{name}")
async def get_model(name: str, request: Request, _: Caller) -> dict:
    registry = components(request).registry
    if name not in registry.workers:
        raise ApiError(404, f"The model '{name}' does not exist.", param="model", code="model_not_found")
    return _model_card(name, registry.workers[name])


@router.get("/v1/usage")
async def usage(request: Request, caller: Caller) -> dict:
    """The caller's tenant: today's images and denoising steps and what it holds (jobs, sessions, files, bytes),
    beside its quotas (null: none)."""
    return await asyncio.to_thread(components(request).quotas.report, caller.tenant_id)


@router.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    parts = getattr(request.app.state, "components", None)
    if parts is None or not parts.registry.workers:
        return Response('{"status":"starting"}', status_code=503, media_type="application/json")
    return Response('{"status":"ready"}', media_type="application/json")


def cache_stats(parts: Components) -> dict[str, tuple[int, int, int]]:
    """(hits, misses, bytes) of the result cache and of the backends' prompt-encoding caches (summed)."""
    stats: dict[str, tuple[int, int, int]] = {}
    result = parts.service.result_cache
    if result is not None:
        stats["result"] = (result.hits, result.misses, result.bytes)
    prompt = [cache for worker in parts.registry.workers.values()
              if (cache := getattr(worker.backend, "prompt_cache", None)) is not None]
    if prompt:
        stats["prompt"] = (sum(c.hits for c in prompt), sum(c.misses for c in prompt), sum(c.bytes for c in prompt))
    return stats


def check_metrics_access(request: Request, settings) -> None:
    """/metrics as `metrics_access` says: counts of every tenant's requests are the operator's, not the world's."""
    access = settings.metrics_access
    if access == "open":
        return
    if access == "off":
        raise ApiError(404, "Not found.", code="not_found")
    if access == "token":
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if settings.metrics_token and hmac.compare_digest(given.encode(), settings.metrics_token.encode()):
            return
        raise ApiError(401, "/metrics needs the metrics token: 'Authorization: Bearer TOKEN'.", code="invalid_api_key")
    host = request.client.host if request.client else ""
    if host not in ("127.0.0.1", "::1", "localhost") and not host.startswith("127."):
        raise ApiError(403, "/metrics answers clients on this machine only (metrics_access = loopback).",
                       code="permission_denied")


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    parts = components(request)
    check_metrics_access(request, parts.settings)
    for name, worker in parts.registry.workers.items():
        parts.metrics.queue_depth.labels(name).set(worker.queue_depth)
        parts.metrics.model_seconds.labels(name).set(worker.model_seconds)
        parts.metrics.dropped.labels(name).set(worker.dropped)
        parts.metrics.stopped.labels(name).set(worker.stopped)
    parts.metrics.caches.update(cache_stats(parts))
    return Response(generate_latest(parts.metrics.registry), media_type=CONTENT_TYPE_LATEST)
