"""Quota counters: a tenant's daily usage, the per-minute rate windows, and what a tenant holds now.

Charges are conditional updates (`WHERE total + amount <= limit`), so processes sharing the database cannot
overshoot a limit together.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, case, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from pictor.storage.tables import FileRow, ImageJobRow, ImageRow, RateWindowRow, SessionRow, TenantUsageRow
from pictor.storage.transactions import Transactions


def _ensure_row(session: Session, table: Table, row: dict[str, Any]) -> None:
    """Add `row` (a counter at zero) unless its primary key is there; another process adding it first is fine.

    INSERT ... ON CONFLICT DO NOTHING, which SQLite and PostgreSQL both understand: one statement, and no failed
    insert to catch (on PostgreSQL a racing insert waits for the other transaction, then does nothing)."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(insert(table).values(**row).on_conflict_do_nothing())


class UsageQueries(Transactions):
    """Usage counters and rate windows: part of `Database`."""

    def reserve_usage(self, tenant_id: str, day: str, images: int, steps: int,
                      max_images: int | None, max_steps: int | None) -> str | None:
        """Add `images` and `steps` to the tenant's usage of `day` unless that would pass a limit (None: none),
        in one conditional update, so processes sharing the database cannot overshoot together. Returns None when
        added, else the name of the limit ("images" or "steps") that it would pass."""
        table = TenantUsageRow.__table__
        with self._transaction() as session:
            _ensure_row(session, table, {"tenant_id": tenant_id, "day": day, "images": 0, "steps": 0})
            conditions = [table.c.tenant_id == tenant_id, table.c.day == day]
            if max_images is not None:
                conditions.append(table.c.images + images <= max_images)
            if max_steps is not None:
                conditions.append(table.c.steps + steps <= max_steps)
            done = session.execute(update(table).where(*conditions).values(
                images=table.c.images + images, steps=table.c.steps + steps))
            if done.rowcount == 1:
                return None
            row = session.get(TenantUsageRow, (tenant_id, day), populate_existing=True)
            return "images" if max_images is not None and row.images + images > max_images else "steps"

    def charge_window(self, subject: str, minute: int, work: int, limit: int) -> bool:
        """Add `work` to `subject`'s minute unless that passes `limit` (one conditional update, so processes sharing
        the database hold the limit together); older minutes of the subject are dropped. True when charged."""
        table = RateWindowRow.__table__
        with self._transaction() as session:
            session.execute(delete(table).where(table.c.subject == subject, table.c.minute < minute))
            _ensure_row(session, table, {"subject": subject, "minute": minute, "work": 0})
            done = session.execute(update(table).where(
                table.c.subject == subject, table.c.minute == minute, table.c.work + work <= limit)
                .values(work=table.c.work + work))
            return done.rowcount == 1

    def release_usage(self, tenant_id: str, day: str, images: int, steps: int) -> None:
        """Give back a reservation whose work was not done."""
        table = TenantUsageRow.__table__

        def less(column, amount: int):  # never below zero (CASE: the same SQL on SQLite and PostgreSQL)
            return case((column > amount, column - amount), else_=0)

        with self._transaction() as session:
            session.execute(update(table).where(table.c.tenant_id == tenant_id, table.c.day == day).values(
                images=less(table.c.images, images), steps=less(table.c.steps, steps)))

    def usage(self, tenant_id: str, day: str) -> dict[str, int]:
        """The tenant's usage of one day and what it holds now: sessions, files and their bytes, jobs by state."""
        with self._transaction() as session:
            row = session.get(TenantUsageRow, (tenant_id, day))
            jobs = dict(session.execute(select(ImageJobRow.status, func.count()).where(
                ImageJobRow.tenant_id == tenant_id, ImageJobRow.status.in_(("queued", "running")))
                .group_by(ImageJobRow.status)).all())
            files, file_bytes = session.execute(select(func.count(), func.coalesce(func.sum(FileRow.size), 0))
                                                .where(FileRow.tenant_id == tenant_id)).one()
            sessions = session.scalar(select(func.count()).select_from(SessionRow)
                                      .where(SessionRow.tenant_id == tenant_id))
            image_bytes = session.scalar(select(func.coalesce(func.sum(ImageRow.size), 0))
                                         .where(ImageRow.tenant_id == tenant_id))
            return {"images": row.images if row else 0, "steps": row.steps if row else 0,
                    "queued_jobs": jobs.get("queued", 0), "running_jobs": jobs.get("running", 0),
                    "sessions": sessions or 0, "files": files or 0,
                    "stored_bytes": int(file_bytes or 0) + int(image_bytes or 0)}
