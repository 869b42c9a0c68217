"""Invisible watermark robustness: Pictor's watermark against the `invisible-watermark` dwtDctSvd baseline.

Images (1024x1024): renders of the embedded model's world (flat shapes on plain or gradient backgrounds,
fixed seeds) and the photographs that ship with scikit-image, square-cropped (whole and a corner crop) and
resized to 1024. Each is marked with a 48-bit payload drawn from a fixed seed: by Pictor's `embed` and by
`imwatermark`'s dwtDctSvd (48 bits). Then every attack, and per attack:

- detection rate: Pictor's `detected` with the right payload (a CRC-checked decode); for the baseline, which
  has no check bits, all 48 bits right;
- wrong: Pictor detections naming another payload (should be 0);
- bit accuracy of the 48 payload bits (0.5 = chance; Pictor's unchecked `decoded` bits; an image where no
  sync peak was found counts 0.5);
- unmarked: the same attack on the unmarked images, each run through `detect`: any detection is a false
  positive.

Also PSNR, embed/detect milliseconds (p50/p90/max, 1024x1024), and detection by image size (unattacked and
JPEG q75). Needs the `bench` extra (invisible-watermark, scikit-image):

    pip install -e '.[bench]'
    taskset -c 1 python bench/watermark_robustness.py [--world 26] \
        [--output bench/results/watermark-robustness-cpu-2core]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from local_server import percentile
from PIL import Image

from pictor.embedded.evaluate import machine_description
from pictor.embedded.render import render
from pictor.embedded.world import WorldConfig, sample_scene
from pictor.governance import watermark
from pictor.governance.attacks import NAMED_ATTACKS, encoded
from pictor.governance.watermark import PAYLOAD_BITS, detect, embed

SIZE = 1024
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina", "hubble_deep_field",
                  "camera", "brick", "grass", "gravel", "moon", "coins", "cell", "clock", "page", "text")


# ---------------------------------------------------------------------------------------------------------
# Images


def world_images(count: int, seed: int = 2024) -> list[tuple[str, Image.Image]]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        scene = sample_scene(rng, WorldConfig())
        out.append((f"world-{i:02d}", Image.fromarray(render(scene, SIZE).image)))
    return out


def photo_images() -> list[tuple[str, Image.Image]]:
    import skimage.data

    out = []
    for name in SKIMAGE_PHOTOS:
        array = getattr(skimage.data, name)()
        if array.ndim == 2:
            array = np.stack([array] * 3, axis=-1)
        image = Image.fromarray(np.ascontiguousarray(array[..., :3]).astype(np.uint8))
        w, h = image.size
        side = min(w, h)
        whole = image.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
        corner_side = round(side * 0.6)
        corner = image.crop((w - corner_side, 0, w, corner_side))
        for tag, crop in (("whole", whole), ("corner", corner)):
            out.append((f"{name}-{tag}", crop.resize((SIZE, SIZE), Image.LANCZOS)))
    return out


# ---------------------------------------------------------------------------------------------------------
# Attacks


ATTACKS: dict[str, Callable[[Image.Image], Image.Image]] = {"none": lambda im: im, **NAMED_ATTACKS}


# ---------------------------------------------------------------------------------------------------------
# The baseline


class Baseline:
    """invisible-watermark's dwtDctSvd with 48 bits (BGR arrays, as the library expects)."""

    method = "dwtDctSvd"

    def __init__(self) -> None:
        from imwatermark import WatermarkDecoder, WatermarkEncoder

        self._encoder_cls, self._decoder = WatermarkEncoder, WatermarkDecoder("bits", PAYLOAD_BITS)

    def embed(self, image: Image.Image, payload: int) -> Image.Image:
        encoder = self._encoder_cls()
        encoder.set_watermark("bits", [int(b) for b in format(payload, f"0{PAYLOAD_BITS}b")])
        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[..., ::-1])
        out = encoder.encode(bgr, self.method)
        return Image.fromarray(np.ascontiguousarray(out[..., ::-1]))

    def decode(self, image: Image.Image) -> int | None:
        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[..., ::-1])
        try:
            bits = self._decoder.decode(bgr, self.method)
        except Exception:  # noqa: BLE001 - the library fails on some sizes; count it as no decode
            return None
        return int("".join(str(int(bool(b))) for b in bits), 2)


# ---------------------------------------------------------------------------------------------------------


def bit_accuracy(decoded: int | None, payload: int) -> float:
    if decoded is None:
        return 0.5
    return 1.0 - bin((decoded ^ payload) & ((1 << PAYLOAD_BITS) - 1)).count("1") / PAYLOAD_BITS


