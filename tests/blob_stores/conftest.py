"""The blob stores under one contract: the local folder, and S3 on a real SeaweedFS server on loopback."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from seaweedfs_server import SeaweedServer

from pictor.storage import BlobStore, LocalBlobStore, open_blob_store


@pytest.fixture
def s3_url(seaweedfs: SeaweedServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh prefix in the bucket, with the AWS variables that boto3 reads set to the server's endpoint and keys."""
    for name, value in seaweedfs.environment.items():
        monkeypatch.setenv(name, value)
    return f"s3://{seaweedfs.bucket}/test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["local", "s3"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """What PICTOR_BLOB_URL would say: a folder, or a prefix in the S3 bucket. Each contract test runs on both."""
    if request.param == "local":
        return str(tmp_path / "blobs")
    return request.getfixturevalue("s3_url")


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> BlobStore:
    """The store under test, built as the installation builds it (open_blob_store)."""
    return open_blob_store(store_url, tmp_path / "unused")


@pytest.fixture
def written_at(store: BlobStore, request: pytest.FixtureRequest) -> Callable[[str], object]:
    """When the store last wrote a blob, read beside the code under test: a file's mtime, an object's LastModified."""
    if isinstance(store, LocalBlobStore):
        return lambda digest: store.path_for(digest).stat().st_mtime_ns
    client = request.getfixturevalue("seaweedfs").client()
    return lambda digest: client.head_object(Bucket=store.bucket, Key=store.key_for(digest))["LastModified"]
