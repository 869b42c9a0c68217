"""The metadata schema (SQLAlchemy 2.x ORM). Portable types only, so SQLite and PostgreSQL both work."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out; SQLite drops the zone, so it is restored on read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; use timezone-aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class TenantRow(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))
    label: Mapped[str | None] = mapped_column(String(200))
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked: Mapped[datetime | None] = mapped_column(UTCDateTime)
    role: Mapped[str] = mapped_column(String(16), default="member", server_default="member")  # see storage.roles
    expires: Mapped[datetime | None] = mapped_column(UTCDateTime)  # no longer authenticates from then on
    expiry_audited: Mapped[bool] = mapped_column(default=False, server_default=false())  # its expiry is in the log

    tenant: Mapped[TenantRow] = relationship()


class ImageRow(Base):
    __tablename__ = "images"
    __table_args__ = (Index("ix_images_tenant_created", "tenant_id", "created"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    format: Mapped[str] = mapped_column(String(8))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    model: Mapped[str | None] = mapped_column(String(200))
    seed: Mapped[int | None] = mapped_column(BigInteger)  # signed 64-bit on every backend
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    user: Mapped[str | None] = mapped_column("end_user", Text)  # `user` is reserved in PostgreSQL
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    size: Mapped[int | None] = mapped_column(BigInteger)  # bytes of the stored file (a tenant's stored-bytes quota)
    deleted: Mapped[datetime | None] = mapped_column(UTCDateTime)  # when its bytes and prompt were deleted

    parent_links: Mapped[list[ImageParentRow]] = relationship(
        foreign_keys="ImageParentRow.child_id",
        order_by="ImageParentRow.position",
        cascade="all, delete-orphan",
    )


class ImageParentRow(Base):
    """Lineage as an association table (not a JSON list) so 'what was made from X?' is one indexed query."""

    __tablename__ = "image_parents"

    child_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    parent_id: Mapped[str] = mapped_column(ForeignKey("images.id"), index=True)


class AuditEntryRow(Base):
    """One leaf of the audit log. A reservation is `pending` (no text yet); it becomes `final` with its
    canonical JSON, or `void` when the request that reserved it never finished. The column is `idx`, not
    `index`, so that ad-hoc SQL needs no quoting."""

    __tablename__ = "audit_entries"

    index: Mapped[int] = mapped_column("idx", Integer, primary_key=True, autoincrement=False)
    entry: Mapped[str | None] = mapped_column(Text)
    leaf_hash: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(8), default="pending", index=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditCheckpointRow(Base):
    """A signed checkpoint (tree head) of the first `size` entries."""

    __tablename__ = "audit_checkpoints"

    size: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    root: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PromptSaltRow(Base):
    """The salt behind a prompt hash in the audit log, kept outside the log so that deleting it (with the
    prompt text) erases the link without touching any entry. Subject: an image id or `audit:<index>`."""

    __tablename__ = "prompt_salts"

    subject: Mapped[str] = mapped_column(String(64), primary_key=True)
    salt: Mapped[str] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TenantSettingsRow(Base):
    """Per-tenant governance settings (e.g. the visible badge); a table of its own so older databases gain it."""

    __tablename__ = "tenant_settings"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# ---- sessions (multi-turn refinement; the Responses API's turns) ------------------------------------------------


class TenantUsageRow(Base):
    """What a tenant used on one UTC day, counted as requests are admitted (see service.quotas): shared by every
    process on the database, so a quota holds across replicas. The server defaults are migration 0003's, so a
    new database and a migrated one have the same schema."""

    __tablename__ = "tenant_usage"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD, UTC
    images: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    steps: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class RateWindowRow(Base):
    """Work charged to a tenant or a key in one minute (see service.quotas): rate limits that every process sharing
    the database holds together."""

    __tablename__ = "rate_windows"

    subject: Mapped[str] = mapped_column(String(48), primary_key=True)  # tenant:<id> or key:<id>
    minute: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # Unix time // 60
    work: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class SessionRow(Base):
    """A conversation about images. `tip_turn_id` is the current branch tip: undo moves it, nothing is deleted."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    title: Mapped[str | None] = mapped_column(String(200))
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # model, size, quality defaults
    tip_turn_id: Mapped[str | None] = mapped_column(String(40))  # no FK: turns point at their session already
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SessionTurnRow(Base):
    """One turn: what was said, what was done (generate / edit), from which images, and the image it made.

    `parent_id` makes the turns a tree (branches); `position` numbers the turns of a session 1, 2, ... in the
    order they were made, which is what "image 2" means.
    """

    __tablename__ = "session_turns"
    __table_args__ = (Index("ix_session_turns_session_position", "session_id", "position", unique=True),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("session_turns.id"))
    text: Mapped[str] = mapped_column(Text)
    prompt: Mapped[str] = mapped_column(Text)  # what the model was asked (the text less its references)
    action: Mapped[str] = mapped_column(String(16))
    image_id: Mapped[str | None] = mapped_column(ForeignKey("images.id"))
    inputs: Mapped[list[str]] = mapped_column(JSON, default=list)  # image ids the job read, source first
    uploads: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # [{image_id, name}]
    references: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # e.g. what a Responses request echoes
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# ---- async image jobs (POST /v1/jobs) ---------------------------------------------------------------------------


