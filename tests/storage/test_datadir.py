from pathlib import Path

from pictor.storage import DataDir


def test_explicit_path_wins_over_the_environment(tmp_path: Path) -> None:
    env = {"PICTOR_DATA_DIR": str(tmp_path / "from-env")}
    assert DataDir.resolve(tmp_path / "explicit", environ=env).root == tmp_path / "explicit"


def test_environment_is_used_without_a_path(tmp_path: Path) -> None:
    env = {"PICTOR_DATA_DIR": str(tmp_path / "from-env")}
    assert DataDir.resolve(environ=env).root == tmp_path / "from-env"


def test_default_is_per_user(tmp_path: Path) -> None:
    assert DataDir.resolve(environ={"XDG_DATA_HOME": str(tmp_path)}).root == tmp_path / "pictor"


def test_create_lays_out_the_folder(tmp_path: Path) -> None:
    data = DataDir.resolve(tmp_path / "new" / "data").create()

    assert data.blobs == tmp_path / "new" / "data" / "blobs" and data.blobs.is_dir()
    assert data.database_path == data.root / "pictor.db"
    assert data.database_url == f"sqlite:///{data.root / 'pictor.db'}"
    assert data.create() == data  # idempotent
