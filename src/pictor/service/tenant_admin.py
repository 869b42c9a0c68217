"""A tenant's own administration through the API (admin keys): its keys and roles, and its settings. Every change
is an admin audit entry naming the key that made it. Quotas are read with the settings and set only by the operator
(`pictor tenants quota`): a tenant does not raise its own limits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pictor.service.errors import InvalidRequest, NotFoundError
from pictor.service.governance import Governance
from pictor.storage import ApiKeyInfo, ApiKeyNotFound, Database, NewApiKey, Principal


class TenantAdmin:
    """What an admin key may do to its own tenant; another tenant's keys are not found."""

    def __init__(self, database: Database, governance: Governance):
        self.database = database
        self.governance = governance

    def keys(self, admin: Principal) -> list[ApiKeyInfo]:
        return self.database.list_keys(admin.tenant_id)

    def create_key(self, admin: Principal, role: str, label: str | None, expires: datetime | None) -> NewApiKey:
        made = self.database.create_key(admin.tenant_id, label, role, expires)
        self._record(admin, "key_created", subject_key=made.info.id, role=role,
                     expires=None if expires is None else expires.isoformat())
        return made

    def revoke_key(self, admin: Principal, key_id: str) -> ApiKeyInfo:
        self._own_key(admin, key_id)
        revoked = self.database.revoke_key(key_id)
        self._record(admin, "key_revoked", subject_key=key_id)
        return revoked

    def rotate_key(self, admin: Principal, key_id: str, old_key_until: datetime) -> NewApiKey:
        """A new key with the old one's role and label; the old one works until `old_key_until`."""
        self._own_key(admin, key_id)
        try:
            made = self.database.rotate_key(key_id, old_key_until)
        except ApiKeyNotFound:
            raise InvalidRequest(f"The key '{key_id}' is revoked: make a new one instead.", "key_id",
                                 "key_revoked") from None
        self._record(admin, "key_rotated", subject_key=made.info.id, replaces=key_id,
                     old_key_expires=old_key_until.isoformat(), role=made.info.role)
        return made

    def settings(self, admin: Principal) -> dict[str, Any]:
        return self.database.tenant_settings(admin.tenant_id)

    def change_settings(self, admin: Principal, changes: dict[str, Any]) -> None:
        """Merge `changes` (a None value turns that setting off); nothing to change records nothing."""
        if changes:
            self.database.update_tenant_settings(admin.tenant_id, changes)
            self._record(admin, "tenant_settings_changed", changes=changes)

    def _own_key(self, admin: Principal, key_id: str) -> ApiKeyInfo:
        for key in self.database.list_keys(admin.tenant_id):
            if key.id == key_id:
                return key
        raise NotFoundError(f"No API key '{key_id}' in this tenant.", "key_id", "not_found")

    def _record(self, admin: Principal, action: str, **details: Any) -> None:
        self.governance.record_admin(action, tenant=admin.tenant_id, actor=f"key:{admin.key_id}",
                                     key_id=admin.key_id, **details)
