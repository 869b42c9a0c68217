"""The cost of the scale-out machinery: 1 and 2 API processes, with the models in process or on 1 and 2 Ray Serve
replicas, on this machine.

For each layout: the latency of one image at a time (p50, 20 requests, after 3 warm-ups) and the throughput with
16 concurrent clients (images/s and p99 over 48 requests), all through the HTTP API, spread round-robin over the API
processes. The Ray hop's added latency per image is the layout "1 API, 1 replica" less "1 API, in process". API
processes share one data folder (one SQLite database, one blob folder, one signing key). On a machine with two
cores expect parity at best: what is measured is what the machinery costs, not what more machines would give.

Run inside a network namespace of its own (some Ray processes listen on every interface):
    unshare -n python tests/cluster/in_namespace.py python bench/scale_out.py --out bench/results/scale-out-cpu-2core
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
from local_server import percentile, wait_ready

from pictor.embedded.evaluate import machine_description

REQUEST = {"prompt": "a red circle and a blue square on a white background", "size": "256x256", "quality": "medium"}
ADDRESS = re.compile(r"PICTOR_RAY_ADDRESS=(\S+)")
READY_TIMEOUT_S = 240


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def engine(replicas: int, folder: Path) -> Iterator[str]:
    """`pictor engine` with `replicas` replicas; yields the Ray address."""
    log_path = folder / f"engine-{replicas}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "pictor.cli", "engine", "--replicas", str(replicas),
                                    "--data-dir", str(folder / "engine")], stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "RAY_DISABLE_USAGE_STATS": "1"}, start_new_session=True)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not (found := ADDRESS.search(log_path.read_text(errors="replace"))):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pictor engine did not start:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.5)
        yield found[1]
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def api_processes(count: int, data_dir: Path, env: dict[str, str]) -> Iterator[list[str]]:
    with ExitStack() as stack:
        urls = []
        for _ in range(count):
            port = free_port()
            process = subprocess.Popen([sys.executable, "-m", "pictor.cli", "serve", "--keyless", "--port", str(port),
                                        "--data-dir", str(data_dir)], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, env={**os.environ, "PICTOR_LOG_JSON": "false",
                                                                       **env})
            stack.callback(process.wait, 30)
            stack.callback(process.terminate)
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, process, READY_TIMEOUT_S)
            urls.append(url)
        yield urls


def one_at_a_time(urls: list[str], count: int = 20) -> list[float]:
    with httpx.Client(timeout=300) as client:
        for index in range(3):
            client.post(f"{urls[index % len(urls)]}/v1/images/generations", json={**REQUEST, "seed": index})
        seconds = []
        for index in range(count):
            started = time.perf_counter()
            response = client.post(f"{urls[index % len(urls)]}/v1/images/generations",
                                   json={**REQUEST, "seed": 100 + index})
            response.raise_for_status()
            seconds.append(time.perf_counter() - started)
    return seconds


async def concurrently(urls: list[str], clients: int = 16, total: int = 48) -> tuple[float, list[float]]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(total):
        queue.put_nowait(index)
    latencies: list[float] = []

    async def client_loop() -> None:
        async with httpx.AsyncClient(timeout=600) as client:
            while not queue.empty():
                index = queue.get_nowait()
                started = time.perf_counter()
                response = await client.post(f"{urls[index % len(urls)]}/v1/images/generations",
                                             json={**REQUEST, "seed": 1000 + index})
                response.raise_for_status()
                latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(clients)))
    return total / (time.perf_counter() - started), latencies


def measure(urls: list[str]) -> dict:
    single = one_at_a_time(urls)
    rate, latencies = asyncio.run(concurrently(urls))
    return {"p50_ms": round(statistics.median(single) * 1000, 1), "images_per_s": round(rate, 2),
            "p99_ms_16_clients": round(percentile(latencies, 99) * 1000, 1)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="bench/results/scale-out-cpu-2core")
    args = parser.parse_args()
    layouts = [("1 API, in process", 1, 0), ("2 API, in process", 2, 0), ("1 API, 1 replica", 1, 1),
               ("2 API, 1 replica", 2, 1), ("1 API, 2 replicas", 1, 2), ("2 API, 2 replicas", 2, 2)]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for name, apis, replicas in layouts:
            data_dir = folder / name.replace(" ", "-").replace(",", "")
            if replicas == 0:
                with api_processes(apis, data_dir, {}) as urls:
                    rows.append({"layout": name, **measure(urls)})
            else:
                with engine(replicas, folder) as address, \
                        api_processes(apis, data_dir, {"PICTOR_ENGINE": "ray", "PICTOR_RAY_ADDRESS": address}) as urls:
                    rows.append({"layout": name, **measure(urls)})
            print(rows[-1], flush=True)
    hop = rows[2]["p50_ms"] - rows[0]["p50_ms"]
    machine = machine_description()
    result = {"machine": machine, "request": REQUEST, "rows": rows, "ray_hop_ms_p50": round(hop, 1)}
    Path(f"{args.out}.json").write_text(json.dumps(result, indent=1))
    lines = [f"# Scale-out machinery on {machine}", "",
             f"Request: {json.dumps(REQUEST)}; one at a time (20, p50) and 16 concurrent clients (48 requests).", "",
             "| layout | p50 one at a time (ms) | images/s, 16 clients | p99, 16 clients (ms) |", "|---|---|---|---|"]
    lines += [f"| {r['layout']} | {r['p50_ms']} | {r['images_per_s']} | {r['p99_ms_16_clients']} |" for r in rows]
    lines += ["", f"The Ray hop adds {hop:.1f} ms per image at p50 (1 API with 1 replica against 1 API in process).",
              "", "Command: `unshare -n python tests/cluster/in_namespace.py python bench/scale_out.py`"]
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
