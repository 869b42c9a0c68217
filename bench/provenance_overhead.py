"""Provenance overhead per 1024x1024 PNG: C2PA signing alone, and the whole store step of the service.

`sign_ms`: only `pictor.governance.provenance.sign` (c2pa hashing, signing, embedding, verify-after-sign).
`store_ms`: `ImageService._store` as a request runs it (reserve audit indexes, encode, sign, put the blob,
record the image and its audit entry in one SQLite transaction, maybe a checkpoint), minus the PNG encoding
measured apart (`encode_ms`), which happens without provenance too.

Two images: flat colours (like the embedded model's world, a small PNG) and a noisy gradient
(a large PNG, as from a photographic model: hashing grows with the file). Credentials are made in a temporary
folder; the first sign (which also builds the c2pa context) is reported apart.

    python bench/provenance_overhead.py [--runs 30] [--output bench/results/provenance-overhead-cpu-2core]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from local_server import percentile
from PIL import Image, ImageDraw

from pictor.embedded.evaluate import machine_description
from pictor.governance.credentials import load_or_create
from pictor.governance.provenance import ProvenanceClaim, read, sign


def images(size: int) -> dict[str, bytes]:
    flat = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(flat)
    draw.ellipse((size // 8, size // 8, size // 2, size // 2), fill="red")
    draw.rectangle((size // 2, size // 2, size * 7 // 8, size * 7 // 8), fill="blue")
    ramp = np.linspace(0, 200, size)[None, :, None]
    noisy = Image.fromarray((ramp + np.random.default_rng(0).random((size, size, 3)) * 55).astype(np.uint8))
    encoded = {}
    for name, image in (("flat", flat), ("noisy", noisy)):
        out = io.BytesIO()
        image.save(out, format="PNG")
        encoded[name] = out.getvalue()
    return encoded


def claim(name: str, i: int) -> ProvenanceClaim:
    return ProvenanceClaim(artifact_id=f"{name}-{i}", kind="created", model_id="pictor-embedded",
                           weights_hash="sha256:" + "0" * 64, seed=i, prompt_hash="hmac-sha256:" + "0" * 64,
                           job_id=f"job-{i}", format="png", audit_index=i, policy_version="bench")


def store_path(folder: Path, runs: int, size: int) -> dict[str, dict[str, float]]:
    import asyncio

    from pictor.core import ImageJob
    from pictor.engine.embedded_backend import EmbeddedBackend
    from pictor.engine.protocol import EngineResult
    from pictor.engine.registry import ModelRegistry
    from pictor.service.encoding import encode
    from pictor.service.governance import Governance
    from pictor.service.images import ImageService
    from pictor.storage import Database, LocalBlobStore, Principal

    database = Database(f"sqlite:///{folder / 'pictor.db'}")
    tenant = database.create_tenant("bench")
    principal = Principal(tenant.id, tenant.name, None)
    registry = ModelRegistry()
    registry.register(EmbeddedBackend(), default=True)
    service = ImageService(registry, database, LocalBlobStore(folder / "blobs"), Governance.open(folder, database))
    plan = asyncio.run(service.prepare(ImageJob(kind="generate", prompt="a red circle", size=f"{size}x{size}")))
    rows = {}
    try:
        for name, png in images(size).items():
            picture = Image.open(io.BytesIO(png)).convert("RGB")
            service.outputs.store(plan, principal, [EngineResult(image=picture, seed=0)])  # warm
            encode_times, store_times = [], []
            for i in range(runs):
                started = time.perf_counter()
                encode(picture, "png", 100)
                encode_times.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                service.outputs.store(plan, principal, [EngineResult(image=picture, seed=i)])
                store_times.append((time.perf_counter() - started) * 1000)
            overhead = [s - e for s, e in zip(store_times, encode_times)]
            rows[name] = {"encode_p50_ms": statistics.median(encode_times),
                          "store_p50_ms": statistics.median(store_times),
                          "overhead_p50_ms": statistics.median(overhead), "overhead_p99_ms": percentile(overhead, 99)}
        assert service.governance.audit.verify().ok
    finally:
        registry.close()
        database.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--output")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        credentials = load_or_create(Path(folder) / "provenance")
        rows = {}
        for name, png in images(args.size).items():
            started = time.perf_counter()
            signed = sign(png, claim(name, 0), credentials)
            first = (time.perf_counter() - started) * 1000
            assert read(signed, "png", credentials.trust_anchors_pem).validation_state == "Trusted"
            times = []
            for i in range(1, args.runs + 1):
                started = time.perf_counter()
                sign(png, claim(name, i), credentials)
                times.append((time.perf_counter() - started) * 1000)
            rows[name] = {"png_bytes": len(png), "signed_bytes": len(signed),
                          "added_bytes": len(signed) - len(png), "first_ms": first,
                          "p50_ms": statistics.median(times), "p99_ms": percentile(times, 99)}
        store = store_path(Path(folder), args.runs, args.size)
    result = {"machine": machine_description(), "runs": args.runs, "size": f"{args.size}x{args.size}",
              "sign_ms": rows, "store_ms": store}
    print(json.dumps(result, indent=2))
    if args.output:
        Path(args.output).with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        lines = [f"# C2PA signing overhead, {result['size']} PNG", "", f"Machine: {result['machine']}", "",
                 f"{args.runs} signs per image of an already-encoded PNG (ES256, no thumbnail, verify after sign), "
                 "after one first sign reported apart.", "",
                 "| image | PNG bytes | added bytes | first ms | p50 ms | p99 ms |", "|---|---|---|---|---|---|"]
        for name, row in rows.items():
            lines.append(f"| {name} | {row['png_bytes']} | {row['added_bytes']} | {row['first_ms']:.1f} | "
                         f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} |")
        lines += ["", "The service's whole store step (reserve audit indexes, watermark, encode, sign, put the blob, "
                  "record image and audit entry in one transaction), minus the PNG encoding it would do anyway:", "",
                  "| image | encode p50 ms | store p50 ms | provenance overhead p50 ms | p99 ms |",
                  "|---|---|---|---|---|"]
        for name, row in store.items():
            lines.append(f"| {name} | {row['encode_p50_ms']:.1f} | {row['store_p50_ms']:.1f} | "
                         f"{row['overhead_p50_ms']:.1f} | {row['overhead_p99_ms']:.1f} |")
        Path(args.output).with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
