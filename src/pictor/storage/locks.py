"""Writes that must not interleave across processes, serialised on PostgreSQL by transaction-scoped advisory locks.

SQLite needs none: one writer at a time holds its database, and these writes take that lock with their first
statement. On PostgreSQL several processes (or threads) write at once, so reading `max(index) + 1` and inserting it
would race; the advisory lock is held until the transaction commits or rolls back, so the next holder reads what the
last one wrote.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session


def _key(name: str) -> int:
    """A stable signed 64-bit lock key for a name (PostgreSQL's advisory locks are numbered)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


AUDIT_RESERVATIONS = _key("pictor.audit_entries.reserve")
SCHEMA_MIGRATIONS = _key("pictor.schema.migrate")


def hold_until_commit(connection: Connection | Session, key: int) -> None:
    """Wait for the lock `key` and hold it until this transaction ends (PostgreSQL); SQLite needs nothing."""
    dialect = connection.get_bind().dialect if isinstance(connection, Session) else connection.dialect
    if dialect.name == "postgresql":
        connection.execute(select(func.pg_advisory_xact_lock(key)))
