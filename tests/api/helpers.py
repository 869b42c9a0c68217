"""Helpers for the API tests: a live `pictor serve` subprocess, the CLI, and test pictures."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from openai import AsyncOpenAI, OpenAI
from PIL import Image

from pictor.storage import Database, DataDir

STARTUP_TIMEOUT_S = 180
KEY_LINE = re.compile(r"demo key \(shown once\): (pk-\S+)")


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pictor_command() -> list[str]:
    """The installed `pictor` console script next to this interpreter (what a user runs)."""
    script = Path(sys.executable).parent / "pictor"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pictor.cli"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*pictor_command(), *args], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, **(env or {})})


@dataclass
class Server:
    """A running `pictor serve` subprocess."""

    url: str
    data_dir: Path
    process: subprocess.Popen
    log_path: Path
    demo_key: str
    database_url: str | None = None  # PICTOR_DATABASE_URL; None: SQLite in the data folder
    _keys: dict[str, str] = field(default_factory=dict)

    @property
    def api(self) -> str:
        return f"{self.url}/v1"

    def client(self, key: str | None = None, **options) -> OpenAI:
        return OpenAI(base_url=self.api, api_key=key or self.demo_key, max_retries=0, timeout=120, **options)

    def async_client(self, key: str | None = None) -> AsyncOpenAI:
        return AsyncOpenAI(base_url=self.api, api_key=key or self.demo_key, max_retries=0, timeout=120)

    def new_key(self, tenant: str) -> str:
        """A fresh key for a tenant (created if missing), through the storage API on the server's database."""
        database = Database(self.database_url or DataDir.resolve(self.data_dir).database_url)
        try:
            return database.create_key(database.ensure_tenant(tenant).id, label="test").plaintext
        finally:
            database.close()

    def key_for(self, tenant: str) -> str:
        """One key per tenant name, made once per server."""
        if tenant not in self._keys:
            self._keys[tenant] = self.new_key(tenant)
        return self._keys[tenant]

    def image_rows(self) -> int:
        with closing(sqlite3.connect(self.data_dir / "pictor.db")) as connection:
            return connection.execute("SELECT COUNT(*) FROM images").fetchone()[0]

    def blob_files(self) -> int:
        return sum(1 for path in (self.data_dir / "blobs").rglob("*") if path.is_file())

    def state(self) -> tuple[int, int]:
        """(image records, blob files): what a refused request must not change."""
        return self.image_rows(), self.blob_files()

    def audit_entry(self, image_id: str) -> dict:
        """The image's audit entry, read from the database."""
        with closing(sqlite3.connect(self.data_dir / "pictor.db")) as connection:
            for (text,) in connection.execute("SELECT entry FROM audit_entries WHERE entry LIKE ?",
                                              (f'%"artifact_id":"{image_id}"%',)):
                return json.loads(text)
        raise AssertionError(f"no audit entry for {image_id}")

    def model_output_hash(self, image_id: str) -> str:
        """The audit log's hash of the model's pixels for an image, before its badge and watermark (which name the
        image, so two images from one seed differ in them)."""
        return self.audit_entry(image_id)["pixels_hash"]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_server(root: Path, extra_env: dict[str, str] | None = None, extra_args: tuple[str, ...] = (),
                 command: list[str] | None = None, startup_timeout_s: float = STARTUP_TIMEOUT_S,
                 data_dir: Path | None = None, log_name: str = "serve.log") -> Server:
    """`pictor serve --data-dir root/data --port P`; returns once /readyz answers 200 (within `startup_timeout_s`:
    the GPU benchmark's models load and compile for longer than the tests' tiny ones). Processes that share a data
    folder (and a database) pass it as `data_dir`, each with a log of its own."""
    port = free_port()
    data_dir = data_dir or root / "data"
    log_path = root / log_name
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("PICTOR_")}
    env = {**inherited, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    with open(log_path, "wb") as log:
        process = subprocess.Popen([*(command or pictor_command()), "serve", "--data-dir", str(data_dir),
                                    "--port", str(port), *extra_args],
                                   stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + startup_timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"pictor serve exited with {process.returncode}:\n{log_path.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"pictor serve did not become ready:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    match = KEY_LINE.search(log_path.read_text())
    server = Server(url=url, data_dir=data_dir, process=process, log_path=log_path,
                    demo_key=match[1] if match else "", database_url=env.get("PICTOR_DATABASE_URL"))
    return server


ENGINE_ADDRESS = re.compile(r"PICTOR_RAY_ADDRESS=(\S+)")


def start_engine(root: Path, timeout_s: float = 240) -> tuple[subprocess.Popen, str, Path]:
    """`pictor engine` (Ray Serve replicas on a Ray cluster of its own, on loopback) in its own process group;
    returns the process, the cluster's address and the log's path. Run it in a network namespace of its own."""
    log_path = root / "engine.log"
    env = {name: value for name, value in os.environ.items() if not name.startswith("PICTOR_")}
    with open(log_path, "wb") as log:
        process = subprocess.Popen([*pictor_command(), "engine", "--data-dir", str(root / "engine")], stdout=log,
                                   stderr=subprocess.STDOUT, env={**env, "RAY_DISABLE_USAGE_STATS": "1"},
                                   start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while not (found := ENGINE_ADDRESS.search(log_path.read_text(errors="replace"))):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"pictor engine did not start:\n{log_path.read_text(errors='replace')}")
        time.sleep(0.5)
    return process, found[1], log_path


# ---- images -----------------------------------------------------------------------------------


def pixels(b64: str) -> tuple[str, tuple[int, int], bytes]:
    """What an image looks like, without its metadata: every output carries its own signed C2PA manifest
    (artifact id, audit index), so equal images are compared by their pixels, not their file bytes."""
    image = decode(b64)
    return image.mode, image.size, image.tobytes()


def decode(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def scene(width: int = 64, height: int = 64, seed: int = 0) -> Image.Image:
    """A busy RGB test picture (random noise over blocks), so that any change to a pixel is visible."""
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    array[: height // 2, : width // 2] = (200, 30, 30)
    return Image.fromarray(array, "RGB")


def scene_png(width: int = 64, height: int = 64, seed: int = 0) -> bytes:
    return png_bytes(scene(width, height, seed))


def alpha_mask(width: int, height: int, box: tuple[int, int, int, int]) -> Image.Image:
    """An OpenAI-style mask: opaque (alpha 255) everywhere except the transparent `box`, the area to edit."""
    mask = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), box)
    return mask
