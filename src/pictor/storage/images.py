"""Image records: metadata and lineage of stored images (their bytes are in the blob store), and their erasure.

Every read takes the tenant id, and another tenant's image is reported exactly like a missing one, except in the
methods named for the operator's command-line tools. Deleting an image keeps its record as a tombstone, so lineage
and the audit log still name it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pictor.core import Artifact
from pictor.storage.audit_log import AuditItem, finalise_audit_rows
from pictor.storage.errors import ImageNotFound
from pictor.storage.jobs import job_rows_that_made
from pictor.storage.prompt_salts import delete_salt
from pictor.storage.shared_queries import blob_held, tenant_row
from pictor.storage.tables import ImageParentRow, ImageRow, SessionTurnRow, TenantSettingsRow, utcnow
from pictor.storage.transactions import Transactions

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


def _erase_prompt_rows(session: Session, row: ImageRow) -> None:
    """An image's prompt out of every row that kept it (see ImageQueries.erase_prompt)."""
    image_id = row.id
    row.params = {**without_prompts(row.params or {}), "prompt_erased": utcnow().isoformat()}
    delete_salt(session, image_id)
    # The conversation turn that made it holds the same words.
    for turn in session.scalars(select(SessionTurnRow).where(SessionTurnRow.image_id == image_id)):
        turn.text, turn.prompt, turn.extra = "", "", {}
        turn.params = without_prompts(turn.params or {})
    # So do the async job (or batch line) that made it: its stored request and result.
    for job in job_rows_that_made(session, row.tenant_id, image_id):
        job.request = {**without_prompts(job.request or {}), "prompt_erased": True}
        job.result = without_prompts(job.result)


class ImageQueries(Transactions):
    """Image records: part of `Database`."""

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
            images = [_add_image(session, artifact, params, key_id, user) for artifact, params in records]
            finalise_audit_rows(session, audit, salts)
            return images

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
            return [job.id for job in job_rows_that_made(session, tenant_id, image_id)]

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
