"""PostgreSQL only: the pool's connections are checked before use, so a server restart or a failover (every open
connection cut) costs no request an error."""

from collections.abc import Iterator

import pytest
from postgres_server import PostgresServer
from sqlalchemy.engine import make_url

from pictor.storage import Database


@pytest.fixture
def database_url(postgres: PostgresServer) -> Iterator[str]:
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)


def test_connections_cut_by_the_server_are_replaced(postgres: PostgresServer, database_url: str) -> None:
    db = Database(database_url)
    try:
        tenant = db.create_tenant("acme")
        with postgres.connect() as admin:  # what a restart does to every open connection
            cut = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = %s AND pid <> pg_backend_pid()", (make_url(database_url).database,))
            assert cut.fetchall(), "the pool held no connection to cut"
        assert db.tenant_by_name("acme") == tenant
    finally:
        db.close()
