"""Async image job records.

A job belongs to one tenant, and another tenant's job is reported exactly like a missing one. Status changes are
conditional updates (`WHERE status = ...`), so a cancel and the runner finishing the same job cannot both win.

Several processes share the queue: a process claims a job with a lease (`claimed_by`, `lease_expires`) that its
heartbeat renews; a running job whose lease ran out (its process died) is queued again for any process, and a
runner's writes are conditional on still holding the claim, so each job finishes once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Text, cast, func, or_, select, update
from sqlalchemy.orm import Session

from pictor.storage.errors import NotFound
from pictor.storage.shared_queries import tenant_row
from pictor.storage.tables import ImageJobRow, utcnow
from pictor.storage.transactions import Transactions

JOB_TERMINAL = ("succeeded", "failed", "cancelled")


class JobNotFound(NotFound):
    """No job with this id in the caller's tenant."""


@dataclass(frozen=True)
class JobRecord:
    id: str
    seq: int
    tenant_id: str
    key_id: str | None
    endpoint: str
    request: dict[str, Any]
    input_hashes: tuple[str, ...]
    priority: int
    status: str
    progress: float
    attempts: int
    metadata: dict[str, Any]
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    created: datetime
    started: datetime | None
    finished: datetime | None


@dataclass(frozen=True)
class QueueHead:
    """The oldest queued job of one tenant at one priority: what the runner's fairness rule chooses among."""

    tenant_id: str
    priority: int
    seq: int
    job_id: str


def job_record(row: ImageJobRow) -> JobRecord:
    """The frozen record of a job row (batches read jobs with their lines)."""
    return JobRecord(id=row.id, seq=row.seq, tenant_id=row.tenant_id, key_id=row.key_id, endpoint=row.endpoint,
                     request=dict(row.request or {}), input_hashes=tuple(row.input_hashes or ()),
                     priority=row.priority, status=row.status, progress=row.progress, attempts=row.attempts,
                     metadata=dict(row.meta or {}), result=row.result, error=row.error, created=row.created,
                     started=row.started, finished=row.finished)


def job_rows_that_made(session: Session, tenant_id: str, image_id: str) -> list[ImageJobRow]:
    """The tenant's job rows whose result names this image (a LIKE narrows them, the JSON decides)."""
    mentions = cast(ImageJobRow.result, Text).like(f'%"{image_id}"%')
    return [job for job in session.scalars(select(ImageJobRow).where(ImageJobRow.tenant_id == tenant_id, mentions))
            if any(item.get("id") == image_id for item in (job.result or {}).get("images", []))]


