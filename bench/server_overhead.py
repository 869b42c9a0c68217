"""Server overhead: end-to-end time of a 1024x1024 generation (PNG, JPEG or WebP) minus the model's own time, step
by step.

Starts `pictor serve` (keyless, a temporary data folder) on a free loopback port, sends sequential
requests with httpx, and reads every step's time from each response's Server-Timing header. Beside it, in the
same run, a plain Pillow `save()` of each returned image in the same format: the overhead as a ratio to it
survives a noisy machine better than milliseconds do.

Then `--concurrent` clients send requests of the same size together while another polls `/healthz`: its
latency says whether the event loop waits on the work of the requests.

    python bench/server_overhead.py [--requests 60] [--concurrent 16] [--format png|jpeg|webp] [--compression 90]
        [--output bench/results/server-overhead-cpu-2core]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import threading
import time
from pathlib import Path

import httpx
from local_server import local_server, model_ms, percentile, server_timing
from PIL import Image

from pictor.embedded.evaluate import machine_description


def step_times(response: httpx.Response) -> dict[str, float]:
    """Every step of Server-Timing that has a duration."""
    return {name: float(params["dur"]) for name, params in server_timing(response).items() if "dur" in params}


def plain_save_ms(b64: str, fmt: str, compression: int) -> float:
    """What Pillow alone takes to encode the returned image in its format: PNG with Pillow's defaults, JPEG and
    WebP at the request's quality (`output_compression`; WebP at 100 lossless, as the API does)."""
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    options = {}
    if fmt == "jpeg":
        image, options = image.convert("RGB"), {"quality": compression}
    elif fmt == "webp":
        options = {"lossless": True} if compression >= 100 else {"quality": compression}
    started = time.perf_counter()
    image.save(io.BytesIO(), format=fmt.upper(), **options)
    return (time.perf_counter() - started) * 1000


def health_under_load(url: str, body: dict, clients: int, per_client: int) -> dict:
    """`/healthz` latency (ms) polled every 20 ms while `clients` threads each send `per_client` requests."""
    done, health, errors = threading.Event(), [], []

    def client(index: int) -> None:
        with httpx.Client(base_url=url, timeout=600) as c:
            for i in range(per_client):
                response = c.post("/v1/images/generations", json={**body, "seed": 10_000 + index * 100 + i})
                if response.status_code != 200:
                    errors.append(response.status_code)

    def poll() -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            while not done.is_set():
                started = time.perf_counter()
                c.get("/healthz").raise_for_status()
                health.append((time.perf_counter() - started) * 1000)
                time.sleep(0.02)

    poller = threading.Thread(target=poll)
    poller.start()
    workers = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    done.set()
    poller.join()
    return {"clients": clients, "requests": clients * per_client, "errors": len(errors),
            "images_per_s": clients * per_client / elapsed, "healthz_polls": len(health),
            "healthz_ms": {"p50": statistics.median(health), "p99": percentile(health, 99), "max": max(health)}}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--size", default="1024x1024")
    parser.add_argument("--concurrent", type=int, default=16, help="clients for the /healthz part (0: skip it)")
    parser.add_argument("--per-client", type=int, default=4)
    parser.add_argument("--format", default="png", choices=("png", "jpeg", "webp"))
    parser.add_argument("--compression", type=int, default=100, help="output_compression (JPEG and WebP quality)")
    parser.add_argument("--output")
    args = parser.parse_args()
    with local_server() as url, httpx.Client(base_url=url, timeout=120) as client:
        body = {"prompt": "a red star in the top left and a blue circle on a white background",
                "size": args.size, "output_format": args.format,
                **({} if args.format == "png" else {"output_compression": args.compression})}
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
            timed = step_times(response)
            for name, ms in timed.items():
                steps.setdefault(name, []).append(ms)
            # What no step names: the server's own total minus every step (model included).
            steps.setdefault("unnamed", []).append(timed["total"] - sum(ms for name, ms in timed.items()
                                                                        if name != "total"))
            pillow.append(plain_save_ms(response.json()["data"][0]["b64_json"], args.format, args.compression))
        under_load = health_under_load(url, body, args.concurrent, args.per_client) if args.concurrent else None
    overhead = [t - m for t, m in zip(totals, models)]
    result = {"machine": machine_description(), "requests": args.requests, "size": args.size,
              "format": args.format, "compression": args.compression,
              "overhead_ms": {"p50": statistics.median(overhead), "p99": percentile(overhead, 99)},
              "end_to_end_ms": {"p50": statistics.median(totals), "p99": percentile(totals, 99)},
              "model_ms": {"p50": statistics.median(models), "p99": percentile(models, 99)},
              "plain_pillow_save_ms": {"p50": statistics.median(pillow), "p99": percentile(pillow, 99)},
              "overhead_over_plain_save": statistics.median(overhead) / statistics.median(pillow),
              "steps_ms_p50": {name: statistics.median(values) for name, values in steps.items()},
              "under_load": under_load}
    print(json.dumps(result, indent=2))
    if args.output:
        Path(args.output).with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        quality = "" if args.format == "png" else f" at output_compression {args.compression}"
        lines = [f"# Server overhead, {args.size} {args.format.upper()}{quality}, embedded model", "",
                 f"Machine: {result['machine']}", "",
                 f"{args.requests} sequential requests after 3 warm-up ones; overhead = end-to-end minus the "
                 "model time from the Server-Timing header (everything else: HTTP, validation, encoding, "
                 "storage, base64, JSON).", "", "| | p50 | p99 |", "|---|---|---|"]
        for name in ("overhead_ms", "model_ms", "end_to_end_ms", "plain_pillow_save_ms"):
            lines.append(f"| {name} | {result[name]['p50']:.1f} | {result[name]['p99']:.1f} |")
        lines += ["", "Overhead over a plain Pillow save of the same image (same format and quality): "
                  f"{result['overhead_over_plain_save']:.2f}.",
                  "", "| step (Server-Timing) | p50 ms |", "|---|---|"]
        lines += [f"| {name} | {ms:.1f} |" for name, ms in result["steps_ms_p50"].items()]
        if under_load is not None:
            health = under_load["healthz_ms"]
            lines += ["", f"Under load: {under_load['clients']} clients sending {under_load['requests']} requests "
                      f"together ({under_load['images_per_s']:.2f} images/s, {under_load['errors']} errors); "
                      f"/healthz polled {under_load['healthz_polls']} times meanwhile: p50 {health['p50']:.1f} ms, "
                      f"p99 {health['p99']:.1f} ms, max {health['max']:.1f} ms."]
        Path(args.output).with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
