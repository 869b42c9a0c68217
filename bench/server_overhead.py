"""Server overhead: end-to-end time of a 1024x1024 PNG generation minus the model's own time, step by step.

Starts `pictor serve` (keyless, a temporary data folder) on a free loopback port, sends sequential
requests with httpx, and reads every step's time from each response's Server-Timing header. Beside it, in the
same run, a plain Pillow `save()` of each returned image in the same format: the overhead as a ratio to it
survives a noisy machine better than milliseconds do.

    python bench/server_overhead.py [--requests 60] [--output bench/results/server-overhead-cpu-2core]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import time
from pathlib import Path

import httpx
from local_server import local_server, model_ms, percentile
from PIL import Image

from pictor.embedded.evaluate import machine_description


def step_times(response: httpx.Response) -> dict[str, float]:
    """Every `name;dur=` of Server-Timing."""
    found = {}
    for part in response.headers["server-timing"].split(","):
        name, _, duration = part.strip().partition(";dur=")
        if duration:
            found[name] = float(duration)
    return found


def plain_save_ms(b64: str, fmt: str) -> float:
    """What Pillow alone takes to encode the returned image in its format, defaults."""
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    started = time.perf_counter()
    image.save(io.BytesIO(), format=fmt.upper())
    return (time.perf_counter() - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--size", default="1024x1024")
    parser.add_argument("--output")
    args = parser.parse_args()
    with local_server() as url, httpx.Client(base_url=url, timeout=120) as client:
        body = {"prompt": "a red star in the top left and a blue circle on a white background",
                "size": args.size, "output_format": "png"}
        for seed in range(3):  # warm-up
            client.post("/v1/images/generations", json={**body, "seed": seed}).raise_for_status()
        totals, models, pillow, steps = [], [], [], {}
        for i in range(args.requests):
            started = time.perf_counter()
            response = client.post("/v1/images/generations", json={**body, "seed": 100 + i})
            total = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            totals.append(total)
            models.append(model_ms(response))
            for name, ms in step_times(response).items():
                steps.setdefault(name, []).append(ms)
            pillow.append(plain_save_ms(response.json()["data"][0]["b64_json"], body["output_format"]))
    overhead = [t - m for t, m in zip(totals, models)]
    result = {"machine": machine_description(), "requests": args.requests, "size": args.size,
              "overhead_ms": {"p50": statistics.median(overhead), "p99": percentile(overhead, 99)},
              "end_to_end_ms": {"p50": statistics.median(totals), "p99": percentile(totals, 99)},
              "model_ms": {"p50": statistics.median(models), "p99": percentile(models, 99)},
              "plain_pillow_save_ms": {"p50": statistics.median(pillow), "p99": percentile(pillow, 99)},
              "overhead_over_plain_save": statistics.median(overhead) / statistics.median(pillow),
              "steps_ms_p50": {name: statistics.median(values) for name, values in steps.items()}}
    print(json.dumps(result, indent=2))
    if args.output:
        Path(args.output).with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        lines = [f"# Server overhead, {args.size} PNG, embedded model", "", f"Machine: {result['machine']}", "",
                 f"{args.requests} sequential requests after 3 warm-up ones; overhead = end-to-end minus the "
                 "model time from the Server-Timing header (everything else: HTTP, validation, PNG encoding, "
                 "storage, base64, JSON).", "", "| | p50 | p99 |", "|---|---|---|"]
        for name in ("overhead_ms", "model_ms", "end_to_end_ms", "plain_pillow_save_ms"):
            lines.append(f"| {name} | {result[name]['p50']:.1f} | {result[name]['p99']:.1f} |")
        lines += ["", f"Overhead over a plain Pillow save of the same image: {result['overhead_over_plain_save']:.2f}.",
                  "", "| step (Server-Timing) | p50 ms |", "|---|---|"]
        lines += [f"| {name} | {ms:.1f} |" for name, ms in result["steps_ms_p50"].items()]
        Path(args.output).with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
