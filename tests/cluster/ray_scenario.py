"""One Ray Serve engine and two API processes on loopback: the scenario `test_ray_engine.py` runs inside a network
namespace of its own (`unshare -n`), because some Ray processes listen on every interface.

Usage: python tests/cluster/ray_scenario.py ROOT OUT.json. Writes what it saw as JSON; the test asserts on it.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

import httpx
from PIL import Image

from pictor.embedded.render import render
from pictor.embedded.world import Background, Scene, SceneObject

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from api.helpers import pixels, start_engine, start_server  # noqa: E402

SMALL = {"prompt": "a red circle on a white background", "size": "64x64", "quality": "low", "seed": 5}


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


def cancel_replica_calls(address: str, engine_log: Path) -> int:
    """Six streamed calls made straight to the deployment (they queue on the replica's worker), all cancelled after
    the first step event: how many the replica reports cancelled."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray
    from ray import serve

    from pictor.engine.protocol import EngineRequest
    from pictor.engine.wire import request_to_wire

    before = engine_log.read_text(errors="replace").count("CALL run CANCELLED")
    ray.init(address=address, log_to_driver=False)
    handle = serve.get_app_handle("pictor-engine").options(stream=True)
    request = request_to_wire(EngineRequest("generate", "a red star", 1024, 1024, seed=1, steps=11))
    calls = [handle.run.remote("pictor-embedded", request, False) for _ in range(6)]
    next(iter(calls[0]))
    for call in calls:
        call.cancel()
    deadline = time.monotonic() + 30
    while (cancelled := engine_log.read_text(errors="replace").count("CALL run CANCELLED") - before) < 1:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    ray.shutdown()
    return cancelled


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
        slow = {**SMALL, "size": "1024x1024", "quality": "high", "partial_images": 3, "n": 10, "seed": 11}
        seen["cancelled_stream"] = stream_events(a.url, a.demo_key, slow, stop_after_partials=1)
        seen["replica_calls_cancelled"] = cancel_replica_calls(address, engine_log)
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
