from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from postgres_server import PostgresMissing, PostgresServer
from scratch_databases import KINDS, ScratchDatabase
from seaweedfs_server import SeaweedMissing, SeaweedServer, start_seaweedfs

from pictor.embedded import WEIGHTS_DIR
from pictor.engine.loading import load_model_folder


@pytest.fixture(scope="session")
def embedded_pipe():
    """The shipped embedded model, loaded once through the model-folder loader."""
    torch.set_num_threads(2)
    return load_model_folder(WEIGHTS_DIR)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL for the session: PICTOR_TEST_POSTGRES_URL's, else one started on loopback here.

    Without either the tests that need it fail (they are not skipped: CI must run them) with what to install."""
    try:
        server = PostgresServer.from_environment()
    except PostgresMissing as missing:
        server, why = None, str(missing)
    if server is None:
        pytest.fail(why, pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """One SeaweedFS (S3) for the session; without its binary the tests fail (CI must run them) with what to install."""
    try:
        server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    except SeaweedMissing as missing:
        pytest.fail(str(missing), pytrace=False)
    yield server
    server.stop()


@pytest.fixture(params=KINDS)
def scratch_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ScratchDatabase]:
    """A new, empty database of each kind, SQLite and PostgreSQL: the test runs once on each."""
    if request.param == "sqlite":
        yield ScratchDatabase("sqlite", f"sqlite:///{tmp_path / 'scratch.db'}")
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    url = server.create_database()
    yield ScratchDatabase("postgresql", url)
    server.drop_database(url)
