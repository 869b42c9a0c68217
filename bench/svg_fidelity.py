"""SVG output against the raster of the same seed: how far what a browser draws from Pictor's SVG is from the PNG.

A keyless `pictor serve` (bench/local_server.py) makes each prompt twice with the same seed, `output_format=svg`
and `png`; the SVG is drawn at its own size by headless Chromium (Debian's `chromium`, or `PICTOR_CHROMIUM`) and by
resvg, and compared with the PNG pixel by pixel: mean absolute error over RGB (0..255), its 99th percentile per
pixel, and the share of pixels off by more than 64 in some channel (a visibly wrong pixel, not an edge shade).

    python bench/svg_fidelity.py [--count 24] [--sizes 256x256,512x512] [--output bench/results/svg-fidelity-cpu-2core]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
from pathlib import Path

import httpx
import numpy as np
import resvg_py
from local_server import local_server, percentile
from PIL import Image

from pictor.embedded.evaluate import generation_cases, machine_description

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def make(http: httpx.Client, prompt: str, size: str, seed: int, output_format: str) -> dict:
    response = http.post("/v1/images/generations", json={"prompt": prompt, "size": size, "seed": seed,
                                                          "output_format": output_format})
    response.raise_for_status()
    body = response.json()
    return {"data": base64.b64decode(body["data"][0]["b64_json"]), "usage": body.get("svg_usage")}


def errors(drawn: np.ndarray, raster: np.ndarray) -> dict:
    difference = np.abs(drawn.astype(int) - raster.astype(int))
    per_pixel = difference.max(axis=-1)
    return {"mean_abs": float(difference.mean()), "p99_pixel": float(np.percentile(per_pixel, 99)),
            "off_64": float((per_pixel > 64).mean())}


def chromium_drawer(playwright):
    """A function that draws SVG bytes in Chromium at the SVG's own size (an <img> on a bare page, screenshotted)."""
    browser = playwright.chromium.launch(executable_path=os.environ.get("PICTOR_CHROMIUM", "/usr/bin/chromium"),
                                         headless=True, args=CHROMIUM_ARGS)
    page = browser.new_page(device_scale_factor=1)

    def draw(svg: bytes, width: int, height: int) -> np.ndarray:
        page.set_viewport_size({"width": width, "height": height})
        source = "data:image/svg+xml;base64," + base64.b64encode(svg).decode()
        page.set_content(f'<html><body style="margin:0"><img id="i" src="{source}" width="{width}" '
                         f'height="{height}" style="display:block"></body></html>')
        page.wait_for_function("document.getElementById('i').complete")
        shot = page.screenshot(clip={"x": 0, "y": 0, "width": width, "height": height})
        return np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"))

    return draw, browser


def resvg_draw(svg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(bytes(resvg_py.svg_to_bytes(svg_string=svg.decode())))).convert("RGB"))


def summary(rows: list[dict], renderer: str) -> dict:
    values = [row[renderer] for row in rows]
    return {"images": len(values),
            "mean_abs_p50": round(percentile([v["mean_abs"] for v in values], 50), 2),
            "mean_abs_max": round(max(v["mean_abs"] for v in values), 2),
            "p99_pixel_p50": round(percentile([v["p99_pixel"] for v in values], 50), 1),
            "off_64_p50": round(percentile([v["off_64"] for v in values], 50) * 100, 2),
            "off_64_max": round(max(v["off_64"] for v in values) * 100, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=24, help="prompts per size")
    parser.add_argument("--sizes", default="256x256,512x512")
    parser.add_argument("--output")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    cases = generation_cases(seed=0)[: args.count]
    rows: list[dict] = []
    with local_server() as url, httpx.Client(base_url=url, timeout=300) as http, sync_playwright() as playwright:
        draw, browser = chromium_drawer(playwright)
        try:
            for size in args.sizes.split(","):
                width, height = (int(side) for side in size.split("x"))
                for index, case in enumerate(cases):
                    seed = 500 + index
                    svg = make(http, case.prompt, size, seed, "svg")
                    raster = np.asarray(Image.open(io.BytesIO(make(http, case.prompt, size, seed, "png")["data"]))
                                        .convert("RGB"))
                    row = {"size": size, "prompt": case.prompt, "seed": seed, "svg_bytes": len(svg["data"]),
                           "paths": svg["usage"]["paths"], "png_shape": list(raster.shape),
                           "chromium": errors(draw(svg["data"], width, height), raster),
                           "resvg": errors(resvg_draw(svg["data"]), raster)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        finally:
            browser.close()
    report = {"machine": machine_description(), "rows": rows,
              "summary": {size: {renderer: summary([r for r in rows if r["size"] == size], renderer)
                                 for renderer in ("chromium", "resvg")} for size in args.sizes.split(",")}}
    if args.output:
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.with_suffix(".json").write_text(json.dumps(report, indent=1))
        output.with_suffix(".md").write_text(markdown(report, args))
    print(json.dumps(report["summary"], indent=1))
    return 0


def markdown(report: dict, args: argparse.Namespace) -> str:
    lines = ["# SVG output: what a browser draws against the raster of the same seed", "",
             f"Machine: {report['machine']}", "",
             f"Command: `python bench/svg_fidelity.py --count {args.count} --sizes {args.sizes} "
             f"--output {args.output}`", "",
             "Each prompt (the embedded benchmark's generation cases, in order) made twice with the same seed, "
             "`output_format=svg` and `png`, on the embedded model; the SVG drawn at its own size by headless "
             "Chromium and by resvg. Errors over RGB, 0..255.", "",
             "| size | renderer | images | mean abs error p50 | worst image | per-pixel p99 (p50 of images) | "
             "pixels off > 64, p50 | worst image |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for size, renderers in report["summary"].items():
        for renderer, s in renderers.items():
            lines.append(f"| {size} | {renderer} | {s['images']} | {s['mean_abs_p50']} | {s['mean_abs_max']} | "
                         f"{s['p99_pixel_p50']} | {s['off_64_p50']}% | {s['off_64_max']}% |")
    sizes = [row["svg_bytes"] for row in report["rows"]]
    paths = [row["paths"] for row in report["rows"]]
    lines += ["", f"SVG files: {percentile(sizes, 50)} bytes p50 (max {max(sizes)}), "
                  f"{percentile(paths, 50)} paths p50 (max {max(paths)}), C2PA manifest included.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
