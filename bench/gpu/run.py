"""GPU benchmark: Pictor vs a plain diffusers pipeline (bf16 + SDPA), same random-weight models, same run.

    python bench/gpu/run.py                      # all four workloads, engine level
    python bench/gpu/run.py --http               # also through `pictor serve` (needs the server's dependencies)
    python bench/gpu/run.py --workloads sd-turbo --runs 5

Per workload (see models.WORKLOADS): p50 latency at batch 1, images/s under 16 concurrent requests, time to
the first partial image, and the p50's ratio to the FLOP bound of the reference. The baseline is diffusers
as it comes: bf16, its default SDPA attention, one pipeline call per request (and, as its best case, one call
with all 16 prompts). Pictor is the DiffusersBackend behind its ModelWorker (queue + cross-request batching),
loaded from the same folder with its CUDA path (channels_last, fused QKV, torch.compile, CUDA graphs for the
small UNets, prompt-embedding cache) warmed at start. Results: bench/results/gpu-<device>.json and .md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))
import models  # noqa: E402

PROMPTS = [f"a photo of a red cat number {i} on a blue background" for i in range(16)]
# Loading a 12B FLUX (and T5-XXL) in bf16, compiling and warming it takes minutes, not the tests' 180 s.
SERVER_STARTUP_S = 1200
# --smoke: the same code on the CPU with the tests' tiny models, to check the benchmark itself anywhere.
DEVICE, DTYPE = "cuda", torch.bfloat16


def _sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _p50(values: list[float]) -> float:
    return statistics.median(values)


def _free() -> None:
    gc.collect()
    if DEVICE == "cuda":
        torch.cuda.empty_cache()


def baseline(folder: Path, side: int, steps: int, guidance: float, runs: int, concurrency: int) -> dict:
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(folder), dtype=DTYPE).to(DEVICE)
    pipe.set_progress_bar_config(disable=True)
    args = {"height": side, "width": side, "num_inference_steps": steps, "guidance_scale": guidance}
    if "flux" in type(pipe).__name__.lower():
        args["max_sequence_length"] = 256

    def call(prompts: list[str], seed: int = 0, callback=None):
        generators = [torch.Generator(DEVICE).manual_seed(seed + i) for i in range(len(prompts))]
        return pipe(prompt=prompts, generator=generators, callback_on_step_end=callback, **args).images

    for _ in range(2):
        call(PROMPTS[:1])
    latencies = []
    for i in range(runs):
        started = time.perf_counter()
        call(PROMPTS[i % 16: i % 16 + 1], seed=i)
        latencies.append(time.perf_counter() - started)
    first: list[float] = []
    started = time.perf_counter()

    def on_step(_pipe, step, _t, tensors):
        if not first:
            _sync()
            first.append(time.perf_counter() - started)
        return tensors

    call(PROMPTS[:1], callback=on_step)
    started = time.perf_counter()
    for i in range(concurrency):
        call(PROMPTS[i:i + 1], seed=i)
    sequential = concurrency / (time.perf_counter() - started)
    call(PROMPTS[:concurrency])  # warm the batch shape
    started = time.perf_counter()
    call(PROMPTS[:concurrency])
    batched = concurrency / (time.perf_counter() - started)
    return {"p50_s": _p50(latencies), "images_per_s": sequential, "images_per_s_one_batch_call": batched,
            "first_step_s": first[0] if first else None}


def pictor_engine(folder: Path, family: str, side: int, runs: int, concurrency: int, max_batch: int) -> dict:
    from pictor.engine.diffusers_backend import DiffusersBackend
    from pictor.engine.models_file import ModelSpec
    from pictor.engine.protocol import EngineRequest
    from pictor.engine.worker import ModelWorker

    started = time.perf_counter()
    dtype = "fp32" if DEVICE == "cpu" else "bf16"
    backend = DiffusersBackend(ModelSpec(name=family, path=str(folder), family=family, dtype=dtype), device=DEVICE,
                               batch_invariant=False)
    load_s = time.perf_counter() - started
    worker = ModelWorker(backend, max_batch=max_batch)

    def request(i: int) -> EngineRequest:
        return EngineRequest("generate", PROMPTS[i % 16], side, side, seed=i)

    for i in range(2):  # the worker thread's first calls (CUDA graphs are recorded per thread)
        worker.submit(request(i)).result()
    latencies = []
    for i in range(runs):
        began = time.perf_counter()
        worker.submit(request(i)).result()
        latencies.append(time.perf_counter() - began)
    first: list[float] = []
    began = time.perf_counter()
    worker.submit(request(0), lambda step, total, image: first or first.append(time.perf_counter() - began)).result()

    def burst() -> float:
        began = time.perf_counter()
        for future in [worker.submit(request(i)) for i in range(concurrency)]:
            future.result()
        return concurrency / (time.perf_counter() - began)

    burst()  # compiles the batch shapes the burst makes
    throughput = burst()
    worker.close()
    return {"p50_s": _p50(latencies), "images_per_s": throughput, "first_partial_s": first[0] if first else None,
            "load_and_warm_s": load_s}


def pictor_http(folder: Path, family: str, side: int, runs: int, concurrency: int, max_batch: int) -> dict:
    """The same through `pictor serve` (HTTP, governance, encoding): needs httpx and the server's dependencies."""
    import httpx

    sys.path.insert(0, str(ROOT / "tests"))
    from api.helpers import start_server

    scratch = Path(tempfile.mkdtemp(prefix="pictor-bench-"))
    (scratch / "models.toml").write_text(f'[[model]]\nname = "bench"\npath = "{folder}"\nfamily = "{family}"\n'
                                         'dtype = "bf16"\n')
    server = start_server(scratch, {"PICTOR_MAX_BATCH": str(max_batch), "PICTOR_BATCH_INVARIANT": "false",
                                    "PICTOR_RESULT_CACHE_MB": "0"},
                          ("--models", str(scratch / "models.toml"), "--keyless"),
                          startup_timeout_s=SERVER_STARTUP_S)
    body = {"model": "bench", "size": f"{side}x{side}", "quality": "medium", "output_format": "jpeg"}
    try:
        with httpx.Client(base_url=server.url, timeout=600) as client:
            def generate(i: int) -> float:
                began = time.perf_counter()
                response = client.post("/v1/images/generations", json={**body, "prompt": PROMPTS[i % 16], "seed": i})
                response.raise_for_status()
                return time.perf_counter() - began

            for i in range(2):
                generate(i)
            latencies = [generate(i) for i in range(runs)]
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(generate, range(concurrency)))
                began = time.perf_counter()
                list(pool.map(generate, range(concurrency)))
                throughput = concurrency / (time.perf_counter() - began)
            first = None
            began = time.perf_counter()
            with client.stream("POST", "/v1/images/generations",
                               json={**body, "prompt": PROMPTS[0], "stream": True, "partial_images": 1}) as stream:
                for line in stream.iter_lines():
                    if "partial_image" in line and first is None:
                        first = time.perf_counter() - began
    finally:
        server.stop()
    return {"p50_s": _p50(latencies), "images_per_s": throughput, "first_partial_s": first}


