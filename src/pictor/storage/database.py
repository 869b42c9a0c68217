"""Metadata operations: tenants, API keys, image records, audit entries. Each public method is one transaction.

Rows never leave this module: callers get frozen dataclasses, so no lazy load can run after the
session is closed and no caller can change a row by accident. Every image read takes the tenant id,
and another tenant's image is reported exactly like a missing one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Text, case, cast, create_engine, delete, event, func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pictor.core import Artifact
from pictor.storage import keys
from pictor.storage.errors import ApiKeyNotFound, ImageNotFound, NotFound, StorageError, TenantExists, TenantNotFound
from pictor.storage.migrations import migrate
from pictor.storage.tables import (
    ApiKeyRow,
    AuditCheckpointRow,
    AuditEntryRow,
    FileRow,
    ImageJobRow,
    ImageParentRow,
    ImageRow,
    PromptSaltRow,
    RateWindowRow,
    SessionRow,
    SessionTurnRow,
    TenantRow,
    TenantSettingsRow,
    TenantUsageRow,
    UTCDateTime,
    utcnow,
)

AuditItem = tuple[int, str, str]  # (index, canonical entry text, leaf hash hex): a finished audit entry
PROMPT_KEYS = ("prompt", "negative_prompt", "revised_prompt")  # what erase_prompt removes from image params


# What is read from a prompt and would repeat its words: kept as keys, emptied on erasure.
PROMPT_DERIVED_KEYS = ("unknown_words", "validation")


def without_prompts(value: Any) -> Any:
    """`value` (JSON) with every PROMPT_KEYS entry removed and every PROMPT_DERIVED_KEYS one emptied, at any depth."""
    if isinstance(value, dict):
        return {k: ([] if isinstance(v, list) else None) if k in PROMPT_DERIVED_KEYS else without_prompts(v)
                for k, v in value.items() if k not in PROMPT_KEYS}
    if isinstance(value, list):
        return [without_prompts(v) for v in value]
    return value


class AuditReservationLost(StorageError):
    """An audit entry was finalised that is not a pending reservation (voided meanwhile, or never reserved)."""


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    created: datetime


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


@dataclass(frozen=True)
class ImageRecord:
    id: str
    tenant_id: str
    content_hash: str
    format: str
    width: int
    height: int
    model: str | None
    seed: int | None
    params: dict[str, Any]
    parents: tuple[str, ...]
    key_id: str | None
    user: str | None
    created: datetime
    deleted: datetime | None = None  # a tombstone: bytes and prompt gone, the record kept for lineage and audit


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


def _tenant(row: TenantRow) -> Tenant:
    return Tenant(id=row.id, name=row.name, created=row.created)


def _key_info(row: ApiKeyRow) -> ApiKeyInfo:
    return ApiKeyInfo(id=row.id, tenant_id=row.tenant_id, hint=row.hint, label=row.label, created=row.created,
                      revoked=row.revoked, role=row.role, expires=row.expires)


def _checkpoint(row: AuditCheckpointRow) -> AuditCheckpoint:
    return AuditCheckpoint(size=row.size, root=row.root, note=row.note, created=row.created)


def tenant_row(session: Session, table: Any, row_id: str, tenant_id: str | None, missing: type[NotFound]) -> Any:
    """The row with this id in the tenant (`tenant_id` None: any tenant, for internal runners only); another
    tenant's row raises `missing` exactly like an unknown id."""
    query = select(table).where(table.id == row_id)
    if tenant_id is not None:
        query = query.where(table.tenant_id == tenant_id)
    row = session.scalar(query)
    if row is None:
        raise missing(row_id)
    return row


def _image(row: ImageRow) -> ImageRecord:
    return ImageRecord(
        id=row.id,
        tenant_id=row.tenant_id,
        content_hash=row.content_hash,
        format=row.format,
        width=row.width,
        height=row.height,
        model=row.model,
        seed=row.seed,
        params=dict(row.params or {}),
        parents=tuple(link.parent_id for link in row.parent_links),
        key_id=row.key_id,
        user=row.user,
        created=row.created,
        deleted=row.deleted,
    )


