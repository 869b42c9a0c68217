"""The gallery: a tenant's images, newest first, found by the text of their prompts (the web studio's gallery), and
deleted on request."""

from __future__ import annotations

from dataclasses import dataclass

from pictor.service import retention
from pictor.service.governance import Governance
from pictor.service.images import ImageService
from pictor.storage import BlobStore, Database, ImageRecord, Principal


@dataclass(frozen=True)
class GalleryPage:
    images: list[ImageRecord]
    has_more: bool  # another page follows


class Gallery:
    """Searches and deletes the tenant's images (a deleted one is a tombstone: never shown, still in lineage)."""

    def __init__(self, database: Database, blobs: BlobStore, governance: Governance, images: ImageService):
        self.database = database
        self.blobs = blobs
        self.governance = governance
        self.images = images

    def search(self, tenant_id: str, text: str, limit: int, offset: int = 0) -> GalleryPage:
        """Up to `limit` images past `offset` whose prompt contains `text` (case-insensitive; empty: all)."""
        records = self.database.search_images(tenant_id, text.strip(), limit=limit + 1, offset=offset)
        return GalleryPage(records[:limit], len(records) > limit)

    def delete(self, principal: Principal, image_id: str) -> ImageRecord:
        """The image's bytes and its prompt everywhere (service/retention); the result cache forgets the tenant's
        requests too, so none of them answers with the deleted image."""
        record = retention.delete_image(self.database, self.blobs, self.governance, principal.tenant_id, image_id,
                                        f"key:{principal.key_id}", principal.key_id)
        self.images.forget_cached(principal.tenant_id)
        return record
