import threading
from pathlib import Path

import pytest

from pictor.core import sha256_hex
from pictor.storage import BlobNotFound, BlobStore, LocalBlobStore


def stored_files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


def test_put_returns_the_sha256_and_get_returns_the_bytes(blobs: LocalBlobStore) -> None:
    data = b"\x89PNG fake image bytes"
    digest = blobs.put(data)

    assert digest == sha256_hex(data)
    assert blobs.exists(digest)
    assert blobs.get(digest) == data


def test_same_bytes_are_stored_once(blobs: LocalBlobStore) -> None:
    first = blobs.put(b"pixels")
    mtime = blobs.path_for(first).stat().st_mtime_ns

    assert blobs.put(b"pixels") == first
    assert blobs.path_for(first).stat().st_mtime_ns == mtime  # not rewritten
    assert blobs.put(b"other pixels") != first
    assert len(stored_files(blobs.root)) == 2


def test_files_are_sharded_by_digest_and_no_temporaries_remain(blobs: LocalBlobStore) -> None:
    digest = blobs.put(b"sharded")

    path = blobs.path_for(digest)
    assert path.relative_to(blobs.root).parts == (digest[:2], digest[2:4], digest)
    assert stored_files(blobs.root) == [path]


def test_concurrent_puts_of_the_same_bytes_agree(blobs: LocalBlobStore) -> None:
    data = bytes(range(256)) * 512
    digests: list[str] = []
    threads = [threading.Thread(target=lambda: digests.append(blobs.put(data))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert set(digests) == {sha256_hex(data)}
    assert blobs.get(digests[0]) == data
    assert len(stored_files(blobs.root)) == 1


def test_unknown_digest_is_not_found(blobs: LocalBlobStore) -> None:
    missing = sha256_hex(b"never stored")
    assert not blobs.exists(missing)
    with pytest.raises(BlobNotFound):
        blobs.get(missing)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "ABC", "0" * 63, "G" * 64, ("a" * 64).upper()])
def test_anything_but_a_hex_digest_is_refused(blobs: LocalBlobStore, bad: str) -> None:
    with pytest.raises(ValueError):
        blobs.get(bad)
    with pytest.raises(ValueError):
        blobs.exists(bad)


def test_bytes_survive_a_new_store_on_the_same_folder(tmp_path: Path) -> None:
    digest = LocalBlobStore(tmp_path / "b").put(b"persisted")
    assert LocalBlobStore(tmp_path / "b").get(digest) == b"persisted"


def test_local_store_satisfies_the_protocol(blobs: LocalBlobStore) -> None:
    assert isinstance(blobs, BlobStore)
