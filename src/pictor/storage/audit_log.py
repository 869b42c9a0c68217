"""Audit log records: entries (reserved as pending, then finalised or voided) and signed checkpoints.

An entry's index is reserved before the work it records is done and finalised in the same transaction as that
work's own rows, so a stored image always has its entry and an entry its image.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pictor.storage.errors import StorageError
from pictor.storage.locks import AUDIT_RESERVATIONS, hold_until_commit
from pictor.storage.prompt_salts import add_salts
from pictor.storage.tables import AuditCheckpointRow, AuditEntryRow, UTCDateTime, utcnow
from pictor.storage.transactions import Transactions

AuditItem = tuple[int, str, str]  # (index, canonical entry text, leaf hash hex): a finished audit entry


class AuditReservationLost(StorageError):
    """An audit entry was finalised that is not a pending reservation (voided meanwhile, or never reserved)."""


@dataclass(frozen=True)
class AuditEntry:
    index: int
    entry: str | None  # canonical JSON; None while pending
    leaf_hash: str | None  # hex; None while pending
    status: str  # "pending", "final" or "void"
    created: datetime


@dataclass(frozen=True)
class AuditCheckpoint:
    size: int
    root: str  # hex
    note: str  # the signed note text
    created: datetime


def _checkpoint(row: AuditCheckpointRow) -> AuditCheckpoint:
    return AuditCheckpoint(size=row.size, root=row.root, note=row.note, created=row.created)


def finalise_audit_rows(session: Session, items: Sequence[AuditItem], salts: Mapping[str, str] | None) -> None:
    """Finalise reserved entries and store prompt salts in the caller's transaction (with the rows they record)."""
    for index, text, leaf in items:
        if len(leaf) != 64:
            raise ValueError(f"leaf hash must be 64 hex digits, got {leaf!r}")
        result = session.execute(
            update(AuditEntryRow)
            .where(AuditEntryRow.index == index, AuditEntryRow.status == "pending")
            .values(entry=text, leaf_hash=leaf, status="final")
        )
        if result.rowcount != 1:
            raise AuditReservationLost(f"audit entry {index} is not a pending reservation")
    add_salts(session, salts or {})


