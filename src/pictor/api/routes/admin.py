"""The tenant admin API (`admin` keys): the tenant's keys and roles, its policy level, badge and retention, and
its usage beside its quotas. Quotas are read here and set only by the operator (`pictor tenants quota`): a
tenant does not raise its own limits. Every change is an admin audit entry naming the key that made it."""

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
from pictor.storage import ApiKeyNotFound, Principal
from pictor.storage.database import ApiKeyInfo
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


def _own_key(parts, caller: Principal, key_id: str) -> ApiKeyInfo:
    for key in parts.database.list_keys(caller.tenant_id):
        if key.id == key_id:
            return key
    raise ApiError(404, f"No API key '{key_id}' in this tenant.", param="key_id", code="not_found")


def _record(parts, caller: Principal, action: str, **details: Any) -> None:
    parts.governance.record_admin(action, tenant=caller.tenant_id, actor=f"key:{caller.key_id}",
                                  key_id=caller.key_id, **details)


@router.get("/v1/admin/keys")
async def list_keys(request: Request, caller: Caller) -> dict:
    keys = await asyncio.to_thread(components(request).database.list_keys, caller.tenant_id)
    return {"object": "list", "data": [key_object(key) for key in keys], "roles": list(ROLES)}


@router.post("/v1/admin/keys")
async def create_key(body: KeyCreate, request: Request, caller: Caller) -> dict:
    """A new key of this tenant; its plaintext is in this answer only."""
    parts = components(request)
    expires = utcnow() + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    made = await asyncio.to_thread(parts.database.create_key, caller.tenant_id, body.label, body.role, expires)
    await asyncio.to_thread(_record, parts, caller, "key_created", subject_key=made.info.id, role=body.role,
                            expires=None if expires is None else expires.isoformat())
    return {**key_object(made.info), "key": made.plaintext}


@router.post("/v1/admin/keys/{key_id}/revoke")
async def revoke_key(key_id: str, request: Request, caller: Caller) -> dict:
    parts = components(request)
    _own_key(parts, caller, key_id)
    revoked = await asyncio.to_thread(parts.database.revoke_key, key_id)
    await asyncio.to_thread(_record, parts, caller, "key_revoked", subject_key=key_id)
    return key_object(revoked)


@router.post("/v1/admin/keys/{key_id}/rotate")
async def rotate_key(key_id: str, body: KeyRotate, request: Request, caller: Caller) -> dict:
    """A new key with the old one's role and label; the old one works for `grace_hours` more."""
    parts = components(request)
    _own_key(parts, caller, key_id)
    until = utcnow() + timedelta(hours=body.grace_hours)
    try:
        made = await asyncio.to_thread(parts.database.rotate_key, key_id, until)
    except ApiKeyNotFound:
        raise ApiError(400, f"The key '{key_id}' is revoked: make a new one instead.", param="key_id",
                       code="key_revoked") from None
    await asyncio.to_thread(_record, parts, caller, "key_rotated", subject_key=made.info.id, replaces=key_id,
                            old_key_expires=until.isoformat(), role=made.info.role)
    return {**key_object(made.info), "key": made.plaintext, "replaces": key_id,
            "old_key_expires_at": int(until.timestamp())}


@router.get("/v1/admin/settings")
async def get_settings(request: Request, caller: Caller) -> dict:
    parts = components(request)
    settings = await asyncio.to_thread(parts.database.tenant_settings, caller.tenant_id)
    return {"object": "tenant.settings", "tenant": caller.tenant_name,
            "moderation_level": settings.get("moderation_level"), "badge": settings.get("badge"),
            "retention_days": settings.get("retention_days"), "quotas": settings.get("quotas") or {}}


@router.patch("/v1/admin/settings")
async def patch_settings(body: SettingsPatch, request: Request, caller: Caller) -> dict:
    parts = components(request)
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
    if changes:
        await asyncio.to_thread(parts.database.update_tenant_settings, caller.tenant_id, changes)
        await asyncio.to_thread(_record, parts, caller, "tenant_settings_changed", changes=changes)
    return await get_settings(request, caller)
