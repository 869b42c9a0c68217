"""The gallery: a tenant's images, newest first, found by the text of their prompts (the web studio's gallery)."""

from __future__ import annotations

from dataclasses import dataclass

from pictor.storage import Database, ImageRecord


@dataclass(frozen=True)
class GalleryPage:
    images: list[ImageRecord]
    has_more: bool  # another page follows


class Gallery:
    """Searches the tenant's live images (deleted ones are tombstones, not shown)."""

    def __init__(self, database: Database):
        self.database = database

    def search(self, tenant_id: str, text: str, limit: int, offset: int = 0) -> GalleryPage:
        """Up to `limit` images past `offset` whose prompt contains `text` (case-insensitive; empty: all)."""
        records = self.database.search_images(tenant_id, text.strip(), limit=limit + 1, offset=offset)
        return GalleryPage(records[:limit], len(records) > limit)