def psnr(a: Image.Image, b: Image.Image) -> float:
    x = np.asarray(a.convert("RGB"), dtype=np.float64)
    y = np.asarray(b.convert("RGB"), dtype=np.float64)
    return float(10 * np.log10(255.0**2 / max(np.mean((x - y) ** 2), 1e-12)))


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, (time.perf_counter() - start) * 1000


def run(world: int, with_baseline: bool, photos: int | None = None) -> dict:
    images = world_images(world) + photo_images()[:photos]
    rng = np.random.default_rng(7)
    payloads = [int(rng.integers(0, 1 << PAYLOAD_BITS, dtype=np.uint64)) for _ in images]
    baseline = Baseline() if with_baseline else None

    ours, theirs = [], []
    embed_ms, base_embed_ms, psnr_ours, psnr_base = [], [], [], []
    for (_, image), payload in zip(images, payloads):
        marked, ms = timed(lambda image=image, payload=payload: embed(image, payload))
        ours.append(marked)
        embed_ms.append(ms)
        psnr_ours.append(psnr(image, marked))
        if baseline:
            marked_b, ms = timed(lambda image=image, payload=payload: baseline.embed(image, payload))
            theirs.append(marked_b)
            base_embed_ms.append(ms)
            psnr_base.append(psnr(image, marked_b))

    per_attack = {}
    detect_ms, base_decode_ms = [], []
    for attack, fn in ATTACKS.items():
        row = {"detected": 0, "wrong": 0, "bit_accuracy": [], "unmarked_detected": 0, "failures": [],
               "baseline_exact": 0, "baseline_bit_accuracy": []}
        for (name, image), payload, marked, i in zip(images, payloads, ours, range(len(images))):
            found, ms = timed(lambda marked=marked, fn=fn: detect(fn(marked)))
            if attack == "none":
                detect_ms.append(ms)
            if found.detected and found.payload == payload:
                row["detected"] += 1
            else:
                row["failures"].append(name)
                if found.detected:
                    row["wrong"] += 1
            row["bit_accuracy"].append(bit_accuracy(found.decoded, payload))
            if detect(fn(image)).detected:
                row["unmarked_detected"] += 1
            if baseline:
                got, ms = timed(lambda i=i, fn=fn: baseline.decode(fn(theirs[i])))
                if attack == "none":
                    base_decode_ms.append(ms)
                row["baseline_exact"] += int(got == payload)
                row["baseline_bit_accuracy"].append(bit_accuracy(got, payload))
        n = len(images)
        per_attack[attack] = {
            "images": n,
            "detection_rate": row["detected"] / n,
            "wrong_payload": row["wrong"],
            "bit_accuracy": statistics.mean(row["bit_accuracy"]),
            "unmarked_false_positives": row["unmarked_detected"],
            "failures": row["failures"],
            **({"baseline_detection_rate": row["baseline_exact"] / n,
                "baseline_bit_accuracy": statistics.mean(row["baseline_bit_accuracy"])} if baseline else {}),
        }
        print(f"{attack:28s} ours {per_attack[attack]['detection_rate']:.2f} "
              f"bits {per_attack[attack]['bit_accuracy']:.3f}"
              + (f" | dwtDctSvd {per_attack[attack]['baseline_detection_rate']:.2f} "
                 f"bits {per_attack[attack]['baseline_bit_accuracy']:.3f}" if baseline else "")
              + f" | unmarked FP {row['unmarked_detected']}", flush=True)

    # Detection by size: the same images resized, unattacked and after JPEG q75.
    by_size = {}
    for size in ((256, 256), (384, 384), (512, 512), (1536, 1024)):
        counts = {"none": 0, "JPEG q75": 0}
        for (_, image), payload in zip(images, payloads):
            marked = embed(image.resize(size, Image.LANCZOS), payload)
            counts["none"] += int(detect(marked).payload == payload)
            counts["JPEG q75"] += int(detect(encoded(marked, "JPEG", 75)).payload == payload)
        by_size[f"{size[0]}x{size[1]}"] = {k: v / len(images) for k, v in counts.items()}
        print(f"size {size}: {by_size[f'{size[0]}x{size[1]}']}", flush=True)

    def stats(values: list[float]) -> dict:
        return {"p50": round(statistics.median(values), 2), "p90": round(percentile(values, 90), 2),
                "max": round(max(values), 2)} if values else {}

    return {
        "machine": machine_description(),
        "pinning": "pinned to one core with `taskset -c 1` while the other core trained the embedded model",
        "images": {"total": len(images), "world_renders": world, "skimage_photos": len(images) - world,
                   "size": f"{SIZE}x{SIZE}"},
        "settings": {"payload_bits": PAYLOAD_BITS, "crc_bits": watermark.CRC_BITS,
                     "strength": watermark.DEFAULT_STRENGTH, "max_attempts": watermark.MAX_ATTEMPTS,
                     "false_positive_bound": watermark.MAX_ATTEMPTS / 2**watermark.CRC_BITS},
        "psnr": {"ours_min": round(min(psnr_ours), 2), "ours_mean": round(statistics.mean(psnr_ours), 2),
                 **({"baseline_min": round(min(psnr_base), 2), "baseline_mean": round(statistics.mean(psnr_base), 2)}
                    if baseline else {})},
        "ms": {"embed": stats(embed_ms), "detect": stats(detect_ms),
               **({"baseline_embed": stats(base_embed_ms), "baseline_decode": stats(base_decode_ms)}
                  if baseline else {})},
        "attacks": per_attack,
        "by_size": by_size,
    }


