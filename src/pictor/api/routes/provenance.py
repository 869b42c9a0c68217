"""Provenance over HTTP: trust anchors, an image's manifest and lineage, verifying a file, audit proofs."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Path, Query, Request, Response

from pictor.api.dependencies import Caller, components
from pictor.api.errors import ApiError
from pictor.api.forms import read_form
from pictor.api.schemas import MAX_SQL_INTEGER

router = APIRouter()


@router.get("/v1/provenance/trust_anchors")
async def trust_anchors(request: Request) -> Response:
    """Public: the root certificate(s) that C2PA verifiers should trust for Pictor's manifests."""
    return Response(components(request).provenance.trust_anchors, media_type="application/x-pem-file")


@router.post("/v1/provenance/verify")
async def verify(request: Request, caller: Caller) -> dict:
    _, files = await read_form(request)
    images = files.get("image", [])
    if len(images) != 1:
        raise ApiError(400, "Send exactly one 'image' file to verify.", param="image", code="missing_image")
    return components(request).provenance.verify(caller, images[0])


@router.get("/v1/images/{image_id}/provenance")
async def image_provenance(image_id: str, request: Request, caller: Caller) -> dict:
    return components(request).provenance.image_provenance(caller, image_id)


@router.get("/v1/images/{image_id}/lineage")
async def lineage(image_id: str, request: Request, caller: Caller) -> dict:
    return components(request).provenance.lineage(caller, image_id)


@router.delete("/v1/images/{image_id}/prompt")
async def erase_prompt(image_id: str, request: Request, caller: Caller) -> dict:
    parts = components(request)
    erased = parts.provenance.erase_prompt(caller, image_id)
    parts.service.forget_cached(caller.tenant_id)
    parts.governance.record_admin("prompt_erased", tenant=caller.tenant_id, actor=f"key:{caller.key_id}",
                                  key_id=caller.key_id, image_id=image_id)
    return erased


@router.delete("/v1/images/{image_id}")
async def delete_image(image_id: str, request: Request, caller: Caller) -> dict:
    """Delete the image's bytes and its prompt everywhere; provenance and lineage keep a tombstone."""
    record = await asyncio.to_thread(components(request).gallery.delete, caller, image_id)
    return {"id": record.id, "object": "image", "deleted": True, "deleted_at": int(record.deleted.timestamp())}


@router.get("/v1/audit/checkpoint")
async def checkpoint(request: Request, caller: Caller) -> dict:
    return components(request).provenance.checkpoint()


@router.get("/v1/audit/entries/{index}/proof")
async def inclusion(request: Request, caller: Caller, index: int = Path(ge=0, lt=MAX_SQL_INTEGER),
                    tree_size: int | None = Query(default=None, ge=1, le=MAX_SQL_INTEGER)) -> dict:
    return components(request).provenance.inclusion(caller, index, tree_size)


@router.get("/v1/audit/consistency")
async def consistency(request: Request, caller: Caller, old_size: int = Query(ge=0, le=MAX_SQL_INTEGER),
                      new_size: int | None = Query(default=None, ge=0, le=MAX_SQL_INTEGER)) -> dict:
    return components(request).provenance.consistency(old_size, new_size)
