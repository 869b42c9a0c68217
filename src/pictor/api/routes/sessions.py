"""Sessions over HTTP: create one, add turns (generate or edit, with references), read it back, undo."""

from __future__ import annotations

from fastapi import APIRouter, Request

from pictor.api.dependencies import Caller, components, image_links
from pictor.api.schemas import LEGACY_QUALITY
from pictor.api.sessions_schemas import SessionCreate, TurnCreate, outcome_json, session_json
from pictor.service.sessions import NewSession

router = APIRouter()


@router.post("/v1/sessions")
async def create_session(body: SessionCreate, request: Request, caller: Caller) -> dict:
    parts = components(request)
    quality = LEGACY_QUALITY.get(body.quality, body.quality) if body.quality else None
    session = parts.sessions.create(caller, NewSession(body.model, body.size, quality, body.title))
    return session_json(session, [], image_links(request, caller))


@router.get("/v1/sessions/{session_id}")
async def get_session(session_id: str, request: Request, caller: Caller) -> dict:
    parts = components(request)
    session, turns = parts.sessions.get(caller, session_id)
    return session_json(session, turns, image_links(request, caller))


@router.post("/v1/sessions/{session_id}/turns")
async def add_turn(session_id: str, body: TurnCreate, request: Request, caller: Caller) -> dict:
    parts = components(request)
    prepared = await parts.sessions.prepare_turn(caller, session_id, body.request())
    outcome = await parts.sessions.run_turn(prepared, caller)
    parts.metrics.images.labels(prepared.plan.model, prepared.plan.job.kind.value).inc()
    return outcome_json(outcome, body.response_format, image_links(request, caller))


@router.post("/v1/sessions/{session_id}/undo")
async def undo(session_id: str, request: Request, caller: Caller) -> dict:
    parts = components(request)
    session, turns = parts.sessions.undo(caller, session_id)
    return session_json(session, turns, image_links(request, caller))