def device_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def markdown(report: dict) -> str:
    lines = [f"# GPU benchmark: Pictor vs diffusers (bf16 + SDPA) on {report['device']}", "",
             f"torch {report['torch']}, diffusers {report['diffusers']}, {report['date']}; random weights with the "
             "real architectures (bench/gpu/models.py); 16 concurrent requests; p50 of "
             f"{report['runs']} runs at batch 1.", "",
             "| workload | diffusers p50 | Pictor p50 | x FLOP bound (Pictor) | diffusers img/s (b1 / one b16 call) "
             "| Pictor img/s | first partial (Pictor) | HTTP p50 / img/s / first partial |",
             "|---|---|---|---|---|---|---|---|"]
    for name, row in report["workloads"].items():
        base, engine, http = row["diffusers"], row["pictor"], row.get("http")
        first = f"{engine['first_partial_s'] * 1000:.0f} ms" if engine["first_partial_s"] else "n/a (1 step)"
        web = "-"
        if http:
            partial = f"{http['first_partial_s'] * 1000:.0f} ms" if http["first_partial_s"] else "n/a"
            web = f"{http['p50_s'] * 1000:.0f} ms / {http['images_per_s']:.1f} / {partial}"
        lines.append(f"| {name} | {base['p50_s'] * 1000:.0f} ms | {engine['p50_s'] * 1000:.0f} ms | "
                     f"{engine['p50_s'] / row['flop_bound_s']:.1f} | {base['images_per_s']:.1f} / "
                     f"{base['images_per_s_one_batch_call']:.1f} | {engine['images_per_s']:.1f} | {first} | {web} |")
    return "\n".join(lines) + "\n"


