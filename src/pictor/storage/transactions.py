"""The engine of one database URL and its unit of work, which every record type's queries share.

Each public query method runs in one `_transaction()`: committed when it returns, rolled back entirely if it raises.
Rows never leave a query method: callers get frozen dataclasses, so no lazy load can run after the session is
closed and no caller can change a row by accident.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

from pictor.storage.locks import SCHEMA_MIGRATIONS, hold_until_commit
from pictor.storage.migrations import migrate


def _enable_sqlite_pragmas(engine: Engine) -> None:
    """Foreign keys are off by default in SQLite; WAL lets readers run while a request writes."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()


def _lock_schema(connection: Connection) -> None:
    """Take the database's schema lock before reading the schema, so that processes starting together on a new
    database migrate it once: the others wait, then find it done. SQLite's write lock is taken by BEGIN IMMEDIATE
    (its driver would begin only at the first write, after the schema was read); PostgreSQL takes an advisory lock."""
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        hold_until_commit(connection, SCHEMA_MIGRATIONS)


class Transactions:
    """One SQLAlchemy engine (any URL; SQLite is the default), migrated to the newest schema when opened."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        sqlite = make_url(url).get_backend_name() == "sqlite"
        # A database server restarts or fails over and cuts the pool's connections: test each before use (a file
        # database has no connection to lose).
        self.engine = create_engine(url, echo=echo, pool_pre_ping=not sqlite)
        if sqlite:
            _enable_sqlite_pragmas(self.engine)
        with self.engine.connect() as connection:
            _lock_schema(connection)
            migrate(connection)
            connection.commit()
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        """Release pooled connections (and, for SQLite, fold the WAL back into the main file)."""
        self.engine.dispose()

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        """One unit of work: committed when the block ends, rolled back entirely if it raises."""
        with self._sessions.begin() as session:
            yield session
