"""File and batch records (POST /v1/files, POST /v1/batches) on a Database's engine.

Like jobs, a file or batch belongs to one tenant and another tenant's is reported exactly like a missing one.
A batch's lines are `batch_items` rows: each names the job that runs it, or the error that kept it from being
queued. Status changes are conditional updates, so a cancel and the finaliser cannot both win.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update

from pictor.storage.errors import NotFound
from pictor.storage.jobs import JobRecord, job_record
from pictor.storage.shared_queries import blob_held, tenant_row
from pictor.storage.tables import BatchItemRow, BatchRow, FileRow, ImageJobRow, utcnow
from pictor.storage.transactions import Transactions

BATCH_ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")


class FileNotFound(NotFound):
    """No file with this id in the caller's tenant."""


class BatchNotFound(NotFound):
    """No batch with this id in the caller's tenant."""


@dataclass(frozen=True)
class FileRecord:
    id: str
    tenant_id: str
    filename: str
    purpose: str
    size: int
    content_hash: str
    created: datetime


@dataclass(frozen=True)
class BatchRecord:
    id: str
    tenant_id: str
    key_id: str | None
    input_file_id: str
    endpoint: str
    completion_window: str
    status: str
    total: int
    metadata: dict[str, Any]
    extra: dict[str, Any]
    times: dict[str, int]
    output_file_id: str | None
    error_file_id: str | None
    errors: list[dict[str, Any]] | None
    created: datetime


@dataclass(frozen=True)
class BatchItem:
    seq: int
    line: int
    custom_id: str
    job_id: str | None
    status_code: int | None
    error: dict[str, Any] | None
    job: JobRecord | None  # filled by `items_with_jobs`


@dataclass(frozen=True)
class NewFile:
    """A file that the finaliser writes together with the batch's final status."""

    id: str
    filename: str
    size: int
    content_hash: str


def _file(row: FileRow) -> FileRecord:
    return FileRecord(id=row.id, tenant_id=row.tenant_id, filename=row.filename, purpose=row.purpose, size=row.size,
                      content_hash=row.content_hash, created=row.created)


def _batch(row: BatchRow) -> BatchRecord:
    return BatchRecord(id=row.id, tenant_id=row.tenant_id, key_id=row.key_id, input_file_id=row.input_file_id,
                       endpoint=row.endpoint, completion_window=row.completion_window, status=row.status,
                       total=row.total, metadata=dict(row.meta or {}), extra=dict(row.extra or {}),
                       times=dict(row.times or {}), output_file_id=row.output_file_id,
                       error_file_id=row.error_file_id, errors=row.errors, created=row.created)


def _page(query: Any, model: Any, tenant_id: str, limit: int, after: str | None) -> Any:
    """Newest first, starting after the object `after` (the SDKs' cursor pagination)."""
    query = query.where(model.tenant_id == tenant_id)
    if after:
        cursor = select(model.seq).where(model.id == after, model.tenant_id == tenant_id).scalar_subquery()
        query = query.where(model.seq < cursor)
    return query.order_by(model.seq.desc()).limit(limit)


