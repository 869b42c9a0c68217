"""The databases that tests run on: a new SQLite file or a new PostgreSQL database, each owned by one test.

Beside its SQLAlchemy URL a scratch database has a plain driver connection (sqlite3 or psycopg) of its own, so
that a test counts rows, or tampers with them as someone with database access would, without going through the
code under test.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass

import psycopg
from sqlalchemy.engine import make_url

KINDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class ScratchDatabase:
    kind: str  # one of KINDS
    url: str  # for pictor (Database, PICTOR_DATABASE_URL)

    def sql(self, statement: str, *params: object) -> list[tuple]:
        """Run one statement on a connection of its own and commit; `?` placeholders on both databases."""
        if self.kind == "sqlite":
            with closing(sqlite3.connect(make_url(self.url).database)) as connection, connection:
                return connection.execute(statement, params).fetchall()
        conninfo = make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)
        with closing(psycopg.connect(conninfo, autocommit=True)) as connection:
            cursor = connection.execute(statement.replace("?", "%s"), params)
            return [tuple(row) for row in cursor.fetchall()] if cursor.description else []

    def count(self, table: str) -> int:
        return self.sql(f"SELECT COUNT(*) FROM {table}")[0][0]
