"""Tenant records and their governance settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from pictor.storage import keys
from pictor.storage.errors import TenantExists, TenantNotFound
from pictor.storage.tables import TenantRow, TenantSettingsRow, utcnow
from pictor.storage.transactions import Transactions


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    created: datetime


def _tenant(row: TenantRow) -> Tenant:
    return Tenant(id=row.id, name=row.name, created=row.created)


class TenantQueries(Transactions):
    """Tenants and their settings: part of `Database`."""

    def create_tenant(self, name: str) -> Tenant:
        """A new tenant; names are unique so that `--tenant NAME` is unambiguous."""
        with self._transaction() as session:
            if session.scalar(select(TenantRow).where(TenantRow.name == name)) is not None:
                raise TenantExists(name)
            row = TenantRow(id=keys.new_tenant_id(), name=name, created=utcnow())
            session.add(row)
            try:
                session.flush()
            except IntegrityError as clash:  # another process made it since the check: the unique name says so
                raise TenantExists(name) from clash
            return _tenant(row)

    def tenant_by_name(self, name: str) -> Tenant:
        """Look a tenant up by its name; raises TenantNotFound."""
        with self._transaction() as session:
            row = session.scalar(select(TenantRow).where(TenantRow.name == name))
            if row is None:
                raise TenantNotFound(name)
            return _tenant(row)

    def ensure_tenant(self, name: str) -> Tenant:
        """The tenant with this name, created if missing (what `pictor keys create --tenant` wants)."""
        try:
            return self.tenant_by_name(name)
        except TenantNotFound:
            try:
                return self.create_tenant(name)
            except TenantExists:  # created concurrently between the two calls
                return self.tenant_by_name(name)

    def tenant_settings(self, tenant_id: str) -> dict[str, Any]:
        """The tenant's governance settings ({} when none were set)."""
        with self._transaction() as session:
            row = session.get(TenantSettingsRow, tenant_id)
            return dict(row.settings) if row is not None else {}

    def update_tenant_settings(self, tenant_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Merge `changes` into the tenant's settings (a value of None removes that key); returns the result."""
        with self._transaction() as session:
            if session.get(TenantRow, tenant_id) is None:
                raise TenantNotFound(tenant_id)
            row = session.get(TenantSettingsRow, tenant_id)
            merged = {**(row.settings if row is not None else {}), **changes}
            merged = {key: value for key, value in merged.items() if value is not None}
            if row is None:
                session.add(TenantSettingsRow(tenant_id=tenant_id, settings=merged))
            else:
                row.settings, row.updated = merged, utcnow()
            return merged
