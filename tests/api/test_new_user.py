"""A new user's path, scripted: a fresh virtual environment, the README's install command, `pictor serve`,
one generation with curl, and the PNG opens.

Slow (about a minute here: it installs torch and every dependency into a new environment) and it needs
the package index that pip is configured with, exactly as a new user does.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from .helpers import start_server

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"


def _run(command: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _checkout(target: Path) -> Path:
    """What a clone holds: the package source, pyproject.toml and the README (no build output, no venv)."""
    target.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, target / name)
    shutil.copytree(REPO / "src", target / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
    return target


@pytest.fixture
def venv(tmp_path):
    """A fresh virtual environment, removed afterwards (about a GB of torch: not kept among pytest's folders)."""
    path = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(path)], tmp_path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_fresh_install_serve_and_curl(tmp_path, venv):
    # The README's first command, step by step: CPU torch first, then the package, then `pictor serve`
    # (here on a free port and a temporary data folder instead of 8000 and the user's data folder).
    first_command = README.read_text().split("```sh\n", 1)[1].split("```", 1)[0]
    steps = [step.strip() for step in first_command.split("&&")]
    assert "pip install torch==2.13.0" in steps and "pip install -e ." in steps, first_command
    assert steps.index("pip install torch==2.13.0") < steps.index("pip install -e .")
    assert steps[-1].startswith("pictor serve"), first_command
    checkout = _checkout(tmp_path / "pictor")
    pip = str(venv / "bin" / "pip")
    _run([pip, "install", "-q", "torch==2.13.0"], checkout)
    _run([pip, "install", "-q", "-e", "."], checkout)
    pictor = venv / "bin" / "pictor"
    assert pictor.exists()

    server = start_server(tmp_path, command=[str(pictor)])
    try:
        assert server.demo_key.startswith("pk-"), server.log()
        body = json.dumps({"prompt": "a red star in the top left and a blue circle on a white background",
                           "size": "256x256", "quality": "low"})
        done = _run(["curl", "-sS", "--fail-with-body", "-X", "POST", f"{server.api}/images/generations",
                     "-H", f"Authorization: Bearer {server.demo_key}", "-H", "Content-Type: application/json",
                     "-d", body], tmp_path, timeout=300)
        answer = json.loads(done.stdout)
        png = base64.b64decode(answer["data"][0]["b64_json"])
        (tmp_path / "out.png").write_bytes(png)
        image = Image.open(tmp_path / "out.png")
        image.load()
        assert image.format == "PNG" and image.size == (256, 256)
        assert answer["size"] == "256x256" and answer["output_format"] == "png"
        # The new environment runs the package installed from the fresh checkout, not this repository's.
        where = _run([str(venv / "bin" / "python"), "-c", "import pictor; print(pictor.__file__)"], tmp_path)
        assert where.stdout.strip().startswith(str(checkout))
    finally:
        server.stop()
