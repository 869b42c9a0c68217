"""Schema migrations (Alembic): every database, SQLite or PostgreSQL, is brought to the current schema on open.

A database made before migrations existed (by `create_all`) is recognised by its tables and stamped at the
baseline revision first; an empty one is created from the models and stamped at the head.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, inspect

from pictor.storage.tables import Base

BASELINE = "0001"


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    config.attributes["connection"] = connection
    return config


def migrate(connection: Connection) -> None:
    """Bring the database behind `connection` to the current schema (inside the caller's transaction)."""
    config = _config(connection)
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" not in tables:
        if "tenants" not in tables:  # a new database: the models as they are now
            Base.metadata.create_all(connection)
            command.stamp(config, "head")
            return
        command.stamp(config, BASELINE)  # made by create_all before there were migrations
    command.upgrade(config, "head")