class ImageJobRow(Base):
    """A queued image request that survives a restart. `request` is the body as sent, except that large data-URL
    payloads are replaced by references to blobs (`input_hashes` lists them); `seq` orders jobs by age even when
    two share a timestamp. `result` holds image ids and the response's fields, never the image bytes."""

    __tablename__ = "image_jobs"
    __table_args__ = (Index("ix_image_jobs_status_priority", "status", "priority"),
                      Index("ix_image_jobs_tenant_seq", "tenant_id", "seq"))

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    endpoint: Mapped[str] = mapped_column(String(64))
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    input_hashes: Mapped[list[str]] = mapped_column(JSON, default=list)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    progress: Mapped[float] = mapped_column(default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # how many times it was started (crashes count)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)  # `metadata` is taken by SQLAlchemy
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The process running it and until when its claim holds (renewed by that process's heartbeat); a running job
    # whose lease ran out is taken over by another process.
    claimed_by: Mapped[str | None] = mapped_column(String(120))
    lease_expires: Mapped[datetime | None] = mapped_column(UTCDateTime)


# ---- files and batches (POST /v1/files, POST /v1/batches) -------------------------------------------------------


class FileRow(Base):
    """An uploaded or produced file (JSONL for batches); the bytes live in the blob store under `content_hash`."""

    __tablename__ = "files"
    __table_args__ = (Index("ix_files_tenant_seq", "tenant_id", "seq"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String(256))
    purpose: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(BigInteger)
    content_hash: Mapped[str] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BatchRow(Base):
    """A batch of image requests; `times` holds the upstream timestamps (in_progress_at, completed_at, ...)."""

    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_tenant_seq", "tenant_id", "seq"), Index("ix_batches_status", "status"))

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    input_file_id: Mapped[str] = mapped_column(String(40))
    endpoint: Mapped[str] = mapped_column(String(64))
    completion_window: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="validating")
    total: Mapped[int] = mapped_column(Integer, default=0)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # e.g. the base URL for `url` results
    times: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    output_file_id: Mapped[str | None] = mapped_column(String(40))
    error_file_id: Mapped[str | None] = mapped_column(String(40))
    errors: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BatchItemRow(Base):
    """One line of a batch: the job that runs it, or the error that kept it from being queued."""

    __tablename__ = "batch_items"
    __table_args__ = (Index("ix_batch_items_batch_line", "batch_id", "line"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    line: Mapped[int] = mapped_column(Integer)  # index among the file's requests
    custom_id: Mapped[str] = mapped_column(String(256))
    job_id: Mapped[str | None] = mapped_column(String(40))
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
