"""One contract for every blob store, run on the local folder and on S3 (a real SeaweedFS): content-addressed
bytes, written once, the same NotFound for a missing blob, deletion, and links where the store has its own."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError
from seaweedfs_server import SeaweedServer

from pictor.core import sha256_hex
from pictor.storage import BlobNotFound, BlobStore, LocalBlobStore, NotFound, open_blob_store
from pictor.storage.s3_blobs import S3BlobStore, parse_s3_url


def test_put_returns_the_sha256_and_get_returns_the_bytes(store: BlobStore) -> None:
    data = b"\x89PNG fake image bytes"
    digest = store.put(data)

    assert digest == sha256_hex(data)
    assert store.exists(digest)
    assert store.get(digest) == data


def test_empty_bytes_are_a_blob_too(store: BlobStore) -> None:
    digest = store.put(b"")
    assert store.get(digest) == b"" and store.exists(digest)


def test_same_bytes_are_written_once(store: BlobStore, written_at: Callable[[str], object]) -> None:
    digest = store.put(b"pixels")
    first_write = written_at(digest)
    time.sleep(1.1)  # S3's LastModified counts whole seconds

    assert store.put(b"pixels") == digest
    assert written_at(digest) == first_write  # not rewritten
    assert store.put(b"other pixels") != digest


def test_concurrent_puts_of_the_same_bytes_agree(store: BlobStore) -> None:
    data = bytes(range(256)) * 512
    digests: list[str] = []
    threads = [threading.Thread(target=lambda: digests.append(store.put(data))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert digests == [sha256_hex(data)] * 8
    assert store.get(digests[0]) == data


def test_unknown_digest_is_not_found(store: BlobStore) -> None:
    missing = sha256_hex(b"never stored")
    assert not store.exists(missing)
    with pytest.raises(BlobNotFound) as raised:
        store.get(missing)
    assert isinstance(raised.value, NotFound)  # what the API maps to a 404


def test_delete_removes_the_bytes_for_good(store: BlobStore) -> None:
    digest = store.put(b"to be erased")
    kept = store.put(b"kept")

    assert store.delete(digest) is True
    assert not store.exists(digest)
    with pytest.raises(BlobNotFound):
        store.get(digest)
    assert store.delete(digest) is False  # already gone
    assert store.get(kept) == b"kept"


@pytest.mark.parametrize("bad", ["../../etc/passwd", "ABC", "0" * 63, "G" * 64, ("a" * 64).upper()])
def test_anything_but_a_hex_digest_is_refused(store: BlobStore, bad: str) -> None:
    for method in (store.get, store.exists, store.delete):
        with pytest.raises(ValueError):
            method(bad)
    with pytest.raises(ValueError):
        store.presigned_url(bad, 60)


def test_bytes_survive_a_new_store_on_the_same_place(store_url: str, tmp_path: Path) -> None:
    digest = open_blob_store(store_url, tmp_path).put(b"persisted")
    assert open_blob_store(store_url, tmp_path).get(digest) == b"persisted"


def test_each_store_satisfies_the_protocol(store: BlobStore) -> None:
    assert isinstance(store, BlobStore)


# ---- what differs between the stores --------------------------------------------------------------------------


def test_a_local_folder_has_no_links_of_its_own(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    assert store.presigned_url(store.put(b"served by Pictor"), 60) is None


def test_s3_objects_are_named_by_their_digest_under_the_prefix(s3_url: str, seaweedfs: SeaweedServer,
                                                               tmp_path: Path) -> None:
    store = open_blob_store(s3_url, tmp_path)
    digests = {store.put(b"one"), store.put(b"two"), store.put(b"one")}
    prefix = parse_s3_url(s3_url)[1]

    assert seaweedfs.keys(prefix) == {f"{prefix}/{digest}" for digest in digests}
    objects = seaweedfs.client()
    for digest in digests:
        body = objects.get_object(Bucket=seaweedfs.bucket, Key=f"{prefix}/{digest}")["Body"].read()
        assert sha256_hex(body) == digest
    assert not any((tmp_path).iterdir())  # nothing written to the local default


def test_s3_presigned_link_serves_the_bytes_until_it_expires(s3_url: str, tmp_path: Path) -> None:
    store = open_blob_store(s3_url, tmp_path)
    digest = store.put(b"\x89PNG served by the bucket")

    answer = httpx.get(store.presigned_url(digest, 60, "image/png"), timeout=10)
    assert answer.status_code == 200
    assert answer.content == b"\x89PNG served by the bucket"
    assert answer.headers["content-type"] == "image/png"

    short_lived = store.presigned_url(digest, 1)
    time.sleep(2.1)
    assert httpx.get(short_lived, timeout=10).status_code == 403
    assert httpx.get(short_lived.split("?")[0], timeout=10).status_code == 403  # the object itself is private


def test_s3_refuses_a_wrong_secret(s3_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    digest = open_blob_store(s3_url, tmp_path).put(b"private")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(ClientError, match="SignatureDoesNotMatch|AccessDenied"):
        open_blob_store(s3_url, tmp_path).get(digest)


# ---- choosing the store ----------------------------------------------------------------------------------------


def test_the_setting_chooses_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "us-east-1")  # building a client needs a region, not a server
    default = open_blob_store(None, tmp_path / "default")
    assert isinstance(default, LocalBlobStore) and default.root == tmp_path / "default"
    folder = open_blob_store(str(tmp_path / "elsewhere"), tmp_path / "default")
    assert isinstance(folder, LocalBlobStore) and folder.root == tmp_path / "elsewhere"
    bucket = open_blob_store("s3://pictor-images/prod/blobs/", tmp_path / "default")
    assert isinstance(bucket, S3BlobStore) and (bucket.bucket, bucket.prefix) == ("pictor-images", "prod/blobs")
    assert bucket.key_for("a" * 64) == "prod/blobs/" + "a" * 64
    assert open_blob_store("s3://pictor-images", tmp_path).key_for("b" * 64) == "b" * 64
    with pytest.raises(ValueError):
        open_blob_store("https://example.invalid/blobs", tmp_path)
    with pytest.raises(ValueError):
        parse_s3_url("s3:///no-bucket")