def _enable_sqlite_pragmas(engine: Engine) -> None:
    """Foreign keys are off by default in SQLite; WAL lets readers run while a request writes."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()


class Database:
    """The metadata store behind one SQLAlchemy engine; any URL works, SQLite is the default."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.engine = create_engine(url, echo=echo)
        if self.engine.dialect.name == "sqlite":
            _enable_sqlite_pragmas(self.engine)
        with self.engine.begin() as connection:
            migrate(connection)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        """Release pooled connections (and, for SQLite, fold the WAL back into the main file)."""
        self.engine.dispose()

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        """One unit of work: committed when the block ends, rolled back entirely if it raises."""
        with self._sessions.begin() as session:
            yield session

    # tenants

    def create_tenant(self, name: str) -> Tenant:
        """A new tenant; names are unique so that `--tenant NAME` is unambiguous."""
        with self._transaction() as session:
            if session.scalar(select(TenantRow).where(TenantRow.name == name)) is not None:
                raise TenantExists(name)
            row = TenantRow(id=keys.new_tenant_id(), name=name, created=utcnow())
            session.add(row)
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

    # usage (quotas)

    def reserve_usage(self, tenant_id: str, day: str, images: int, steps: int,
                      max_images: int | None, max_steps: int | None) -> str | None:
        """Add `images` and `steps` to the tenant's usage of `day` unless that would pass a limit (None: none),
        in one conditional update, so processes sharing the database cannot overshoot together. Returns None when
        added, else the name of the limit ("images" or "steps") that it would pass."""
        table = TenantUsageRow.__table__
        with self._transaction() as session:
            _ensure_row(session, TenantUsageRow(tenant_id=tenant_id, day=day, images=0, steps=0))
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
            _ensure_row(session, RateWindowRow(subject=subject, minute=minute, work=0))
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

    # API keys

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

    # images

    def record_image(
        self,
        artifact: Artifact,
        *,
        params: dict[str, Any] | None = None,
        key_id: str | None = None,
        user: str | None = None,
    ) -> ImageRecord:
        """Store an artifact's metadata and lineage (not its bytes: those go to the blob store first).

        Every parent must be an image of the same tenant; otherwise ImageNotFound is raised and
        nothing is written.
        """
        return self.record_images([(artifact, params)], key_id=key_id, user=user)[0]

    def record_images(
        self,
        records: Sequence[tuple[Artifact, dict[str, Any] | None]],
        *,
        key_id: str | None = None,
        user: str | None = None,
        audit: Sequence[AuditItem] = (),
        salts: Mapping[str, str] | None = None,
    ) -> list[ImageRecord]:
        """Several (artifact, params) records in one transaction: all are written or none.

        A parent may be an earlier artifact of the same call (an edit's uploads, then its outputs).
        `audit` finalises reserved audit entries and `salts` stores prompt salts (subject -> hex) in the same
        transaction, so an image is never stored without its audit entry, nor an entry without its image.
        """
        with self._transaction() as session:
            images = [self._add_image(session, artifact, params, key_id, user) for artifact, params in records]
            self._finalise_audit(session, audit, salts)
            return images

    @staticmethod
    def _add_image(session: Session, artifact: Artifact, params: dict[str, Any] | None, key_id: str | None,
                   user: str | None) -> ImageRecord:
        if artifact.tenant_id is None:
            raise ValueError("an artifact must belong to a tenant to be recorded")
        for parent_id in artifact.parents:
            parent = session.get(ImageRow, parent_id)
            if parent is None or parent.tenant_id != artifact.tenant_id:
                raise ImageNotFound(parent_id)
        row = ImageRow(
            id=artifact.id,
            tenant_id=artifact.tenant_id,
            content_hash=artifact.content_hash,
            format=artifact.format,
            width=artifact.width,
            height=artifact.height,
            model=artifact.model,
            seed=artifact.seed,
            params=dict(params or {}),
            key_id=key_id,
            user=user,
            created=artifact.created,
            size=len(artifact.data),
            parent_links=[
                ImageParentRow(position=index, parent_id=parent_id) for index, parent_id in enumerate(artifact.parents)
            ],
        )
        session.add(row)
        session.flush()
        return _image(row)

    def get_image(self, tenant_id: str, image_id: str) -> ImageRecord:
        """The tenant's image; another tenant's id raises ImageNotFound just like an unknown one."""
        with self._transaction() as session:
            return _image(tenant_row(session, ImageRow, image_id, tenant_id, ImageNotFound))

    def find_image(self, tenant_id: str | None, content_hash: str) -> ImageRecord | None:
        """The tenant's newest image with exactly these bytes (an upload of an image Pictor made), if any.

        `tenant_id` None searches every tenant: for the operator's command-line tools only.
        """
        query = select(ImageRow).where(ImageRow.content_hash == content_hash, ImageRow.deleted.is_(None))
        if tenant_id is not None:
            query = query.where(ImageRow.tenant_id == tenant_id)
        with self._transaction() as session:
            row = session.scalar(query.order_by(ImageRow.created.desc()).limit(1))
            return None if row is None else _image(row)

    def images_with_prefix(self, tenant_id: str | None, prefix: str, limit: int = 2) -> list[ImageRecord]:
        """Images whose id starts with `prefix` (`img_` + hex digits: what a watermark's payload names).

        `tenant_id` None searches every tenant: for the operator's tools only.
        """
        if not re.fullmatch(r"img_[0-9a-f]{1,24}", prefix):
            return []
        query = select(ImageRow).where(ImageRow.id.like(prefix.replace("_", "\\_") + "%", escape="\\"))
        if tenant_id is not None:
            query = query.where(ImageRow.tenant_id == tenant_id)
        with self._transaction() as session:
            return [_image(row) for row in session.scalars(query.order_by(ImageRow.created).limit(limit))]

    def get_image_any_tenant(self, image_id: str) -> ImageRecord:
        """An image whatever its tenant: for the operator's command-line tools only, never for API callers."""
        with self._transaction() as session:
            row = session.get(ImageRow, image_id)
            if row is None:
                raise ImageNotFound(image_id)
            return _image(row)

    def list_images(self, tenant_id: str, *, limit: int = 100, offset: int = 0) -> list[ImageRecord]:
        """The tenant's images, newest first."""
        with self._transaction() as session:
            rows = session.scalars(
                select(ImageRow)
                .where(ImageRow.tenant_id == tenant_id, ImageRow.deleted.is_(None))
                .order_by(ImageRow.created.desc(), ImageRow.id.desc())
                .limit(limit)
                .offset(offset)
            )
            return [_image(row) for row in rows]

    def search_images(self, tenant_id: str, text: str = "", *, limit: int = 50, offset: int = 0) -> list[ImageRecord]:
        """The tenant's images whose prompt contains `text` (case-insensitive; empty: all), newest first."""
        query = select(ImageRow).where(ImageRow.tenant_id == tenant_id, ImageRow.deleted.is_(None))
        if text:
            escaped = re.sub(r"([\\%_])", r"\\\1", text)
            query = query.where(ImageRow.params["prompt"].as_string().ilike(f"%{escaped}%", escape="\\"))
        with self._transaction() as session:
            rows = session.scalars(query.order_by(ImageRow.created.desc(), ImageRow.id.desc()).limit(limit)
                                   .offset(offset))
            return [_image(row) for row in rows]

    def children_of(self, tenant_id: str, image_id: str) -> list[str]:
        """Ids of the tenant's images made from this one (lineage walked forwards)."""
        with self._transaction() as session:
            return list(
                session.scalars(
                    select(ImageParentRow.child_id)
                    .join(ImageRow, ImageRow.id == ImageParentRow.child_id)
                    .where(ImageParentRow.parent_id == image_id, ImageRow.tenant_id == tenant_id)
                    .order_by(ImageParentRow.child_id)
                )
            )

    # audit log

    def reserve_audit(self, count: int = 1) -> list[int]:
        """Insert `count` pending entries with consecutive indexes and return the indexes.

        The first row is inserted by one INSERT ... SELECT max + 1 statement, so the transaction holds the
        write lock before it reads the maximum (SQLite serialises writers); a rare clash of two concurrent
        writers elsewhere (PostgreSQL) fails on the primary key and is retried.
        """
        if count < 1:
            raise ValueError("reserve at least one audit entry")
        table = AuditEntryRow.__table__
        for attempt in range(8):
            try:
                with self._transaction() as session:
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
            except IntegrityError:
                if attempt == 7:
                    raise
        raise AssertionError("unreachable")

    def finalise_audit(self, items: Sequence[AuditItem], salts: Mapping[str, str] | None = None) -> None:
        """Finalise reserved entries that belong to no image (a refused request, an administrative event)."""
        with self._transaction() as session:
            self._finalise_audit(session, items, salts)

    @staticmethod
    def _finalise_audit(session: Session, items: Sequence[AuditItem], salts: Mapping[str, str] | None) -> None:
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
        now = utcnow()
        for subject, salt in (salts or {}).items():
            session.add(PromptSaltRow(subject=subject, salt=salt, created=now))

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
        """The length of the longest prefix 0..n-1 of entries that exist and are not pending."""
        with self._transaction() as session:
            first_pending = session.scalar(
                select(func.min(AuditEntryRow.index)).where(AuditEntryRow.status == "pending")
            )
            if session.get(AuditEntryRow, 0) is None:
                return 0
            after = AuditEntryRow.index + 1
            first_missing = session.scalar(select(func.min(after)).where(after.not_in(select(AuditEntryRow.index))))
            return min(first_missing, first_pending if first_pending is not None else first_missing)

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

    def prompt_salt(self, subject: str) -> str | None:
        """The salt (hex) behind the prompt hash of an image id or `audit:<index>`; None once erased."""
        with self._transaction() as session:
            row = session.get(PromptSaltRow, subject)
            return None if row is None else row.salt

    def erase_prompt(self, image_id: str) -> ImageRecord:
        """Remove an image's prompt text and its salt (an erasure request); its audit entry stays as it was."""
        with self._transaction() as session:
            row = session.get(ImageRow, image_id)
            if row is None:
                raise ImageNotFound(image_id)
            _erase_prompt_rows(session, row)
            session.flush()
            return _image(row)

    def jobs_that_made(self, tenant_id: str, image_id: str) -> list[str]:
        """Ids of the tenant's async jobs whose result names this image."""
        with self._transaction() as session:
            return [job.id for job in _jobs_that_made(session, tenant_id, image_id)]

    def delete_image(self, tenant_id: str, image_id: str) -> tuple[ImageRecord, str | None]:
        """Delete one of the tenant's images: its prompt everywhere (as erase_prompt) and its stored bytes. The
        record stays as a tombstone (`deleted` set), so lineage and the audit log still name it. Returns the record
        and the blob digest to remove, or None while another live image or a file holds the same bytes. Deleting
        twice changes nothing."""
        with self._transaction() as session:
            row = tenant_row(session, ImageRow, image_id, tenant_id, ImageNotFound)
            if row.deleted is not None:
                return _image(row), None
            _erase_prompt_rows(session, row)
            row.deleted, row.size = utcnow(), 0
            session.flush()
            return _image(row), None if blob_held(session, row.content_hash) else row.content_hash

    def expired_images(self, limit: int = 500) -> list[tuple[str, str]]:
        """(tenant id, image id) of live images older than their tenant's `retention_days`, oldest first."""
        with self._transaction() as session:
            found: list[tuple[str, str]] = []
            for settings in session.scalars(select(TenantSettingsRow)):
                days = (settings.settings or {}).get("retention_days")
                if days is None or len(found) >= limit:
                    continue
                cutoff = utcnow() - timedelta(days=float(days))
                found += session.execute(
                    select(ImageRow.tenant_id, ImageRow.id).where(
                        ImageRow.tenant_id == settings.tenant_id, ImageRow.deleted.is_(None),
                        ImageRow.created <= cutoff).order_by(ImageRow.created).limit(limit - len(found))).all()
            return [(tenant, image) for tenant, image in found]

    def erase_salt(self, subject: str) -> bool:
        """Delete one prompt salt (e.g. `audit:<index>` of a refused request); True if there was one."""
        with self._transaction() as session:
            return session.execute(delete(PromptSaltRow).where(PromptSaltRow.subject == subject)).rowcount > 0