class AuditLogQueries(Transactions):
    """Audit entries and checkpoints: part of `Database`."""

    def reserve_audit(self, count: int = 1) -> list[int]:
        """Insert `count` pending entries with consecutive indexes and return the indexes.

        The first row is inserted by one INSERT ... SELECT max + 1 statement, so on SQLite the transaction holds the
        write lock before it reads the maximum; on PostgreSQL an advisory lock held until commit serialises
        reservations instead (without it, concurrent writers read the same maximum and clash on the primary key).
        """
        if count < 1:
            raise ValueError("reserve at least one audit entry")
        table = AuditEntryRow.__table__
        with self._transaction() as session:
            hold_until_commit(session, AUDIT_RESERVATIONS)
            now = utcnow()
            next_index = select(
                func.coalesce(func.max(table.c.idx), -1) + 1,
                literal("pending"),
                literal(now, UTCDateTime()),
            )
            first = session.execute(
                insert(table).from_select(["idx", "status", "created"], next_index).returning(table.c.idx)
            ).scalar_one()
            if count > 1:
                session.execute(
                    insert(table),
                    [{"idx": first + i, "status": "pending", "created": now} for i in range(1, count)],
                )
            return list(range(first, first + count))

    def finalise_audit(self, items: Sequence[AuditItem], salts: Mapping[str, str] | None = None) -> None:
        """Finalise reserved entries that belong to no image (a refused request, an administrative event)."""
        with self._transaction() as session:
            finalise_audit_rows(session, items, salts)

    def void_pending_audit(
        self, entry_for: Callable[[int], tuple[str, str]], *, older_than: datetime | None = None
    ) -> list[int]:
        """Turn pending reservations (of requests that crashed) into void entries; returns their indexes.

        `entry_for(index)` gives the (canonical text, leaf hash hex) of the void entry. Call it on start-up,
        before requests run, or pass `older_than` so that reservations of live requests are left alone.
        """
        with self._transaction() as session:
            query = select(AuditEntryRow.index).where(AuditEntryRow.status == "pending")
            if older_than is not None:
                query = query.where(AuditEntryRow.created < older_than)
            indexes = list(session.scalars(query.order_by(AuditEntryRow.index)))
            for index in indexes:
                text, leaf = entry_for(index)
                session.execute(
                    update(AuditEntryRow)
                    .where(AuditEntryRow.index == index, AuditEntryRow.status == "pending")
                    .values(entry=text, leaf_hash=leaf, status="void")
                )
            return indexes

    def audit_entries(self, start: int = 0, end: int | None = None) -> list[AuditEntry]:
        """Entries with start <= index < end, in index order (pending ones included)."""
        table = AuditEntryRow.__table__
        query = select(table.c.idx, table.c.entry, table.c.leaf_hash, table.c.status, table.c.created)
        query = query.where(table.c.idx >= start)
        if end is not None:
            query = query.where(table.c.idx < end)
        with self._transaction() as session:
            return [AuditEntry(*row) for row in session.execute(query.order_by(table.c.idx))]

    def audit_leaf_hashes(self, start: int = 0, end: int | None = None) -> list[str]:
        """The stored leaf hashes (hex) of entries start <= index < end, in index order."""
        query = select(AuditEntryRow.leaf_hash).where(AuditEntryRow.index >= start)
        if end is not None:
            query = query.where(AuditEntryRow.index < end)
        with self._transaction() as session:
            return list(session.scalars(query.order_by(AuditEntryRow.index)))

    def audit_predecessor(self, index: int) -> tuple[int, str] | None:
        """(index, leaf hash hex) of the nearest entry before `index` that is not pending, if any."""
        with self._transaction() as session:
            row = session.execute(
                select(AuditEntryRow.index, AuditEntryRow.leaf_hash)
                .where(AuditEntryRow.index < index, AuditEntryRow.status != "pending")
                .order_by(AuditEntryRow.index.desc())
                .limit(1)
            ).first()
            return None if row is None else (row[0], row[1])

    def audit_end(self) -> int:
        """One past the highest index ever reserved (0 for an empty log)."""
        with self._transaction() as session:
            highest = session.scalar(select(func.max(AuditEntryRow.index)))
            return 0 if highest is None else highest + 1

    def audit_size(self) -> int:
        """The length of the longest prefix 0..n-1 of entries that exist and are not pending.

        One statement, so one snapshot: on PostgreSQL each statement of a transaction sees what was committed
        before it, and a reservation committed between two reads would count as part of the prefix.
        """
        index = AuditEntryRow.index
        after = index + 1
        first_pending = select(func.min(index)).where(AuditEntryRow.status == "pending").scalar_subquery()
        first_missing = select(func.min(after)).where(after.not_in(select(index))).scalar_subquery()
        has_first = select(index).where(index == 0).exists()
        with self._transaction() as session:
            pending, missing, started = session.execute(select(first_pending, first_missing, has_first)).one()
            if not started:
                return 0
            return missing if pending is None else min(missing, pending)

    def add_checkpoint(self, size: int, root_hex: str, note: str) -> AuditCheckpoint:
        """Store a signed checkpoint; storing the same size again keeps the first (same root) one."""
        try:
            with self._transaction() as session:
                row = AuditCheckpointRow(size=size, root=root_hex, note=note, created=utcnow())
                session.add(row)
                session.flush()
                return _checkpoint(row)
        except IntegrityError:
            with self._transaction() as session:
                existing = session.get(AuditCheckpointRow, size)
                if existing is None or existing.root != root_hex:
                    raise
                return _checkpoint(existing)

    def checkpoints(self) -> list[AuditCheckpoint]:
        """Every stored checkpoint, smallest tree first."""
        with self._transaction() as session:
            rows = session.scalars(select(AuditCheckpointRow).order_by(AuditCheckpointRow.size))
            return [_checkpoint(row) for row in rows]

    def checkpoint_at(self, size: int) -> AuditCheckpoint | None:
        """The checkpoint of exactly this tree size, if one was signed."""
        with self._transaction() as session:
            row = session.get(AuditCheckpointRow, size)
            return None if row is None else _checkpoint(row)

    def latest_checkpoint(self) -> AuditCheckpoint | None:
        with self._transaction() as session:
            row = session.scalar(select(AuditCheckpointRow).order_by(AuditCheckpointRow.size.desc()).limit(1))
            return None if row is None else _checkpoint(row)
