"""Storage errors, so that callers (the API's error mapping) can tell 'not found' from a fault."""


class StorageError(Exception):
    """Base of every error the storage layer raises on purpose."""


class NotFound(StorageError, LookupError):
    """The object does not exist *for this caller*: another tenant's object is reported the same way."""


class ImageNotFound(NotFound):
    """No image with this id in the caller's tenant."""


class TenantNotFound(NotFound):
    """No tenant with this id or name."""


class ApiKeyNotFound(NotFound):
    """No API key with this id."""


class BlobNotFound(NotFound):
    """No blob with this content hash."""


class TenantExists(StorageError):
    """A tenant with this name already exists (names are unique)."""
