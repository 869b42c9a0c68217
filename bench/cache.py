"""Caching: the exact result cache (hit vs miss, through a live server) and the prompt-encoding cache.

Pinned to one core (this process and the server it starts: CPU affinity {core}, torch with one thread).
Part 1 starts `pictor serve` (keyless, a temporary data folder), sends a seeded request once (a miss), then
the same request again and again (hits), then requests with new seeds (misses; the prompt encoding is then
a cache hit). Engine time comes from each response's Server-Timing `model;dur=`, the rest is end-to-end
minus that (validation, watermark, C2PA signing, PNG encoding, storage, audit, HTTP).
Part 2 runs the embedded pipeline in process with the prompt-encoding cache on and off: the pixels must be
identical, and the time of the text encoder and of a whole call is compared.

    python bench/cache.py [--core 1] [--requests 40] [--output bench/results/cache-cpu-2core]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import httpx
from local_server import local_server, model_ms, percentile, server_timing

from pictor.embedded.evaluate import machine_description

PROMPT = "a red star in the top left and a blue circle on a white background"


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(percentile(values, 50), 2), "p99": round(percentile(values, 99), 2),
            "mean": round(statistics.fmean(values), 2)}


def timed(client: httpx.Client, body: dict) -> tuple[float, float, str]:
    started = time.perf_counter()
    response = client.post("/v1/images/generations", json=body)
    total = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    state = server_timing(response).get("cache", {}).get("desc", "none")
    return model_ms(response), total, state


def serve_and_measure(requests: int, size: str) -> dict:
    with local_server({"OMP_NUM_THREADS": "1"}) as url, httpx.Client(base_url=url, timeout=300) as client:
        body = {"prompt": PROMPT, "size": size, "quality": "low", "output_format": "png", "seed": 1}
        timed(client, {**body, "seed": 0})  # warm-up
        rows: dict[str, list[tuple[float, float]]] = {"hit": [], "miss": []}
        first = timed(client, body)
        assert first[2] == "miss", first
        rows["miss"].append(first[:2])
        for index in range(requests):
            hit = timed(client, body)
            assert hit[2] == "hit", hit
            rows["hit"].append(hit[:2])
            if index % 4 == 0:  # misses interleaved: a new seed each time
                miss = timed(client, {**body, "seed": 1000 + index})
                assert miss[2] == "miss", miss
                rows["miss"].append(miss[:2])
        metrics = client.get("/metrics").text
    out = {}
    for state, values in rows.items():
        model = [m for m, _ in values]
        total = [t for _, t in values]
        out[state] = {"count": len(values), "engine_ms": summary(model), "rest_ms": summary([t - m for m, t in values]),
                      "end_to_end_ms": summary(total)}
    out["metrics"] = [line for line in metrics.splitlines() if line.startswith("pictor_cache_")]
    return out


def prompt_cache_effect(calls: int) -> dict:
    import numpy as np
    import torch

    from pictor.embedded import WEIGHTS_DIR
    from pictor.engine.loading import load_model_folder
    from pictor.prompt_cache import PromptCache

    torch.set_num_threads(1)
    pipe = load_model_folder(WEIGHTS_DIR, device="cpu")
    prompts = [PROMPT, "a small green triangle in the center on a yellow background"]
    caches = {"on": PromptCache(128), "off": PromptCache(0)}  # "off" never keeps anything: every call encodes
    times: dict[str, dict[str, list[float]]] = {label: {"encode": [], "whole": []} for label in caches}
    pictures: dict[str, list] = {label: [] for label in caches}
    for index in range(calls + 2):  # on and off interleaved, so drift on the machine hits both alike
        for label, cache in caches.items():
            pipe.prompt_cache = cache
            texts = [prompts[index % 2], ""]
            started = time.perf_counter()
            with torch.no_grad():
                pipe._encode(texts)
            encode = (time.perf_counter() - started) * 1000
            started = time.perf_counter()
            image = pipe(prompts[index % 2], width=256, height=256, num_inference_steps=6, seed=index).images[0]
            whole = (time.perf_counter() - started) * 1000
            if index >= 2:  # the first two calls (one per prompt) fill the cache and warm up
                times[label]["encode"].append(encode)
                times[label]["whole"].append(whole)
            pictures[label].append(np.asarray(image))
    result: dict = {label: {"encode_ms": summary(times[label]["encode"]),
                            "call_256px_6steps_ms": summary(times[label]["whole"]),
                            "hits": cache.hits, "misses": cache.misses} for label, cache in caches.items()}
    result["identical_pixels"] = all(np.array_equal(a, b) for a, b in zip(pictures["on"], pictures["off"]))
    result["calls"] = calls
    return result


def report(data: dict) -> str:
    served = data["result_cache"]
    lines = [f"# Caching, embedded model, {data['size']} PNG, quality low", "",
             f"Machine: {data['machine']}", "",
             f"Pinned to one core (CPU affinity {{{data['core']}}}, this process and the server it starts; "
             "torch with 1 thread). Times in ms.", "",
             "## Exact result cache (live server, sequential requests)", "",
             "engine = Server-Timing `model;dur=` (for a hit: the cache lookup and copy); rest = end-to-end minus "
             "engine (validation, output check, watermark, C2PA signing, PNG encoding, storage, audit, HTTP).", "",
             "| | count | engine p50 | engine p99 | rest p50 | end-to-end p50 | end-to-end p99 |",
             "|---|---|---|---|---|---|---|"]
    for state in ("hit", "miss"):
        row = served[state]
        lines.append(f"| {state} | {row['count']} | {row['engine_ms']['p50']} | {row['engine_ms']['p99']} | "
                     f"{row['rest_ms']['p50']} | {row['end_to_end_ms']['p50']} | {row['end_to_end_ms']['p99']} |")
    lines += ["", "Metrics after the run:", "", "```", *served["metrics"], "```", "",
              "## Prompt-encoding cache (in process, pipeline calls alternating two prompts)", "",
              "| cache | text encoder p50 | whole call p50 (256 px, 6 steps) | hits | misses |",
              "|---|---|---|---|---|"]
    effect = data["prompt_cache"]
    for label in ("on", "off"):
        row = effect[label]
        lines.append(f"| {label} | {row['encode_ms']['p50']} | {row['call_256px_6steps_ms']['p50']} | {row['hits']} | "
                     f"{row['misses']} |")
    lines += ["", f"Identical pixels with and without the cache over {effect['calls']} calls: "
              f"{effect['identical_pixels']}.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--core", type=int, default=1)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--size", default="1024x1024")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--output")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.core})  # inherited by the server process
    os.environ["OMP_NUM_THREADS"] = "1"
    data = {"machine": machine_description(), "core": args.core, "size": args.size,
            "result_cache": serve_and_measure(args.requests, args.size),
            "prompt_cache": prompt_cache_effect(args.calls)}
    text = report(data)
    print(text)
    if args.output:
        Path(f"{args.output}.json").write_text(json.dumps(data, indent=2) + "\n")
        Path(f"{args.output}.md").write_text(text)
    return 0 if data["prompt_cache"]["identical_pixels"] else 1


if __name__ == "__main__":
    sys.exit(main())