class JobStore:
    """Image job records on a Database's engine (`JobStore(database)`)."""

    def __init__(self, database: Transactions) -> None:
        self._transaction = database._transaction
        self.engine = database.engine  # (job events between processes use its dialect and, on PostgreSQL, its pool)

    def add_job(self, job_id: str, tenant_id: str, key_id: str | None, endpoint: str, request: Mapping[str, Any],
                input_hashes: Sequence[str], priority: int, metadata: Mapping[str, Any]) -> JobRecord:
        with self._transaction() as session:
            row = ImageJobRow(id=job_id, tenant_id=tenant_id, key_id=key_id, endpoint=endpoint, request=dict(request),
                              input_hashes=list(input_hashes), priority=priority, status="queued", progress=0.0,
                              attempts=0, meta=dict(metadata), created=utcnow())
            session.add(row)
            session.flush()
            return job_record(row)

    def get_job(self, tenant_id: str | None, job_id: str) -> JobRecord:
        """One job; `tenant_id=None` only for the runner, which serves every tenant."""
        with self._transaction() as session:
            return job_record(tenant_row(session, ImageJobRow, job_id, tenant_id, JobNotFound))

    def list_jobs(self, tenant_id: str, limit: int = 20) -> list[JobRecord]:
        with self._transaction() as session:
            rows = session.scalars(select(ImageJobRow).where(ImageJobRow.tenant_id == tenant_id)
                                   .order_by(ImageJobRow.seq.desc()).limit(limit))
            return [job_record(row) for row in rows]

    def queue_heads(self) -> list[QueueHead]:
        """Per tenant, its oldest queued job at the highest queued priority (one indexed query, however long
        the queue)."""
        with self._transaction() as session:
            top = session.scalar(select(func.max(ImageJobRow.priority)).where(ImageJobRow.status == "queued"))
            if top is None:
                return []
            heads = (select(ImageJobRow.tenant_id, func.min(ImageJobRow.seq).label("seq"))
                     .where(ImageJobRow.status == "queued", ImageJobRow.priority == top)
                     .group_by(ImageJobRow.tenant_id).subquery())
            rows = session.execute(select(ImageJobRow.tenant_id, ImageJobRow.seq, ImageJobRow.id)
                                   .join(heads, ImageJobRow.seq == heads.c.seq))
            return [QueueHead(tenant, top, seq, job_id) for tenant, seq, job_id in rows]

    def claim_job(self, job_id: str, owner: str | None = None, lease_s: float = 0.0) -> JobRecord | None:
        """queued -> running, claimed by `owner` until `lease_s` from now (None when it was cancelled or claimed by
        another process meanwhile). Without an owner the claim has no lease: any start-up takes it over."""
        with self._transaction() as session:
            queued = (ImageJobRow.id == job_id, ImageJobRow.status == "queued")
            # On PostgreSQL another process claiming the same head holds its row: look past it rather than wait.
            if session.get_bind().dialect.name == "postgresql" and session.scalar(
                    select(ImageJobRow.seq).where(*queued).with_for_update(skip_locked=True)) is None:
                return None
            lease = utcnow() + timedelta(seconds=lease_s) if owner is not None else None
            done = session.execute(update(ImageJobRow).where(*queued)
                                   .values(status="running", progress=0.0, started=utcnow(),
                                           attempts=ImageJobRow.attempts + 1, claimed_by=owner, lease_expires=lease))
            if done.rowcount != 1:
                return None
            return job_record(session.scalars(select(ImageJobRow).where(ImageJobRow.id == job_id)).one())

    def renew_leases(self, owner: str, job_ids: Sequence[str], lease_s: float) -> set[str]:
        """Extend `owner`'s leases on these running jobs; returns the ids it still holds (a job missing from the
        answer was cancelled, or taken over after its lease ran out: its run must stop)."""
        if not job_ids:
            return set()
        with self._transaction() as session:
            held = (ImageJobRow.id.in_(list(job_ids)), ImageJobRow.status == "running",
                    ImageJobRow.claimed_by == owner)
            session.execute(update(ImageJobRow).where(*held)
                            .values(lease_expires=utcnow() + timedelta(seconds=lease_s)))
            return set(session.scalars(select(ImageJobRow.id).where(*held)))

    def set_job_progress(self, job_id: str, progress: float) -> None:
        """Raise a running job's progress (never lower it: reports of several images may be written out of order)."""
        with self._transaction() as session:
            session.execute(update(ImageJobRow).where(ImageJobRow.id == job_id, ImageJobRow.status == "running",
                                                      ImageJobRow.progress < progress)
                            .values(progress=progress))

    def finish_job(self, job_id: str, status: str, *, from_status: Sequence[str] = ("running",),
                   result: Mapping[str, Any] | None = None, error: Mapping[str, Any] | None = None,
                   tenant_id: str | None = None, owner: str | None = None) -> bool:
        """Move a job to a terminal status (or back to `queued`) if it is still in one of `from_status` (and, with
        `owner`, still claimed by that process: a run whose job was taken over finishes nothing)."""
        with self._transaction() as session:
            query = update(ImageJobRow).where(ImageJobRow.id == job_id, ImageJobRow.status.in_(list(from_status)))
            if tenant_id is not None:
                query = query.where(ImageJobRow.tenant_id == tenant_id)
            if owner is not None:
                query = query.where(ImageJobRow.claimed_by == owner)
            values: dict[str, Any] = {"status": status, "finished": utcnow() if status in JOB_TERMINAL else None,
                                      "lease_expires": None}
            if result is not None:
                values.update(result=dict(result), progress=1.0)
            if error is not None:
                values["error"] = dict(error)
            if status == "queued":  # a clean stop: not counted as an attempt (a crash is, see requeue_running)
                values.update(progress=0.0, started=None, attempts=ImageJobRow.attempts - 1, claimed_by=None)
            return session.execute(query.values(**values)).rowcount == 1

    def requeue_expired(self, max_attempts: int, error: Mapping[str, Any]) -> tuple[int, int]:
        """Running jobs whose lease ran out (their process died; a job claimed without a lease counts as run out)
        are queued again for any process, or failed with `error` once they have been started `max_attempts` times
        (a job that crashes its server must not crash servers forever); the next claim counts as an attempt.
        Jobs of live processes are left alone. (requeued, failed)"""
        with self._transaction() as session:
            expired = (ImageJobRow.status == "running",
                       or_(ImageJobRow.lease_expires.is_(None), ImageJobRow.lease_expires < utcnow()))
            gone = {"claimed_by": None, "lease_expires": None}
            failed = session.execute(update(ImageJobRow).where(*expired, ImageJobRow.attempts >= max_attempts)
                                     .values(status="failed", error=dict(error), finished=utcnow(), **gone)).rowcount
            requeued = session.execute(update(ImageJobRow).where(*expired)
                                       .values(status="queued", progress=0.0, started=None, **gone)).rowcount
            return requeued, failed
