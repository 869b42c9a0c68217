"""Content-addressed blob storage: the sha256 of the bytes names them, so equal images are stored once.

`BlobStore` is the contract the service depends on; `LocalBlobStore` is the default (a folder on
disk), `S3BlobStore` (storage/s3_blobs.py) the store that several machines share; `open_blob_store` picks one
from the `blob_url` setting.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable

from pictor.core import is_sha256_hex, sha256_hex
from pictor.storage.errors import BlobNotFound


@runtime_checkable
class BlobStore(Protocol):
    """Bytes in, content hash out; the hash is the only address."""

    def put(self, data: bytes) -> str:
        """Store the bytes (a no-op when already present) and return their sha256 hex digest."""
        ...

    def get(self, digest: str) -> bytes:
        """The bytes with this digest; raises BlobNotFound."""
        ...

    def delete(self, digest: str) -> bool:
        """Remove a blob (its bytes are gone for good); True if it was there."""
        ...

    def exists(self, digest: str) -> bool:
        """Whether bytes with this digest are stored."""
        ...

    def presigned_url(self, digest: str, lifetime_s: int, content_type: str | None = None) -> str | None:
        """A link that serves the blob without Pictor, valid for `lifetime_s`; None where the store has none."""
        ...


def open_blob_store(blob_url: str | None, default_root: Path) -> BlobStore:
    """The store the `blob_url` setting names: `s3://BUCKET/PREFIX`, or a folder (a path; unset: `default_root`)."""
    if not blob_url:
        return LocalBlobStore(default_root)
    if blob_url.startswith("s3://"):
        from pictor.storage.s3_blobs import S3BlobStore  # boto3 is imported only by installations that use it

        return S3BlobStore.from_url(blob_url)
    if "://" in blob_url:
        raise ValueError(f"blob_url must be s3://BUCKET/PREFIX or a folder, not {blob_url!r}")
    return LocalBlobStore(blob_url)


def checked_digest(digest: str) -> str:
    """Refuse anything but a hex digest: digests become paths, so this is also path-traversal defence."""
    if not is_sha256_hex(digest):
        raise ValueError(f"not a sha256 hex digest: {digest!r}")
    return digest


class LocalBlobStore:
    """Blobs as files under `root/ab/cd/<digest>`; two shard levels keep folders small at millions of files.

    Writes go to a temporary file in the target folder and are renamed into place, so a reader never
    sees a partial file and a crash leaves at most a stray temporary file (names start with `.tmp-`).
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, digest: str) -> Path:
        """Where the blob with this digest lives (whether or not it exists yet)."""
        digest = checked_digest(digest)
        return self.root / digest[:2] / digest[2:4] / digest

    def put(self, data: bytes) -> str:
        """Store the bytes once; concurrent puts of the same bytes are safe (rename is atomic)."""
        digest = sha256_hex(data)
        target = self.path_for(digest)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return digest

    def get(self, digest: str) -> bytes:
        """Read the bytes back; raises BlobNotFound for an unknown digest."""
        try:
            return self.path_for(digest).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(digest) from None

    def delete(self, digest: str) -> bool:
        """Remove a blob (its bytes are gone for good); True if it was there."""
        try:
            self.path_for(digest).unlink()
            return True
        except FileNotFoundError:
            return False

    def exists(self, digest: str) -> bool:
        """Whether the blob is stored."""
        return self.path_for(digest).is_file()

    def presigned_url(self, digest: str, lifetime_s: int, content_type: str | None = None) -> None:
        """None: a folder has no links of its own, so Pictor serves its blobs (signed /v1/images/{id}/content)."""
        checked_digest(digest)
        return None
