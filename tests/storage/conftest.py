import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest

from pictor.storage import Database, DataDir, LocalBlobStore


@pytest.fixture
def data_dir(tmp_path: Path) -> DataDir:
    return DataDir.resolve(tmp_path / "data").create()


@pytest.fixture
def db(data_dir: DataDir) -> Iterator[Database]:
    database = Database(data_dir.database_url)
    yield database
    database.close()


@pytest.fixture
def blobs(data_dir: DataDir) -> LocalBlobStore:
    return LocalBlobStore(data_dir.blobs)


@pytest.fixture
def count_rows(data_dir: DataDir) -> Callable[[str], int]:
    """Count rows straight from the SQLite file, independently of the code under test."""

    def count(table: str) -> int:
        with closing(sqlite3.connect(data_dir.database_path)) as connection:
            return connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    return count
