"""Server overhead: end-to-end time of a 1024x1024 PNG generation minus the model's own time.

Starts `pictor serve` (keyless, a temporary data folder) on a free loopback port, sends sequential
requests with httpx, and reads the model time from each response's Server-Timing header.

    python bench/server_overhead.py [--requests 60] [--output bench/results/server-overhead-cpu-2core]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import httpx
from local_server import local_server, model_ms, percentile

from pictor.embedded.evaluate import machine_description


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
        totals, models = [], []
        for i in range(args.requests):
            started = time.perf_counter()
            response = client.post("/v1/images/generations", json={**body, "seed": 100 + i})
            total = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            totals.append(total)
            models.append(model_ms(response))
    overhead = [t - m for t, m in zip(totals, models)]
    result = {"machine": machine_description(), "requests": args.requests, "size": args.size,
              "overhead_ms": {"p50": statistics.median(overhead), "p99": percentile(overhead, 99)},
              "end_to_end_ms": {"p50": statistics.median(totals), "p99": percentile(totals, 99)},
              "model_ms": {"p50": statistics.median(models), "p99": percentile(models, 99)}}
    print(json.dumps(result, indent=2))
    if args.output:
        Path(args.output).with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        lines = [f"# Server overhead, {args.size} PNG, embedded model", "", f"Machine: {result['machine']}", "",
                 f"{args.requests} sequential requests after 3 warm-up ones; overhead = end-to-end minus the "
                 "model time from the Server-Timing header (everything else: HTTP, validation, PNG encoding, "
                 "storage, base64, JSON).", "", "| | p50 | p99 |", "|---|---|---|"]
        for name in ("overhead_ms", "model_ms", "end_to_end_ms"):
            lines.append(f"| {name} | {result[name]['p50']:.1f} | {result[name]['p99']:.1f} |")
        Path(args.output).with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
