"""Batching across requests: throughput and latency at 1, 4, 16 and 64 concurrent clients, batching off vs on.

Starts `pictor serve` three times (keyless, a temporary data folder each) on the embedded model:
- off: `PICTOR_BATCH_INVARIANT=true` (the default: one pipeline call per image, a seed reproduces byte for byte);
- request: `PICTOR_BATCH_INVARIANT=false PICTOR_STEP_BATCHING=false PICTOR_MAX_BATCH=16` (the worker hands the
  requests queued within its short window to one pipeline call);
- step: `PICTOR_BATCH_INVARIANT=false PICTOR_MAX_BATCH=16` (step-level batching: a request joins the running
  forward passes at its own first step, between any two steps of the others).
Clients are asyncio tasks on one httpx.AsyncClient, each sending its requests back to back; a few warm-up
requests precede every measured level.

    taskset -c 1 python bench/batching.py [--sizes 64x64] [--quality low] [--output bench/results/batching-cpu-1core]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import httpx
from local_server import local_server, percentile

from pictor.embedded.evaluate import machine_description

PROMPTS = ["a red star in the top left and a blue circle on a white background",
           "a green triangle in the bottom right on a yellow background",
           "a small purple square in the center on a gradient background from white to blue",
           "a large orange heart in the top right on a black background"]
MODES = {"off": {"PICTOR_BATCH_INVARIANT": "true"},
         "request": {"PICTOR_BATCH_INVARIANT": "false", "PICTOR_STEP_BATCHING": "false", "PICTOR_MAX_BATCH": "16"},
         "step": {"PICTOR_BATCH_INVARIANT": "false", "PICTOR_MAX_BATCH": "16"}}


async def level(url: str, clients: int, per_client: int, size: str, quality: str) -> dict:
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        latencies: list[float] = []

        async def client(index: int) -> None:
            for k in range(per_client):
                body = {"prompt": PROMPTS[(index + k) % len(PROMPTS)], "size": size, "quality": quality}
                started = time.perf_counter()
                response = await http.post("/v1/images/generations", json=body)
                response.raise_for_status()
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(client(i) for i in range(min(clients, 4))))  # warm-up
        latencies.clear()
        started = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(clients)))
        wall = time.perf_counter() - started
    return {"clients": clients, "requests": len(latencies), "wall_s": round(wall, 3),
            "images_per_s": round(len(latencies) / wall, 2), "p50_ms": round(percentile(latencies, 50) * 1000, 1),
            "p99_ms": round(percentile(latencies, 99) * 1000, 1)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="64x64")
    parser.add_argument("--quality", default="low")
    parser.add_argument("--clients", default="1,4,16,64")
    parser.add_argument("--requests", type=int, default=64, help="at least this many measured requests per level")
    parser.add_argument("--output")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    rows = []
    for size in args.sizes.split(","):
        for mode, env in MODES.items():
            with local_server({"PICTOR_RESULT_CACHE_MB": "0", **env}) as url:
                for count in clients:
                    per_client = max(1, -(-args.requests // count))
                    row = {"size": size, "quality": args.quality, "batching": mode,
                           **asyncio.run(level(url, count, per_client, size, args.quality))}
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    for row in rows:
        alone = next(r for r in rows if r["size"] == row["size"] and r["batching"] == "off" and r["clients"] == 1)
        row["speedup_vs_one_at_a_time"] = round(row["images_per_s"] / alone["images_per_s"], 2)
    result = {"machine": machine_description(), "note": args.note, "quality": args.quality,
              "rows": rows}
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        lines = ["# Batching across requests", "", f"Machine: {result['machine']}", ""]
        if args.note:
            lines += [args.note, ""]
        lines += ["| size | batching | clients | requests | images/s | p50 ms | p99 ms | x vs 1 client, off |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['size']} | {r['batching']} | {r['clients']} | {r['requests']} | {r['images_per_s']} | "
                  f"{r['p50_ms']} | {r['p99_ms']} | {r['speedup_vs_one_at_a_time']} |" for r in rows]
        lines += ["", "off: `PICTOR_BATCH_INVARIANT=true` (default; one pipeline call per image). request: "
                  "`PICTOR_BATCH_INVARIANT=false PICTOR_STEP_BATCHING=false PICTOR_MAX_BATCH=16` (requests queued "
                  "together share one call). step: `PICTOR_BATCH_INVARIANT=false PICTOR_MAX_BATCH=16` (step-level: "
                  "requests join the running forward passes between steps). Result cache off.", ""]
        out.with_suffix(".md").write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
