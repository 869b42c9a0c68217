"""Queries that several record types share: the tenant-scoped row lookup, and whether a blob is still held."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pictor.storage.errors import NotFound
from pictor.storage.tables import FileRow, ImageRow


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


def blob_held(session: Session, content_hash: str) -> bool:
    """Whether any file, or any live image, still has these bytes (so the blob must stay)."""
    return (session.scalar(select(FileRow.id).where(FileRow.content_hash == content_hash).limit(1))
            or session.scalar(select(ImageRow.id).where(ImageRow.content_hash == content_hash,
                                                        ImageRow.deleted.is_(None)).limit(1))) is not None
