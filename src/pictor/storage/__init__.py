"""Storage: content-addressed bytes (blobs) and the metadata database (tenants, keys, image records)."""

from pictor.storage.blobs import BlobStore, LocalBlobStore, open_blob_store
from pictor.storage.database import ApiKeyInfo, Database, ImageRecord, NewApiKey, Principal, Tenant
from pictor.storage.datadir import DataDir
from pictor.storage.errors import (
    ApiKeyNotFound,
    BlobNotFound,
    ImageNotFound,
    NotFound,
    StorageError,
    TenantExists,
    TenantNotFound,
)

__all__ = [
    "ApiKeyInfo",
    "ApiKeyNotFound",
    "BlobNotFound",
    "BlobStore",
    "DataDir",
    "Database",
    "ImageNotFound",
    "ImageRecord",
    "LocalBlobStore",
    "NewApiKey",
    "NotFound",
    "Principal",
    "StorageError",
    "Tenant",
    "TenantExists",
    "TenantNotFound",
    "open_blob_store",
]