class BatchStore:
    """`BatchStore(database)`: files, batches and their lines."""

    def __init__(self, database: Transactions) -> None:
        self._transaction = database._transaction

    # ---- files ---------------------------------------------------------------------------------

    def add_file(self, tenant_id: str, new: NewFile, purpose: str) -> FileRecord:
        with self._transaction() as session:
            row = FileRow(id=new.id, tenant_id=tenant_id, filename=new.filename, purpose=purpose, size=new.size,
                          content_hash=new.content_hash, created=utcnow())
            session.add(row)
            session.flush()
            return _file(row)

    def get_file(self, tenant_id: str, file_id: str) -> FileRecord:
        with self._transaction() as session:
            return _file(tenant_row(session, FileRow, file_id, tenant_id, FileNotFound))

    def list_files(self, tenant_id: str, limit: int, after: str | None = None,
                   purpose: str | None = None) -> list[FileRecord]:
        with self._transaction() as session:
            query = select(FileRow)
            if purpose:
                query = query.where(FileRow.purpose == purpose)
            return [_file(row) for row in session.scalars(_page(query, FileRow, tenant_id, limit, after))]

    def replace_file_content(self, tenant_id: str, file_id: str, content_hash: str, size: int) -> str:
        """Point a file at other bytes (an erasure rewrote them); returns the digest it had."""
        with self._transaction() as session:
            row = tenant_row(session, FileRow, file_id, tenant_id, FileNotFound)
            before, row.content_hash, row.size = row.content_hash, content_hash, size
            return before

    def holds_blob(self, content_hash: str) -> bool:
        """Whether any file, or any live image, still has these bytes."""
        with self._transaction() as session:
            return blob_held(session, content_hash)

    def batch_lines_of_jobs(self, tenant_id: str, job_ids: Sequence[str]) -> list[tuple[str, list[str]]]:
        """For the batches that ran these jobs: (file id, custom ids of those lines) for each input, output and
        error file that holds the lines."""
        if not job_ids:
            return []
        found: dict[str, list[str]] = {}
        with self._transaction() as session:
            rows = session.execute(select(BatchItemRow.custom_id, BatchRow.input_file_id, BatchRow.output_file_id,
                                          BatchRow.error_file_id)
                                   .join(BatchRow, BatchRow.id == BatchItemRow.batch_id)
                                   .where(BatchItemRow.job_id.in_(list(job_ids)), BatchRow.tenant_id == tenant_id))
            for custom_id, *files in rows:
                for file_id in files:
                    if file_id is not None:
                        found.setdefault(file_id, []).append(custom_id)
        return list(found.items())

    def delete_file(self, tenant_id: str, file_id: str) -> None:
        """The record only: blobs are content-addressed and may be shared."""
        with self._transaction() as session:
            gone = session.execute(delete(FileRow).where(FileRow.id == file_id, FileRow.tenant_id == tenant_id))
            if gone.rowcount != 1:
                raise FileNotFound(file_id)

    # ---- batches -------------------------------------------------------------------------------

    def add_batch(self, batch_id: str, tenant_id: str, key_id: str | None, input_file_id: str, endpoint: str,
                  completion_window: str, metadata: Mapping[str, Any], extra: Mapping[str, Any],
                  times: Mapping[str, int], custom_ids: Sequence[str]) -> BatchRecord:
        """The batch (status `validating`) and one line row per request, in one transaction."""
        with self._transaction() as session:
            row = BatchRow(id=batch_id, tenant_id=tenant_id, key_id=key_id, input_file_id=input_file_id,
                           endpoint=endpoint, completion_window=completion_window, status="validating",
                           total=len(custom_ids), meta=dict(metadata), extra=dict(extra), times=dict(times),
                           created=utcnow())
            session.add(row)
            session.flush()
            session.add_all(BatchItemRow(batch_id=batch_id, line=line, custom_id=custom_id)
                            for line, custom_id in enumerate(custom_ids))
            return _batch(row)

    def get_batch(self, tenant_id: str | None, batch_id: str) -> BatchRecord:
        """One batch; `tenant_id=None` only for the runner."""
        with self._transaction() as session:
            return _batch(tenant_row(session, BatchRow, batch_id, tenant_id, BatchNotFound))

    def list_batches(self, tenant_id: str, limit: int, after: str | None = None) -> list[BatchRecord]:
        with self._transaction() as session:
            return [_batch(row) for row in session.scalars(_page(select(BatchRow), BatchRow, tenant_id, limit, after))]

    def active_batches(self) -> list[BatchRecord]:
        with self._transaction() as session:
            rows = session.scalars(select(BatchRow).where(BatchRow.status.in_(BATCH_ACTIVE)).order_by(BatchRow.seq))
            return [_batch(row) for row in rows]

    def set_status(self, batch_id: str, status: str, from_status: Sequence[str], *,
                   errors: list[dict[str, Any]] | None = None, tenant_id: str | None = None) -> bool:
        """Move a batch on (and stamp `<status>_at`) if it is still in one of `from_status`."""
        with self._transaction() as session:
            query = select(BatchRow).where(BatchRow.id == batch_id, BatchRow.status.in_(list(from_status)))
            if tenant_id is not None:
                query = query.where(BatchRow.tenant_id == tenant_id)
            row = session.scalar(query.with_for_update())
            if row is None:
                return False
            row.status = status
            row.times = {**(row.times or {}), f"{status}_at": int(utcnow().timestamp())}
            if errors is not None:
                row.errors = errors
            return True

    def finish_batch(self, batch_id: str, status: str, from_status: Sequence[str], purpose: str,
                     output: NewFile | None, error_file: NewFile | None) -> bool:
        """The final status and the output and error files, in one transaction (so a crash leaves neither)."""
        with self._transaction() as session:
            row = session.scalar(select(BatchRow).where(BatchRow.id == batch_id,
                                                        BatchRow.status.in_(list(from_status))).with_for_update())
            if row is None:
                return False
            for new in (output, error_file):
                if new is not None:
                    session.add(FileRow(id=new.id, tenant_id=row.tenant_id, filename=new.filename, purpose=purpose,
                                        size=new.size, content_hash=new.content_hash, created=utcnow()))
            row.status = status
            row.times = {**(row.times or {}), f"{status}_at": int(utcnow().timestamp())}
            row.output_file_id = output.id if output else None
            row.error_file_id = error_file.id if error_file else None
            return True

    # ---- lines ---------------------------------------------------------------------------------

    def pending_items(self, batch_id: str) -> list[BatchItem]:
        """Lines neither queued nor refused yet (all of them at first; the rest after a crash)."""
        with self._transaction() as session:
            rows = session.scalars(select(BatchItemRow).where(BatchItemRow.batch_id == batch_id,
                                                              BatchItemRow.job_id.is_(None),
                                                              BatchItemRow.status_code.is_(None))
                                   .order_by(BatchItemRow.line))
            return [BatchItem(row.seq, row.line, row.custom_id, None, None, None, None) for row in rows]

    def set_item(self, seq: int, *, job_id: str | None = None, status_code: int | None = None,
                 error: Mapping[str, Any] | None = None) -> None:
        with self._transaction() as session:
            session.execute(update(BatchItemRow).where(BatchItemRow.seq == seq)
                            .values(job_id=job_id, status_code=status_code, error=dict(error) if error else None))

    def counts(self, batch_id: str) -> dict[str, int]:
        """Lines by state: a job's status, `refused` (not queued), or `pending` (not yet looked at)."""
        with self._transaction() as session:
            rows = session.execute(select(ImageJobRow.status, BatchItemRow.status_code, func.count())
                                   .select_from(BatchItemRow)
                                   .outerjoin(ImageJobRow, ImageJobRow.id == BatchItemRow.job_id)
                                   .where(BatchItemRow.batch_id == batch_id)
                                   .group_by(ImageJobRow.status, BatchItemRow.status_code))
            counts: dict[str, int] = {}
            for job_status, status_code, count in rows:
                state = job_status or ("refused" if status_code is not None else "pending")
                counts[state] = counts.get(state, 0) + count
            return counts

    def items_with_jobs(self, batch_id: str) -> list[BatchItem]:
        with self._transaction() as session:
            rows = session.execute(select(BatchItemRow, ImageJobRow)
                                   .outerjoin(ImageJobRow, ImageJobRow.id == BatchItemRow.job_id)
                                   .where(BatchItemRow.batch_id == batch_id).order_by(BatchItemRow.line))
            return [BatchItem(item.seq, item.line, item.custom_id, item.job_id, item.status_code, item.error,
                              job_record(job) if job is not None else None) for item, job in rows]
