"""Provenance over HTTP: trust anchors, an image's manifest and lineage, verifying a file, audit proofs."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response

from pictor.api.dependencies import Caller, components
from pictor.api.errors import ApiError
from pictor.api.routes.images import read_form

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
    return components(request).provenance.erase_prompt(caller, image_id)


@router.get("/v1/audit/checkpoint")
async def checkpoint(request: Request, caller: Caller) -> dict:
    return components(request).provenance.checkpoint()


@router.get("/v1/audit/entries/{index}/proof")
async def inclusion(index: int, request: Request, caller: Caller,
                    tree_size: int | None = Query(default=None, ge=1)) -> dict:
    return components(request).provenance.inclusion(caller, index, tree_size)


@router.get("/v1/audit/consistency")
async def consistency(request: Request, caller: Caller, old_size: int = Query(ge=0),
                      new_size: int | None = Query(default=None, ge=0)) -> dict:
    return components(request).provenance.consistency(old_size, new_size)
