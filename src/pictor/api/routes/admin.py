"""The tenant admin API (`admin` keys): the tenant's keys and roles, its policy level, badge and retention, and
its usage beside its quotas. Quotas are read here and set only by the operator (`pictor tenants quota`): a
tenant does not raise its own limits. Every change is an admin audit entry naming the key that made it (the
service, service/tenant_admin.py, records it; this module is the HTTP)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from pictor.api.dependencies import Caller, components
from pictor.api.errors import ApiError
from pictor.api.permissions import ROLES
from pictor.governance.badge import BadgeSettings, Corner
from pictor.storage import ApiKeyInfo
from pictor.storage.tables import utcnow

router = APIRouter()


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # numbers as numbers: "30" is not a number of days

    role: Literal["admin", "member", "reader", "auditor"] = "member"
    label: str | None = Field(None, max_length=200)
    expires_in_days: float | None = Field(None, gt=0, le=3650)


class KeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    grace_hours: float = Field(168, ge=0, le=24 * 90)


class BadgeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    text: str = Field("AI-generated", min_length=1, max_length=64)
    corner: Corner = "bottom-right"
    size: float = Field(0.05, ge=0.01, le=0.25)  # as BadgeSettings checks them
    opacity: float = Field(0.85, ge=0.1, le=1)


class SettingsPatch(BaseModel):
    """Only the fields sent change; `badge: null` or `retention_days: null` turn them off."""

    model_config = ConfigDict(extra="forbid", strict=True)

    moderation_level: Literal["strict", "standard", "low"] | None = None
    badge: BadgeIn | None = None
    retention_days: float | None = Field(None, ge=0, le=36500)


def key_object(key: ApiKeyInfo) -> dict[str, Any]:
    def seconds(value) -> int | None:
        return None if value is None else int(value.timestamp())

    return {"id": key.id, "object": "api_key", "role": key.role, "label": key.label, "hint": key.hint,
            "created_at": seconds(key.created), "expires_at": seconds(key.expires),
            "revoked_at": seconds(key.revoked)}


@router.get("/v1/admin/keys")
async def list_keys(request: Request, caller: Caller) -> dict:
    keys = await asyncio.to_thread(components(request).tenant_admin.keys, caller)
    return {"object": "list", "data": [key_object(key) for key in keys], "roles": list(ROLES)}


@router.post("/v1/admin/keys")
async def create_key(body: KeyCreate, request: Request, caller: Caller) -> dict:
    """A new key of this tenant; its plaintext is in this answer only."""
    expires = utcnow() + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    made = await asyncio.to_thread(components(request).tenant_admin.create_key, caller, body.role, body.label,
                                   expires)
    return {**key_object(made.info), "key": made.plaintext}


@router.post("/v1/admin/keys/{key_id}/revoke")
async def revoke_key(key_id: str, request: Request, caller: Caller) -> dict:
    return key_object(await asyncio.to_thread(components(request).tenant_admin.revoke_key, caller, key_id))


@router.post("/v1/admin/keys/{key_id}/rotate")
async def rotate_key(key_id: str, body: KeyRotate, request: Request, caller: Caller) -> dict:
    """A new key with the old one's role and label; the old one works for `grace_hours` more."""
    until = utcnow() + timedelta(hours=body.grace_hours)
    made = await asyncio.to_thread(components(request).tenant_admin.rotate_key, caller, key_id, until)
    return {**key_object(made.info), "key": made.plaintext, "replaces": key_id,
            "old_key_expires_at": int(until.timestamp())}


@router.get("/v1/admin/settings")
async def get_settings(request: Request, caller: Caller) -> dict:
    settings = await asyncio.to_thread(components(request).tenant_admin.settings, caller)
    return {"object": "tenant.settings", "tenant": caller.tenant_name,
            "moderation_level": settings.get("moderation_level"), "badge": settings.get("badge"),
            "retention_days": settings.get("retention_days"), "quotas": settings.get("quotas") or {}}


@router.patch("/v1/admin/settings")
async def patch_settings(body: SettingsPatch, request: Request, caller: Caller) -> dict:
    sent = body.model_dump(exclude_unset=True)
    changes: dict[str, Any] = {}
    if "moderation_level" in sent:
        changes["moderation_level"] = body.moderation_level
    if "badge" in sent:
        try:
            changes["badge"] = None if body.badge is None else BadgeSettings(**body.badge.model_dump()).to_dict()
        except ValueError as error:  # a text of spaces only
            raise ApiError(400, f"Invalid badge: {error}.", param="badge", code="invalid_value") from None
    if "retention_days" in sent:
        changes["retention_days"] = body.retention_days
    await asyncio.to_thread(components(request).tenant_admin.change_settings, caller, changes)
    return await get_settings(request, caller)
