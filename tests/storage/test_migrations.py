"""The migrations run on SQLite and on PostgreSQL: a database of the baseline schema is brought to the models' one."""

import subprocess
import sys
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from scratch_databases import ScratchDatabase
from sqlalchemy import create_engine, inspect

from pictor.storage import Database, migrations
from pictor.storage.migrations import BASELINE, _config
from pictor.storage.tables import Base

HEAD = ScriptDirectory(str(Path(migrations.__file__).parent)).get_current_head()


def test_a_baseline_database_is_migrated_to_the_models_schema(scratch_db: ScratchDatabase) -> None:
    Database(scratch_db.url).close()  # today's schema, stamped at the head
    engine = create_engine(scratch_db.url)
    with engine.begin() as connection:  # every downgrade, back to the schema create_all made before migrations
        command.downgrade(_config(connection), BASELINE)
        assert {"tenant_usage", "rate_windows"}.isdisjoint(inspect(connection).get_table_names())
        assert "role" not in {column["name"] for column in inspect(connection).get_columns("api_keys")}

    Database(scratch_db.url).close()  # opening runs every upgrade

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": True})
        differences = compare_metadata(context, Base.metadata)
        assert differences == [], "\n".join(map(str, differences))
        assert context.get_current_revision() == HEAD
    engine.dispose()


def test_processes_starting_together_on_a_new_database_migrate_it_once(scratch_db: ScratchDatabase) -> None:
    """Several API processes started at once on one new database: each opens it, none fails creating the tables.
    (Processes, not threads: Alembic keeps the migration being run in module globals.)"""
    opening = f"from pictor.storage import Database; Database({scratch_db.url!r}).close()"
    processes = [subprocess.Popen([sys.executable, "-c", opening], stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
    failures = [error for error in (process.communicate(timeout=120)[1] for process in processes) if error]
    assert [process.returncode for process in processes] == [0] * 4, failures[0]
    assert scratch_db.sql("SELECT version_num FROM alembic_version") == [(HEAD,)]