def smoke(args: argparse.Namespace) -> int:
    global DEVICE, DTYPE
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_pipelines import build_tiny

    DEVICE, DTYPE = "cpu", torch.float32
    scratch = Path(tempfile.mkdtemp(prefix="pictor-gpu-smoke-"))
    report = {"device": "cpu smoke", "torch": torch.__version__, "diffusers": "-", "date": time.strftime("%Y-%m-%d"),
              "runs": 2, "workloads": {}}
    for name, tiny in (("sd-turbo", "sd"), ("sdxl", "sdxl"), ("flux-schnell", "flux-schnell")):
        family, _, steps, guidance = models.WORKLOADS[name]
        folder = build_tiny(tiny, scratch / name)
        row = {"flop_bound_s": models.FLOP_BOUND_S[name],
               "diffusers": baseline(folder, 32, steps, guidance, 2, 4),
               "pictor": pictor_engine(folder, family, 32, 2, 4, 2)}
        if args.http:
            row["http"] = pictor_http(folder, family, 32, 2, 4, 2)
        report["workloads"][name] = row
    print(markdown(report))
    if args.out != str(ROOT / "bench" / "results"):
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "gpu-smoke.json").write_text(json.dumps(report, indent=2))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default=",".join(models.WORKLOADS))
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-batch", type=int, default=8, help="the worker's batch limit (Settings.max_batch)")
    parser.add_argument("--http", action="store_true", help="also measure through `pictor serve`")
    parser.add_argument("--scratch", help="where the model folders are written (default: a temporary folder)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU: checks this script, measures "
                        "nothing worth keeping (writes to a temporary folder unless --out is given)")
    args = parser.parse_args()
    if args.smoke:
        return smoke(args)
    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark runs on a GPU machine (see bench/gpu/README.md)", file=sys.stderr)
        return 2
    import diffusers

    device = torch.cuda.get_device_name()
    report = {"device": device, "torch": torch.__version__, "diffusers": diffusers.__version__,
              "date": time.strftime("%Y-%m-%d"), "host": platform.node(), "runs": args.runs,
              "concurrency": args.concurrency, "max_batch": args.max_batch, "workloads": {}}
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="pictor-gpu-models-"))
    for name in args.workloads.split(","):
        family, side, steps, guidance = models.WORKLOADS[name]
        folder = scratch / name
        began = time.perf_counter()
        models.build(name, folder)
        print(f"{name}: built in {time.perf_counter() - began:.0f} s", flush=True)
        row = {"family": family, "side": side, "steps": steps, "guidance": guidance,
               "flop_bound_s": models.FLOP_BOUND_S[name]}
        row["diffusers"] = baseline(folder, side, steps, guidance, args.runs, args.concurrency)
        _free()
        print(f"{name}: diffusers {row['diffusers']}", flush=True)
        row["pictor"] = pictor_engine(folder, family, side, args.runs, args.concurrency, args.max_batch)
        _free()
        print(f"{name}: pictor {row['pictor']}", flush=True)
        if args.http:
            row["http"] = pictor_http(folder, family, side, args.runs, args.concurrency, args.max_batch)
            print(f"{name}: http {row['http']}", flush=True)
        report["workloads"][name] = row
        subprocess.run(["rm", "-rf", str(folder)], check=False)  # FLUX alone is ~35 GB on disk
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = out / f"gpu-{device_slug(device)}"
        stem.with_suffix(".json").write_text(json.dumps(report, indent=2))
        stem.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
