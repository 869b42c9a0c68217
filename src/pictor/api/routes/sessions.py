"""Sessions over HTTP: create one, add turns (generate or edit, with references), read it back, undo."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request

from pictor.api.dependencies import Caller, Components, components
from pictor.api.schemas import LEGACY_QUALITY
from pictor.api.sessions_schemas import SessionCreate, TurnCreate, outcome_json, session_json
from pictor.service.sessions import NewSession
from pictor.storage import Principal

router = APIRouter()


def links(request: Request, parts: Components, caller: Principal) -> Callable[[str], str]:
    """Signed links to the caller's images (the same links as `response_format=url` answers carry)."""
    base = (parts.settings.public_url or str(request.base_url)).rstrip("/")
    return lambda image_id: (parts.presigned_link(caller.tenant_id, image_id)
                             or f"{base}/v1/images/{image_id}/content?{parts.signer.query(caller.tenant_id, image_id)}")


@router.post("/v1/sessions")
async def create_session(body: SessionCreate, request: Request, caller: Caller) -> dict:
    parts = components(request)
    quality = LEGACY_QUALITY.get(body.quality, body.quality) if body.quality else None
    session = parts.sessions.create(caller, NewSession(body.model, body.size, quality, body.title))
    return session_json(session, [], links(request, parts, caller))


@router.get("/v1/sessions/{session_id}")
async def get_session(session_id: str, request: Request, caller: Caller) -> dict:
    parts = components(request)
    session, turns = parts.sessions.get(caller, session_id)
    return session_json(session, turns, links(request, parts, caller))


@router.post("/v1/sessions/{session_id}/turns")
async def add_turn(session_id: str, body: TurnCreate, request: Request, caller: Caller) -> dict:
    parts = components(request)
    prepared = await parts.sessions.prepare_turn(caller, session_id, body.request())
    outcome = await parts.sessions.run_turn(prepared, caller)
    parts.metrics.images.labels(prepared.plan.model, prepared.plan.job.kind.value).inc()
    return outcome_json(outcome, body.response_format, links(request, parts, caller))


@router.post("/v1/sessions/{session_id}/undo")
async def undo(session_id: str, request: Request, caller: Caller) -> dict:
    parts = components(request)
    session, turns = parts.sessions.undo(caller, session_id)
    return session_json(session, turns, links(request, parts, caller))
