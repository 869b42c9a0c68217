from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from scratch_databases import ScratchDatabase

from pictor.storage import Database, DataDir, LocalBlobStore


@pytest.fixture
def data_dir(tmp_path: Path) -> DataDir:
    return DataDir.resolve(tmp_path / "data").create()


@pytest.fixture
def db(scratch_db: ScratchDatabase) -> Iterator[Database]:
    """The database under test, once on SQLite and once on PostgreSQL."""
    database = Database(scratch_db.url)
    yield database
    database.close()


@pytest.fixture
def blobs(data_dir: DataDir) -> LocalBlobStore:
    return LocalBlobStore(data_dir.blobs)


@pytest.fixture
def count_rows(scratch_db: ScratchDatabase) -> Callable[[str], int]:
    """Count rows through a connection of the test's own, independently of the code under test."""
    return scratch_db.count
