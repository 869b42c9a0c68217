"""Conversation sessions and their turns.

Read back as frozen records, like images: a session and its turns belong to one tenant, and another tenant's
session or turn is reported exactly like a missing one. A turn is written once (only an erasure blanks its words);
undo and branching move the session's tip among its turns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pictor.storage.errors import NotFound
from pictor.storage.tables import SessionRow, SessionTurnRow, utcnow
from pictor.storage.transactions import Transactions


class SessionNotFound(NotFound):
    """No session (or turn) with this id in the caller's tenant."""


@dataclass(frozen=True)
class SessionRecord:
    id: str
    tenant_id: str
    title: str | None
    options: dict[str, Any]
    tip_turn_id: str | None
    created: datetime
    updated: datetime


@dataclass(frozen=True)
class TurnRecord:
    id: str
    session_id: str
    tenant_id: str
    position: int
    parent_id: str | None
    text: str
    prompt: str
    action: str
    image_id: str | None
    inputs: tuple[str, ...]
    uploads: tuple[dict[str, Any], ...]
    references: tuple[dict[str, Any], ...]
    params: dict[str, Any]
    extra: dict[str, Any]
    created: datetime


def _session(row: SessionRow) -> SessionRecord:
    return SessionRecord(id=row.id, tenant_id=row.tenant_id, title=row.title, options=dict(row.options or {}),
                         tip_turn_id=row.tip_turn_id, created=row.created, updated=row.updated)


def _turn(row: SessionTurnRow) -> TurnRecord:
    return TurnRecord(id=row.id, session_id=row.session_id, tenant_id=row.tenant_id, position=row.position,
                      parent_id=row.parent_id, text=row.text, prompt=row.prompt, action=row.action,
                      image_id=row.image_id, inputs=tuple(row.inputs or ()), uploads=tuple(row.uploads or ()),
                      references=tuple(row.references or ()), params=dict(row.params or {}),
                      extra=dict(row.extra or {}), created=row.created)


def _session_row(session: Session, tenant_id: str, session_id: str, *, lock: bool = False) -> SessionRow:
    """The tenant's session; `lock` holds its row until commit (PostgreSQL; SQLite ignores FOR UPDATE and lets one
    writer in at a time anyway)."""
    query = select(SessionRow).where(SessionRow.id == session_id, SessionRow.tenant_id == tenant_id)
    row = session.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise SessionNotFound(session_id)
    return row


class SessionStore:
    """Session and turn records on a Database's engine (`SessionStore(database)`)."""

    def __init__(self, database: Transactions) -> None:
        self._transaction = database._transaction  # the same unit-of-work rules as every other table

    def create_session(self, tenant_id: str, session_id: str, *, title: str | None = None,
                       options: Mapping[str, Any] | None = None) -> SessionRecord:
        with self._transaction() as session:
            now = utcnow()
            row = SessionRow(id=session_id, tenant_id=tenant_id, title=title, options=dict(options or {}),
                             tip_turn_id=None, created=now, updated=now)
            session.add(row)
            session.flush()
            return _session(row)

    def get_session(self, tenant_id: str, session_id: str) -> SessionRecord:
        with self._transaction() as session:
            return _session(_session_row(session, tenant_id, session_id))

    def session_turns(self, tenant_id: str, session_id: str) -> list[TurnRecord]:
        """The session's turns in the order they were made (every branch)."""
        with self._transaction() as session:
            _session_row(session, tenant_id, session_id)
            rows = session.scalars(select(SessionTurnRow).where(SessionTurnRow.session_id == session_id)
                                   .order_by(SessionTurnRow.position))
            return [_turn(row) for row in rows]

    def get_turn(self, tenant_id: str, turn_id: str) -> TurnRecord:
        with self._transaction() as session:
            row = session.scalar(select(SessionTurnRow).where(SessionTurnRow.id == turn_id,
                                                              SessionTurnRow.tenant_id == tenant_id))
            if row is None:
                raise SessionNotFound(turn_id)
            return _turn(row)

    def add_turn(self, tenant_id: str, session_id: str, turn_id: str, *, parent_id: str | None, text: str,
                 prompt: str, action: str, image_id: str | None, inputs: Sequence[str] = (),
                 uploads: Sequence[Mapping[str, Any]] = (), references: Sequence[Mapping[str, Any]] = (),
                 params: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None) -> TurnRecord:
        """Append a turn and make it the session's tip, in one transaction.

        Turns of one session may be added at once (two requests, two processes), so the position is read in the
        INSERT itself (SQLite takes its write lock with that statement), after the session's row was locked
        (PostgreSQL: the next writer waits, then reads this turn's position)."""
        with self._transaction() as session:
            owner = _session_row(session, tenant_id, session_id, lock=True)
            if parent_id is not None and session.scalar(select(SessionTurnRow.id).where(
                    SessionTurnRow.id == parent_id, SessionTurnRow.session_id == session_id)) is None:
                raise SessionNotFound(parent_id)
            next_position = (select(func.coalesce(func.max(SessionTurnRow.position), 0) + 1)
                             .where(SessionTurnRow.session_id == session_id).scalar_subquery())
            row = SessionTurnRow(id=turn_id, session_id=session_id, tenant_id=tenant_id, position=next_position,
                                 parent_id=parent_id, text=text, prompt=prompt, action=action, image_id=image_id,
                                 inputs=list(inputs), uploads=[dict(u) for u in uploads],
                                 references=[dict(r) for r in references], params=dict(params or {}),
                                 extra=dict(extra or {}), created=utcnow())
            session.add(row)
            owner.tip_turn_id, owner.updated = turn_id, row.created
            session.flush()
            return _turn(row)

    def set_session_tip(self, tenant_id: str, session_id: str, turn_id: str | None) -> SessionRecord:
        """Move the session's current tip (undo, or choosing a branch); the turns themselves never change."""
        with self._transaction() as session:
            row = _session_row(session, tenant_id, session_id)
            row.tip_turn_id, row.updated = turn_id, utcnow()
            session.flush()
            return _session(row)
