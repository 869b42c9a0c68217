"""The embedded model through the HTTP API, judged by the world's judge: what a user of the server gets.

Starts `pictor serve` (keyless, a temporary data folder, on loopback) from a source tree, sends the fixed
benchmark prompts of `pictor bench-embedded` as /v1/images/generations requests, its edits and inpaints as
/v1/images/edits (multipart, masks with alpha 0 where to paint), all at one size, and reads every returned
image with the judge. Also: one-object prompts that came out with exactly one object, the 10-90% edge rise
of single objects (at the size asked, and at 1024 px), generate and edit latency p50 through the server
(one client, distinct seeds so the result cache never answers), and the server's peak memory.

Edits run with `auto_edit_mask` off, so PSNR outside the edited object measures the model, not the mask.

    python bench/embedded_api.py --label new --output bench/results/embedded-api-new
    python bench/embedded_api.py --source-tree /path/to/old/checkout --label old --output ...
    python bench/embedded_api.py --table old.json new.json --output bench/results/embedded-old-vs-new-cpu-2core
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import time
from pathlib import Path

import httpx
import numpy as np
from local_server import local_server
from PIL import Image

from pictor.embedded.evaluate import (
    edge_rise_px,
    edit_cases,
    generation_cases,
    machine_description,
    run_edits,
    run_generation,
    run_inpaint,
)

GENERATIONS, EDITS = "/v1/images/generations", "/v1/images/edits"


def _image(response: httpx.Response) -> Image.Image:
    response.raise_for_status()
    return Image.open(io.BytesIO(base64.b64decode(response.json()["data"][0]["b64_json"]))).convert("RGB")


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _api_mask(mask: Image.Image) -> Image.Image:
    """White = paint here (the benchmark's masks) -> the API's RGBA mask: alpha 0 where to paint."""
    alpha = Image.eval(mask.convert("L"), lambda v: 0 if v > 127 else 255)
    rgba = Image.new("RGBA", mask.size, (0, 0, 0, 255))
    rgba.putalpha(alpha)
    return rgba


class ApiCalls:
    """The benchmark's generate / edit / inpaint calls, one HTTP request per image."""

    def __init__(self, client: httpx.Client, size: int):
        self.client, self.size = client, size

    def generate(self, prompts: list[str], seeds: list[int], size: int | None = None) -> list[Image.Image]:
        side = size or self.size
        return [_image(self.client.post(GENERATIONS, json={"prompt": p, "size": f"{side}x{side}", "seed": s,
                                                           "output_format": "png"}))
                for p, s in zip(prompts, seeds)]

    def edit(self, prompts: list[str], images: list[Image.Image], seeds: list[int]) -> list[Image.Image]:
        return [_image(self.client.post(EDITS, files={"image": ("source.png", _png(im), "image/png")},
                                        data={"prompt": p, "seed": str(s), "size": f"{im.width}x{im.height}"}))
                for p, im, s in zip(prompts, images, seeds)]

    def inpaint(self, prompts: list[str], images: list[Image.Image], masks: list[Image.Image],
                seeds: list[int]) -> list[Image.Image]:
        return [_image(self.client.post(EDITS, files={"image": ("source.png", _png(im), "image/png"),
                                                      "mask": ("mask.png", _png(_api_mask(m)), "image/png")},
                                        data={"prompt": p, "seed": str(s)}))
                for p, im, m, s in zip(prompts, images, masks, seeds)]


def _latency_ms(call, repeats: int) -> float:
    call(0)
    times = []
    for i in range(repeats):
        started = time.perf_counter()
        call(i + 1)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure_quality(url: str, size: int, per_category: int, edits: int, inpaints: int) -> dict:
    """The judged part: adherence, edits, inpainting, edge rise (at `size` and at 1024 px)."""
    with httpx.Client(base_url=url, timeout=300) as client:
        api = ApiCalls(client, size)
        started = time.perf_counter()
        gen = run_generation(api.generate, generation_cases(per_category=per_category))
        ed = run_edits(api.edit, edit_cases(count=edits, resolution=size), resolution=size)
        inp = run_inpaint(api.inpaint, count=inpaints, resolution=size)
        scored_s = time.perf_counter() - started
        big = api.generate(["a red star on a white background", "a blue square on a white background",
                            "a green circle on a white background", "a black heart on a white background"],
                           [1, 2, 3, 4], size=1024)
    rises_1024 = [r for image in big for r in edge_rise_px(np.asarray(image), samples=32)]
    scores = {**gen.scores, **ed.scores, **inp.scores}
    if rises_1024:
        scores["edge_rise_1024px"] = float(np.median(rises_1024))
    return {"scores": scores, "counts": {**gen.counts, **ed.counts, **inp.counts}, "scoring_seconds": scored_s,
            "failures": gen.failures[:15] + ed.failures[:15]}


def measure_latency(url: str, pid: int, size: int, repeats: int) -> dict:
    """Generate and edit p50 end to end (run on an otherwise idle machine), and the server's peak memory."""
    with httpx.Client(base_url=url, timeout=300) as client:
        api = ApiCalls(client, size)
        source = api.generate(["a red circle and a blue square on a white background"], [0])[0]
        timings = {
            f"generate_{size}px_p50_ms": _latency_ms(
                lambda i: api.generate(["a blue star in the top left on a white background"], [100 + i]), repeats),
            f"edit_{size}px_p50_ms": _latency_ms(
                lambda i: api.edit(["make the circle green"], [source], [200 + i]), repeats),
        }
    return {"timings_ms": timings, "server_peak_rss_mb": _peak_rss_mb(pid)}


GOALS = {  # issue 17's goals, for the table
    "single_object_shape": ">= 0.98", "single_object_colour": ">= 0.98", "single_object_position": ">= 0.98",
    "one_object_exact_set": ">= 0.97", "geneval_overall": ">= 0.90", "counting": ">= 0.85", "position": ">= 0.90",
    "colour_binding": ">= 0.90", "edit_success": ">= 0.90", "edit_psnr_outside_db": ">= 30",
    "inpaint_success": ">= 0.90", "edge_rise_px": "<= 2", "edge_rise_1024px": "as crisp",
    "generate_256px_p50_ms": "<= 250", "edit_256px_p50_ms": "<= 350", "server_peak_rss_mb": "<= 800",
}


def side_by_side(paths: list[str]) -> str:
    """A markdown table of several results files (one column each), with the goals beside."""
    results = [json.loads(Path(p).read_text()) for p in paths]
    names = list(dict.fromkeys(k for r in results for k in [*r["scores"], *r["timings_ms"], "server_peak_rss_mb"]))
    lines = [f"# Embedded model through the HTTP API, {results[0]['size']} px", "",
             f"Machine: {results[0]['machine']}", "",
             "Prompts, scenes and seeds as in `pictor bench-embedded`; every image made and read back through "
             "`pictor serve` (keyless, loopback), edits with `auto_edit_mask` off. Latency: one client, "
             "p50 end to end.", "",
             "| measure | " + " | ".join(r["label"] for r in results) + " | goal |",
             "|---|" + "---|" * (len(results) + 1)]
    for name in names:
        cells = []
        for r in results:
            value = {**r["scores"], **r["timings_ms"], "server_peak_rss_mb": r["server_peak_rss_mb"]}.get(name)
            cells.append("" if value is None else (f"{value:.0f}" if abs(value) >= 20 else f"{value:.3f}"))
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {GOALS.get(name, '')} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--table", nargs="+", help="only write a side-by-side table of these results files")
    parser.add_argument("--source-tree", help="run the server from this checkout's src/ (default: this one)")
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--per-category", type=int, default=50)
    parser.add_argument("--edits", type=int, default=120)
    parser.add_argument("--inpaints", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=30, help="requests timed for each latency")
    parser.add_argument("--parts", default="quality,latency",
                        help="quality and/or latency (an existing output file is updated with the parts run)")
    parser.add_argument("--output", help="results path stem (.json)")
    args = parser.parse_args()
    if args.table:
        table = side_by_side(args.table)
        print(table)
        if args.output:
            Path(args.output).with_suffix(".md").write_text(table)
        return 0
    env = {"PICTOR_AUTO_EDIT_MASK": "false"}
    if args.source_tree:
        tree = str(Path(args.source_tree).resolve() / "src")
        env["PYTHONPATH"] = tree + os.pathsep + os.environ.get("PYTHONPATH", "")
    output = Path(args.output).with_suffix(".json") if args.output else None
    result = json.loads(output.read_text()) if output is not None and output.exists() else {}
    processes: list = []
    with local_server(env, processes) as url:
        if "quality" in args.parts:
            result.update(measure_quality(url, args.size, args.per_category, args.edits, args.inpaints))
        if "latency" in args.parts:
            result.update(measure_latency(url, processes[0].pid, args.size, args.repeats))
    result.update({"label": args.label, "machine": machine_description(), "size": args.size})
    result.setdefault("scores", {})
    result.setdefault("timings_ms", {})
    result.setdefault("server_peak_rss_mb", float("nan"))
    print(json.dumps({k: result[k] for k in ("label", "scores", "timings_ms", "server_peak_rss_mb")}, indent=2))
    if output is not None:
        output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
