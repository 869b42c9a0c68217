"""Deleting images, on request or when a tenant's retention period has passed (and, on the same sweep, writing
keys that have expired into the audit log).

A deleted image loses its bytes (unless another live image or a file holds the same bytes) and its prompt
everywhere it was kept; its record stays as a tombstone, so lineage and provenance say it was deleted and when,
and the audit log, which holds only hashes, still verifies. Every deletion is an admin audit entry.
"""

from __future__ import annotations

import logging

from pictor.service.erasure import scrub_batch_files
from pictor.service.governance import Governance
from pictor.storage import BlobStore, Database
from pictor.storage.database import ImageRecord

log = logging.getLogger(__name__)


def delete_image(database: Database, blobs: BlobStore, governance: Governance, tenant_id: str, image_id: str,
                 actor: str, key_id: str | None = None, reason: str = "request") -> ImageRecord:
    """Delete one of the tenant's images (NotFound for another tenant's); deleting twice records nothing new."""
    before = database.get_image(tenant_id, image_id)
    jobs = database.jobs_that_made(tenant_id, image_id)
    record, orphan = database.delete_image(tenant_id, image_id)
    scrub_batch_files(database, blobs, tenant_id, jobs)
    if orphan is not None:
        blobs.delete(orphan)
    if before.deleted is None:
        governance.record_admin("image_deleted", tenant=tenant_id, actor=actor, key_id=key_id, image_id=image_id,
                                reason=reason, bytes_removed=orphan is not None)
    return record


def sweep_expired(database: Database, blobs: BlobStore, governance: Governance, limit: int = 500) -> int:
    """Delete the images that have outlived their tenant's `retention_days` (returns how many), and write each key
    that has expired since the last sweep into the audit log."""
    for key in database.expired_unaudited_keys():
        governance.record_admin("key_expired", tenant=key.tenant_id, actor="expiry", subject_key=key.id,
                                expired=key.expires.isoformat() if key.expires else None)
    expired = database.expired_images(limit)
    for tenant_id, image_id in expired:
        delete_image(database, blobs, governance, tenant_id, image_id, actor="retention", reason="retention")
    if expired:
        log.info("retention: deleted %d images", len(expired))
    return len(expired)