def _ensure_row(session: Session, row: Any) -> None:
    """Add `row` (a counter at zero) unless its primary key is there; another process adding it first is fine."""
    mapper = type(row).__mapper__
    if session.get(type(row), tuple(getattr(row, column.key) for column in mapper.primary_key)) is None:
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:
            pass


def blob_held(session: Session, content_hash: str) -> bool:
    """Whether any file, or any live image, still has these bytes (so the blob must stay)."""
    return (session.scalar(select(FileRow.id).where(FileRow.content_hash == content_hash).limit(1))
            or session.scalar(select(ImageRow.id).where(ImageRow.content_hash == content_hash,
                                                        ImageRow.deleted.is_(None)).limit(1))) is not None


def _erase_prompt_rows(session: Session, row: ImageRow) -> None:
    """An image's prompt out of every row that kept it (see Database.erase_prompt)."""
    image_id = row.id
    row.params = {**without_prompts(row.params or {}), "prompt_erased": utcnow().isoformat()}
    session.execute(delete(PromptSaltRow).where(PromptSaltRow.subject == image_id))
    # The conversation turn that made it holds the same words.
    for turn in session.scalars(select(SessionTurnRow).where(SessionTurnRow.image_id == image_id)):
        turn.text, turn.prompt, turn.extra = "", "", {}
        turn.params = without_prompts(turn.params or {})
    # So do the async job (or batch line) that made it: its stored request and result.
    for job in _jobs_that_made(session, row.tenant_id, image_id):
        job.request = {**without_prompts(job.request or {}), "prompt_erased": True}
        job.result = without_prompts(job.result)


