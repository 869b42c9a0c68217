"""Files in the upstream Files API's sense: a tenant's uploads (batch input files) and the batches' outputs. The
bytes live in the blob store (content-addressed, so shared), the record belongs to the tenant."""

from __future__ import annotations

from pictor.service.batches import new_id
from pictor.service.quotas import QuotaKeeper
from pictor.storage import BlobStore
from pictor.storage.batches import BatchStore, FileRecord, NewFile


class FileService:
    """Upload, list, read and delete a tenant's files (another tenant's are not found)."""

    def __init__(self, store: BatchStore, blobs: BlobStore, quotas: QuotaKeeper):
        self.store = store
        self.blobs = blobs
        self.quotas = quotas

    def upload(self, tenant_id: str, filename: str, data: bytes, purpose: str) -> FileRecord:
        """Stored unless it would pass the tenant's file or storage quota (checked first: a refusal stores nothing)."""
        self.quotas.check_holdings(tenant_id, files=1, stored_bytes=len(data))
        digest = self.blobs.put(data)
        return self.store.add_file(tenant_id, NewFile(new_id("file-"), filename, len(data), digest), purpose)

    def page(self, tenant_id: str, limit: int, after: str | None = None,
             purpose: str | None = None) -> tuple[list[FileRecord], bool]:
        """Up to `limit` files after the one named `after`, and whether more follow."""
        records = self.store.list_files(tenant_id, limit + 1, after, purpose)
        return records[:limit], len(records) > limit

    def get(self, tenant_id: str, file_id: str) -> FileRecord:
        return self.store.get_file(tenant_id, file_id)

    def content(self, tenant_id: str, file_id: str) -> tuple[FileRecord, bytes]:
        record = self.store.get_file(tenant_id, file_id)
        return record, self.blobs.get(record.content_hash)

    def delete(self, tenant_id: str, file_id: str) -> None:
        """The record only: the bytes may be another file's or image's too (the blob store is content-addressed)."""
        self.store.delete_file(tenant_id, file_id)
