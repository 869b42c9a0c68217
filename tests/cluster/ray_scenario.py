"""One Ray Serve engine and two API processes on loopback: the scenario `test_ray_engine.py` runs inside a network
namespace of its own (`unshare -n`), because some Ray processes listen on every interface.

Usage: python tests/cluster/ray_scenario.py ROOT OUT.json. Writes what it saw as JSON; the test asserts on it.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import httpx
from PIL import Image

from pictor.embedded.render import render
from pictor.embedded.world import Background, Scene, SceneObject

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from api.helpers import pictor_command, pixels, start_server  # noqa: E402

ADDRESS = re.compile(r"PICTOR_RAY_ADDRESS=(\S+)")
SMALL = {"prompt": "a red circle on a white background", "size": "64x64", "quality": "low", "seed": 5}


def start_engine(root: Path) -> tuple[subprocess.Popen, str, Path]:
    log_path = root / "engine.log"
    env = {name: value for name, value in os.environ.items() if not name.startswith("PICTOR_")}
    with open(log_path, "wb") as log:
        process = subprocess.Popen([*pictor_command(), "engine", "--data-dir", str(root / "engine")], stdout=log,
                                   stderr=subprocess.STDOUT, env={**env, "RAY_DISABLE_USAGE_STATS": "1"},
                                   start_new_session=True)
    deadline = time.monotonic() + 240
    while not (found := ADDRESS.search(log_path.read_text(errors="replace"))):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"pictor engine did not start:\n{log_path.read_text(errors='replace')}")
        time.sleep(0.5)
    return process, found[1], log_path


def stream_events(url: str, key: str, body: dict, stop_after_partials: int | None = None) -> list[str]:
    """The SSE event types of a streamed generation; closes the connection after `stop_after_partials`."""
    seen: list[str] = []
    with httpx.stream("POST", f"{url}/v1/images/generations", json={**body, "stream": True}, timeout=120,
                      headers={"authorization": f"Bearer {key}"}) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                seen.append(json.loads(line[6:])["type"])
                if stop_after_partials is not None and seen.count("image_generation.partial_image") >= \
                        stop_after_partials:
                    break
    return seen


async def concurrent(servers: list, count: int) -> list[int]:
    async def one(index: int) -> int:
        server = servers[index % len(servers)]
        async with httpx.AsyncClient(base_url=server.url, timeout=180) as client:
            response = await client.post("/v1/images/generations", json={**SMALL, "seed": 100 + index},
                                         headers={"authorization": f"Bearer {server.demo_key}"})
            return response.status_code

    return list(await asyncio.gather(*(one(index) for index in range(count))))


def main(root: Path, out: Path) -> None:
    engine, address, engine_log = start_engine(root)
    seen: dict = {"address": address}
    servers = []
    try:
        env = {"PICTOR_ENGINE": "ray", "PICTOR_RAY_ADDRESS": address}
        for name in ("a", "b"):
            (root / name).mkdir()
            servers.append(start_server(root / name, extra_env=env))
        a, b = servers
        auth = {"authorization": f"Bearer {a.demo_key}"}
        seen["models"] = [model["id"] for model in httpx.get(f"{a.url}/v1/models", headers=auth).json()["data"]]
        made = [httpx.post(f"{server.url}/v1/images/generations", json=SMALL, timeout=120,
                           headers={"authorization": f"Bearer {server.demo_key}"}).json() for server in (a, a, b)]
        images = [pixels(item["data"][0]["b64_json"]) for item in made]
        seen["same_seed_same_pixels"] = images[0] == images[1] == images[2]
        seen["validation"] = made[0]["data"][0]["validation"]["status"]
        seen["concurrent"] = asyncio.run(concurrent(servers, 8))
        seen["stream"] = stream_events(a.url, a.demo_key, {**SMALL, "partial_images": 2, "seed": 9})
        cancelled_before = engine_log.read_text(errors="replace").count("CALL run CANCELLED")
        slow = {**SMALL, "size": "1024x1024", "quality": "high", "partial_images": 3, "n": 10, "seed": 11}
        seen["cancelled_stream"] = stream_events(a.url, a.demo_key, slow, stop_after_partials=1)
        deadline = time.monotonic() + 30
        while engine_log.read_text(errors="replace").count("CALL run CANCELLED") == cancelled_before:
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        seen["replica_calls_cancelled"] = engine_log.read_text(errors="replace").count("CALL run CANCELLED") - \
            cancelled_before
        scene = render(Scene((SceneObject("circle", "red", "large", (1, 1)),), Background(("white",))), 64).image
        buffer = io.BytesIO()
        Image.fromarray(scene).save(buffer, "PNG")
        edit = httpx.post(f"{b.url}/v1/images/edits", headers={"authorization": f"Bearer {b.demo_key}"}, timeout=120,
                          files={"image": ("in.png", buffer.getvalue(), "image/png")},
                          data={"prompt": "make the red circle blue", "quality": "low", "seed": "2"})
        seen["edit"] = edit.status_code
    except Exception:  # noqa: BLE001 - reported to the test, with the logs that explain it
        seen["error"] = traceback.format_exc()
        seen["logs"] = {path.name: path.read_text(errors="replace")[-3000:] for path in root.rglob("*.log")}
    finally:
        for server in servers:
            server.process.kill()
        os.killpg(engine.pid, signal.SIGKILL)  # a clean Ray shutdown takes long; nothing here needs it
        out.write_text(json.dumps(seen))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
