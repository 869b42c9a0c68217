"""Content-addressed blobs in an S3-compatible bucket, so that every API process on every machine sees the same bytes.

Selected by `PICTOR_BLOB_URL=s3://BUCKET/PREFIX`. The endpoint, credentials and region come from the standard AWS
variables (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`), which boto3 reads itself.
Each blob is the object `PREFIX/<sha256 hex>`: the same digest LocalBlobStore files it under.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from pictor.core import sha256_hex
from pictor.storage.blobs import checked_digest
from pictor.storage.errors import BlobNotFound

# SigV4, the signature every S3-compatible server accepts, refuses presigned links that live longer than a week.
MAX_PRESIGNED_S = 7 * 24 * 3600
# A put of bytes already there: the object exists (412), or another put of it is in flight (409). Both leave the
# bytes stored, and they are the same bytes, since the key is their digest.
ALREADY_STORED = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
MISSING = {"NoSuchKey", "NotFound", "404"}


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://BUCKET/PREFIX` -> (bucket, prefix without surrounding slashes; empty for the bucket's root)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"not an s3://BUCKET/PREFIX url: {url!r}")
    return parts.netloc, parts.path.strip("/")


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class S3BlobStore:
    """Blobs as objects `prefix/<digest>` in one bucket; written only if absent (a conditional put, If-None-Match)."""

    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        # A session of its own reads the AWS variables now (boto3's shared default session keeps the first
        # credentials it found); its one client serves every thread (clients are thread-safe, sessions are not).
        # SigV4 for presigned links too: boto3's default for them on some endpoints is the retired SigV2.
        self.client = client or boto3.session.Session().client("s3", config=Config(signature_version="s3v4"))

    @classmethod
    def from_url(cls, url: str) -> S3BlobStore:
        """The store `s3://BUCKET/PREFIX` names, on the endpoint and credentials of the AWS environment."""
        return cls(*parse_s3_url(url))

    def key_for(self, digest: str) -> str:
        """The object key of the blob with this digest (whether or not it exists yet)."""
        digest = checked_digest(digest)
        return f"{self.prefix}/{digest}" if self.prefix else digest

    def put(self, data: bytes) -> str:
        """Store the bytes once: a conditional put never rewrites an object, also when two processes race."""
        digest = sha256_hex(data)
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.key_for(digest), Body=data, IfNoneMatch="*")
        except ClientError as error:
            if _error_code(error) not in ALREADY_STORED:
                raise
        return digest

    def get(self, digest: str) -> bytes:
        """Read the bytes back; raises BlobNotFound for an unknown digest."""
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.key_for(digest))
        except ClientError as error:
            if _error_code(error) in MISSING:
                raise BlobNotFound(digest) from None
            raise
        with answer["Body"] as body:
            return body.read()

    def exists(self, digest: str) -> bool:
        """Whether the blob is stored."""
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key_for(digest))
        except ClientError as error:
            if _error_code(error) in MISSING:
                return False
            raise
        return True

    def delete(self, digest: str) -> bool:
        """Remove a blob; True if it was there. S3 deletes answer alike either way, so a HEAD asks first."""
        existed = self.exists(digest)
        self.client.delete_object(Bucket=self.bucket, Key=self.key_for(digest))
        return existed

    def presigned_url(self, digest: str, lifetime_s: int, content_type: str | None = None) -> str:
        """A GET link to the blob that the bucket serves itself, valid for `lifetime_s` (at most a week)."""
        params = {"Bucket": self.bucket, "Key": self.key_for(digest)}
        if content_type:
            params["ResponseContentType"] = content_type  # objects are stored untyped; a browser needs to know
        return self.client.generate_presigned_url("get_object", Params=params,
                                                  ExpiresIn=max(1, min(lifetime_s, MAX_PRESIGNED_S)))