def markdown(result: dict) -> str:
    lines = [
        "# Invisible watermark robustness (CPU)",
        "",
        f"Machine: {result['machine']}. Ran {result['pinning']}; times are single-core.",
        "",
        f"{result['images']['total']} images at {result['images']['size']}: {result['images']['world_renders']} "
        f"renders of the embedded model's world and {result['images']['skimage_photos']} scikit-image photographs "
        "(whole and corner crops, resized). One random 48-bit payload per image.",
        "",
        "Pictor: detected = a decode that passes the 24-bit CRC with the right payload "
        f"(false-positive bound {result['settings']['false_positive_bound']:.1e} per image: "
        f"{result['settings']['max_attempts']} decodes x 2^-24). Baseline: `invisible-watermark` dwtDctSvd with "
        "48 bits, detected = all 48 bits right (it has no check bits). Bit accuracy over the 48 payload bits "
        "(0.5 = chance). 'Unmarked FP': detections of the same attack on the unmarked images.",
        "",
        "| attack | Pictor detection | Pictor bit acc. | wrong payload | dwtDctSvd detection | dwtDctSvd bit acc. "
        "| unmarked FP |",
        "|---|---|---|---|---|---|---|",
    ]
    for attack, row in result["attacks"].items():
        base = (f"{row['baseline_detection_rate']:.2f} | {row['baseline_bit_accuracy']:.3f}"
                if "baseline_detection_rate" in row else "- | -")
        lines.append(f"| {attack} | {row['detection_rate']:.2f} | {row['bit_accuracy']:.3f} | {row['wrong_payload']} "
                     f"| {base} | {row['unmarked_false_positives']}/{row['images']} |")
    ms, ps = result["ms"], result["psnr"]
    lines += [
        "",
        "| | Pictor | dwtDctSvd |",
        "|---|---|---|",
        f"| PSNR min / mean (dB) | {ps['ours_min']} / {ps['ours_mean']} | "
        f"{ps.get('baseline_min', '-')} / {ps.get('baseline_mean', '-')} |",
        f"| embed ms p50 / p90 / max | {ms['embed']['p50']} / {ms['embed']['p90']} / {ms['embed']['max']} | "
        + (f"{ms['baseline_embed']['p50']} / {ms['baseline_embed']['p90']} / {ms['baseline_embed']['max']} |"
           if "baseline_embed" in ms else "- |"),
        f"| detect ms p50 / p90 / max (unattacked) | {ms['detect']['p50']} / {ms['detect']['p90']} / "
        f"{ms['detect']['max']} | "
        + (f"{ms['baseline_decode']['p50']} / {ms['baseline_decode']['p90']} / {ms['baseline_decode']['max']} |"
           if "baseline_decode" in ms else "- |"),
        "",
        "Pictor detection rate by image size (the same images resized before marking):",
        "",
        "| size | unattacked | JPEG q75 |",
        "|---|---|---|",
    ]
    for size, row in result["by_size"].items():
        lines.append(f"| {size} | {row['none']:.2f} | {row['JPEG q75']:.2f} |")
    failures = {a: r["failures"] for a, r in result["attacks"].items() if r["failures"]}
    if failures:
        lines += ["", "Pictor misses: " + "; ".join(f"{a}: {', '.join(f)}" for a, f in failures.items()) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=int, default=26, help="embedded-world renders (photos: 34 from skimage)")
    parser.add_argument("--photos", type=int, default=None, help="use only the first N photos (smoke runs)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--output", default="bench/results/watermark-robustness-cpu-2core")
    args = parser.parse_args()
    result = run(args.world, not args.no_baseline, args.photos)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