def _jobs_that_made(session: Session, tenant_id: str, image_id: str) -> list[ImageJobRow]:
    mentions = cast(ImageJobRow.result, Text).like(f'%"{image_id}"%')
    return [job for job in session.scalars(select(ImageJobRow).where(ImageJobRow.tenant_id == tenant_id, mentions))
            if any(item.get("id") == image_id for item in (job.result or {}).get("images", []))]


# ---- sessions -----------------------------------------------------------------------------------------------
# Kept in their own section (and read back as frozen records, like images): a session and its turns belong to
# one tenant, and another tenant's session or turn is reported exactly like a missing one.


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


def _session_row(session: Session, tenant_id: str, session_id: str) -> SessionRow:
    row = session.scalar(select(SessionRow).where(SessionRow.id == session_id, SessionRow.tenant_id == tenant_id))
    if row is None:
        raise SessionNotFound(session_id)
    return row


class SessionStore:
    """Session and turn records on a Database's engine: a class of its own so the Database class stays as it was,
    built once next to it (`SessionStore(database)`)."""

    def __init__(self, database: Database) -> None:
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
        """Append a turn and make it the session's tip, in one transaction (SQLite serialises the position)."""
        with self._transaction() as session:
            owner = _session_row(session, tenant_id, session_id)
            if parent_id is not None and session.scalar(select(SessionTurnRow.id).where(
                    SessionTurnRow.id == parent_id, SessionTurnRow.session_id == session_id)) is None:
                raise SessionNotFound(parent_id)
            last = session.scalar(select(func.max(SessionTurnRow.position))
                                  .where(SessionTurnRow.session_id == session_id))
            row = SessionTurnRow(id=turn_id, session_id=session_id, tenant_id=tenant_id, position=(last or 0) + 1,
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


# ---- async image jobs -------------------------------------------------------------------------------------------
# Their own section, like sessions: a job belongs to one tenant, and another tenant's job is reported exactly like
# a missing one. Status changes are conditional updates (`WHERE status = ...`), so a cancel and the runner
# finishing the same job cannot both win.

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


def _job(row: ImageJobRow) -> JobRecord:
    return JobRecord(id=row.id, seq=row.seq, tenant_id=row.tenant_id, key_id=row.key_id, endpoint=row.endpoint,
                     request=dict(row.request or {}), input_hashes=tuple(row.input_hashes or ()),
                     priority=row.priority, status=row.status, progress=row.progress, attempts=row.attempts,
                     metadata=dict(row.meta or {}), result=row.result, error=row.error, created=row.created,
                     started=row.started, finished=row.finished)


class JobStore:
    """Image job records on a Database's engine (`JobStore(database)`)."""

    def __init__(self, database: Database) -> None:
        self._transaction = database._transaction

    def add_job(self, job_id: str, tenant_id: str, key_id: str | None, endpoint: str, request: Mapping[str, Any],
                input_hashes: Sequence[str], priority: int, metadata: Mapping[str, Any]) -> JobRecord:
        with self._transaction() as session:
            row = ImageJobRow(id=job_id, tenant_id=tenant_id, key_id=key_id, endpoint=endpoint, request=dict(request),
                              input_hashes=list(input_hashes), priority=priority, status="queued", progress=0.0,
                              attempts=0, meta=dict(metadata), created=utcnow())
            session.add(row)
            session.flush()
            return _job(row)

    def get_job(self, tenant_id: str | None, job_id: str) -> JobRecord:
        """One job; `tenant_id=None` only for the runner, which serves every tenant."""
        with self._transaction() as session:
            return _job(tenant_row(session, ImageJobRow, job_id, tenant_id, JobNotFound))

    def list_jobs(self, tenant_id: str, limit: int = 20) -> list[JobRecord]:
        with self._transaction() as session:
            rows = session.scalars(select(ImageJobRow).where(ImageJobRow.tenant_id == tenant_id)
                                   .order_by(ImageJobRow.seq.desc()).limit(limit))
            return [_job(row) for row in rows]

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

    def claim_job(self, job_id: str) -> JobRecord | None:
        """queued -> running (None when it was cancelled meanwhile)."""
        with self._transaction() as session:
            done = session.execute(update(ImageJobRow).where(ImageJobRow.id == job_id, ImageJobRow.status == "queued")
                                   .values(status="running", progress=0.0, started=utcnow(),
                                           attempts=ImageJobRow.attempts + 1))
            if done.rowcount != 1:
                return None
            return _job(session.scalars(select(ImageJobRow).where(ImageJobRow.id == job_id)).one())

    def set_job_progress(self, job_id: str, progress: float) -> None:
        """Raise a running job's progress (never lower it: reports of several images may be written out of order)."""
        with self._transaction() as session:
            session.execute(update(ImageJobRow).where(ImageJobRow.id == job_id, ImageJobRow.status == "running",
                                                      ImageJobRow.progress < progress)
                            .values(progress=progress))

    def finish_job(self, job_id: str, status: str, *, from_status: Sequence[str] = ("running",),
                   result: Mapping[str, Any] | None = None, error: Mapping[str, Any] | None = None,
                   tenant_id: str | None = None) -> bool:
        """Move a job to a terminal status (or back to `queued`) if it is still in one of `from_status`."""
        with self._transaction() as session:
            query = update(ImageJobRow).where(ImageJobRow.id == job_id, ImageJobRow.status.in_(list(from_status)))
            if tenant_id is not None:
                query = query.where(ImageJobRow.tenant_id == tenant_id)
            values: dict[str, Any] = {"status": status, "finished": utcnow() if status in JOB_TERMINAL else None}
            if result is not None:
                values.update(result=dict(result), progress=1.0)
            if error is not None:
                values["error"] = dict(error)
            if status == "queued":  # a clean stop: not counted as an attempt (a crash is, see requeue_running)
                values.update(progress=0.0, started=None, attempts=ImageJobRow.attempts - 1)
            return session.execute(query.values(**values)).rowcount == 1

    def requeue_running(self, max_attempts: int, error: Mapping[str, Any]) -> tuple[int, int]:
        """At start-up: jobs a crash left `running` are queued again, or failed with `error` once they have been
        started `max_attempts` times (a job that crashes the server must not crash it forever). (requeued, failed)"""
        with self._transaction() as session:
            running = ImageJobRow.status == "running"
            failed = session.execute(update(ImageJobRow).where(running, ImageJobRow.attempts >= max_attempts)
                                     .values(status="failed", error=dict(error), finished=utcnow())).rowcount
            requeued = session.execute(update(ImageJobRow).where(running)
                                       .values(status="queued", progress=0.0, started=None)).rowcount
            return requeued, failed
