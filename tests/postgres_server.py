"""A real PostgreSQL for the tests: a throwaway server on loopback, or the one PICTOR_TEST_POSTGRES_URL names.

The throwaway server is Debian's `postgresql` package (`initdb`, `pg_ctl`, `postgres`), found on PATH or under
the Debian layout /usr/lib/postgresql/<version>/bin. It listens on 127.0.0.1 only, on a free port, with its unix
socket in its own temporary folder, and starts in about 3 s. PostgreSQL refuses to run as root, so as root its
commands run as the `postgres` user, in a folder that user owns. Each test gets a database of its own.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

URL_VARIABLE = "PICTOR_TEST_POSTGRES_URL"
MISSING = ("PostgreSQL's server programs (initdb, pg_ctl, postgres) were not found on PATH nor under "
           "/usr/lib/postgresql/*/bin: install Debian's `postgresql` package (apt-get install postgresql), or set "
           f"{URL_VARIABLE}=postgresql+psycopg://USER:PASSWORD@HOST:PORT/postgres to use a running server.")
# Durability is worth nothing to a throwaway server: without fsync it starts and writes several times faster.
SERVER_OPTIONS = ("-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 "
                  "-c listen_addresses=127.0.0.1")


class PostgresMissing(RuntimeError):
    """Neither the server programs nor PICTOR_TEST_POSTGRES_URL are there."""


def server_programs() -> Path | None:
    """The folder that holds initdb and pg_ctl: PATH first, then the newest Debian version folder."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda path: int(path.split("/")[-3]))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """An administrative URL on a server, and databases made and dropped on it."""

    def __init__(self, admin_url: str, stop: Callable[[], None] | None = None) -> None:
        self.admin_url = make_url(admin_url).set(drivername="postgresql+psycopg")
        self._stop = stop

    @classmethod
    def from_environment(cls) -> PostgresServer:
        """The server PICTOR_TEST_POSTGRES_URL names, else a throwaway one started here."""
        if os.environ.get(URL_VARIABLE):
            return cls(os.environ[URL_VARIABLE])
        return cls.start()

    @classmethod
    def start(cls) -> PostgresServer:
        programs = server_programs()
        if programs is None:
            raise PostgresMissing(MISSING)
        folder = Path(tempfile.mkdtemp(prefix="pictor-pg-"))  # under /tmp: root's pytest folders are 0700
        as_owner: list[str] = []
        if os.geteuid() == 0:  # the server refuses root: run it as the package's `postgres` user
            shutil.chown(folder, "postgres")
            as_owner = ["runuser", "-u", "postgres", "--"]
        port = _free_port()
        data, log = folder / "data", folder / "server.log"

        def run(*command: str) -> None:
            done = subprocess.run([*as_owner, *command], capture_output=True, text=True, timeout=120, check=False)
            if done.returncode != 0:
                log_text = log.read_text(errors="replace") if log.exists() else ""
                raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}{log_text}")

        run(str(programs / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-locale", "-N")
        run(str(programs / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
            "-o", f"{SERVER_OPTIONS} -p {port} -k {folder}", "start")

        def stop() -> None:
            try:
                run(str(programs / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
            finally:
                shutil.rmtree(folder, ignore_errors=True)

        return cls(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", stop)

    def stop(self) -> None:
        """Stop the server if this process started it (a server named by the environment is left running)."""
        if self._stop is not None:
            self._stop()
            self._stop = None

    def connect(self, url: str | None = None) -> psycopg.Connection:
        """A plain psycopg connection (autocommit) to one of the server's databases, beside the code under test."""
        target = make_url(url) if url else self.admin_url
        return psycopg.connect(target.set(drivername="postgresql").render_as_string(hide_password=False),
                               autocommit=True)

    def create_database(self) -> str:
        """A new empty database with a unique name; returns its SQLAlchemy URL."""
        name = f"pictor_test_{uuid.uuid4().hex[:16]}"
        with closing(self.connect()) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.admin_url.set(database=name).render_as_string(hide_password=False)

    def drop_database(self, url: str) -> None:
        """Drop a database made by `create_database`, closing whatever connections are still open on it."""
        name = make_url(url).database
        with closing(self.connect()) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
