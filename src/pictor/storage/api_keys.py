"""API key records: making, rotating, revoking and listing keys, and finding the caller behind one.

Only a key's hash is stored (the key material itself is `keys`), so a created key's plaintext is the only copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from pictor.storage import keys
from pictor.storage.errors import ApiKeyNotFound, TenantNotFound
from pictor.storage.tables import ApiKeyRow, TenantRow, utcnow
from pictor.storage.transactions import Transactions


@dataclass(frozen=True)
class ApiKeyInfo:
    """A key as listings show it; the plaintext is not recoverable."""

    id: str
    tenant_id: str
    hint: str
    label: str | None
    created: datetime
    revoked: datetime | None
    role: str = "member"
    expires: datetime | None = None


@dataclass(frozen=True)
class NewApiKey:
    """The result of creating a key: the only moment the plaintext exists outside the client."""

    info: ApiKeyInfo
    plaintext: str


@dataclass(frozen=True)
class Principal:
    """Who is calling: what an authenticated request carries to the service and into image records."""

    tenant_id: str
    tenant_name: str
    key_id: str | None  # None for the keyless local demo
    role: str = "member"  # see api.permissions; the keyless local demo is an admin of its tenant


def _key_info(row: ApiKeyRow) -> ApiKeyInfo:
    return ApiKeyInfo(id=row.id, tenant_id=row.tenant_id, hint=row.hint, label=row.label, created=row.created,
                      revoked=row.revoked, role=row.role, expires=row.expires)


class ApiKeyQueries(Transactions):
    """API keys: part of `Database`."""

    def create_key(self, tenant_id: str, label: str | None = None, role: str = "member",
                   expires: datetime | None = None) -> NewApiKey:
        """Make a key for the tenant; only its hash is stored, so the returned plaintext is the only copy."""
        plaintext = keys.generate_key()
        with self._transaction() as session:
            if session.get(TenantRow, tenant_id) is None:
                raise TenantNotFound(tenant_id)
            row = ApiKeyRow(id=keys.new_key_id(), tenant_id=tenant_id, key_hash=keys.hash_key(plaintext),
                            hint=keys.key_hint(plaintext), label=label, created=utcnow(), role=role,
                            expires=expires)
            session.add(row)
            return NewApiKey(info=_key_info(row), plaintext=plaintext)

    def rotate_key(self, key_id: str, grace_until: datetime) -> NewApiKey:
        """A new key with the old one's tenant, role and label; the old one keeps working until `grace_until`
        (or its own earlier expiry)."""
        with self._transaction() as session:
            old = session.get(ApiKeyRow, key_id)
            if old is None or old.revoked is not None:
                raise ApiKeyNotFound(key_id)
            old.expires = grace_until if old.expires is None else min(old.expires, grace_until)
            tenant_id, label, role = old.tenant_id, old.label, old.role
        return self.create_key(tenant_id, label, role)

    def authenticate(self, plaintext: str) -> Principal | None:
        """The caller behind a bearer key, or None when the key is unknown, malformed or revoked."""
        if not plaintext.startswith(keys.PREFIX):
            return None
        candidate = keys.hash_key(plaintext)
        with self._transaction() as session:
            row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == candidate))
            if row is None or not keys.hashes_match(row.key_hash, candidate) or row.revoked is not None:
                return None
            if row.expires is not None and row.expires <= utcnow():
                return None
            return Principal(tenant_id=row.tenant_id, tenant_name=row.tenant.name, key_id=row.id, role=row.role)

    def expired_unaudited_keys(self) -> list[ApiKeyInfo]:
        """Keys whose expiry has passed and is not yet in the audit log; marked as logged as they are returned."""
        with self._transaction() as session:
            rows = list(session.scalars(select(ApiKeyRow).where(
                ApiKeyRow.expires.is_not(None), ApiKeyRow.expires <= utcnow(), ApiKeyRow.revoked.is_(None),
                ApiKeyRow.expiry_audited.is_(False))))
            for row in rows:
                row.expiry_audited = True
            return [_key_info(row) for row in rows]

    def has_keys(self) -> bool:
        """Whether any key was ever made (revoked ones count: an installation that had keys is not fresh)."""
        with self._transaction() as session:
            return session.scalar(select(ApiKeyRow.id).limit(1)) is not None

    def revoke_key(self, key_id: str) -> ApiKeyInfo:
        """Stop a key from authenticating; revoking twice keeps the first revocation time."""
        with self._transaction() as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None:
                raise ApiKeyNotFound(key_id)
            if row.revoked is None:
                row.revoked = utcnow()
            return _key_info(row)

    def list_keys(self, tenant_id: str) -> list[ApiKeyInfo]:
        """A tenant's keys, oldest first, revoked ones included (for `pictor keys list`)."""
        with self._transaction() as session:
            rows = session.scalars(
                select(ApiKeyRow).where(ApiKeyRow.tenant_id == tenant_id).order_by(ApiKeyRow.created, ApiKeyRow.id)
            )
            return [_key_info(row) for row in rows]
