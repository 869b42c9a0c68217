"""The layout of Pictor's data folder: one place that knows where blobs and the database live."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "PICTOR_DATA_DIR"


def default_root(environ: Mapping[str, str]) -> Path:
    """`$XDG_DATA_HOME/pictor`, else `~/.local/share/pictor`: a per-user place that survives restarts."""
    base = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pictor"


@dataclass(frozen=True)
class DataDir:
    """Paths inside the data folder; `create()` makes the folders so that stores can open them."""

    root: Path

    @classmethod
    def resolve(cls, path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> DataDir:
        """An explicit path (`--data-dir`) wins, then `PICTOR_DATA_DIR`, then the per-user default."""
        env = os.environ if environ is None else environ
        if path is not None:
            root = Path(path)
        elif env.get(ENV_VAR):
            root = Path(env[ENV_VAR])
        else:
            root = default_root(env)
        return cls(root.expanduser().resolve())

    @property
    def blobs(self) -> Path:
        """The content-addressed blob folder."""
        return self.root / "blobs"

    @property
    def database_path(self) -> Path:
        """The SQLite file used when no database URL is configured."""
        return self.root / "pictor.db"

    @property
    def database_url(self) -> str:
        """SQLAlchemy URL of the default SQLite database."""
        return f"sqlite:///{self.database_path}"

    def create(self) -> DataDir:
        """Make the folders (private to the user: the database holds key hashes and tenant data)."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.blobs.mkdir(mode=0o700, exist_ok=True)
        # mkdir's mode passes through the umask and leaves an existing folder as it was: set it outright.
        # With the root at 0700 nothing under it is reachable by other users, whatever its own mode.
        self.root.chmod(0o700)
        self.blobs.chmod(0o700)
        # The database is made here, private, before SQLite would make it with the umask's mode (its journal
        # and WAL files take the database file's mode).
        os.close(os.open(self.database_path, os.O_WRONLY | os.O_CREAT, 0o600))
        self.database_path.chmod(0o600)
        return self
