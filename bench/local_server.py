"""What the HTTP benchmarks share: a keyless `pictor serve` on a free loopback port with a throwaway data
folder, the model time a response reports, and percentiles. Imported by the scripts beside it
(`python bench/NAME.py` puts this folder on the path)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

READY_TIMEOUT_S = 120


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def server_timing(response: httpx.Response) -> dict[str, dict[str, str]]:
    """Server-Timing as {name: {param: value}}: "model;dur=12.5, cache;desc=hit;dur=0.4" ->
    {"model": {"dur": "12.5"}, "cache": {"desc": "hit", "dur": "0.4"}}."""
    entries = {}
    for part in response.headers["server-timing"].split(","):
        name, *params = [piece.strip() for piece in part.split(";")]
        entries[name] = dict(param.split("=", 1) for param in params if "=" in param)
    return entries


def model_ms(response: httpx.Response) -> float:
    """The `model` entry's duration."""
    return float(server_timing(response)["model"]["dur"])


def wait_ready(url: str, process: subprocess.Popen, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Returns once the server at `url` answers /readyz with 200; raises if its process ends or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(f"pictor serve at {url} did not become ready")
        time.sleep(0.2)


@contextmanager
def local_server(extra_env: dict[str, str] | None = None, processes: list | None = None) -> Iterator[str]:
    """`pictor serve --keyless` until the block ends; yields its base URL once /readyz answers 200. The server's
    process is appended to `processes`, when given (for its memory figures)."""
    with tempfile.TemporaryDirectory() as data, socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        env = {**os.environ, "PICTOR_LOG_JSON": "false", **(extra_env or {})}
        process = subprocess.Popen([sys.executable, "-m", "pictor.cli", "serve", "--keyless", "--port", str(port),
                                    "--data-dir", data], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        if processes is not None:
            processes.append(process)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, process)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)
