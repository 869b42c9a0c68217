"""The embedded model's learning curve: a run's transformer checkpoint, scored by the world's judge.

Exports the run's latest weights to a temporary folder, judges a small fixed set (generation categories,
edits and inpaints at 256 px) and appends the step and scores to a JSON file, so the curve of a long run
(or of a short probe of another candidate) can be drawn from it.

    python bench/embedded_curve.py runs/tokens --output bench/results/embedded-curve-cpu-2core.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from pictor.embedded.evaluate import (
    edit_cases,
    generation_cases,
    pipeline_callables,
    run_edits,
    run_generation,
    run_inpaint,
)
from pictor.embedded.train import export_checkpoint


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("run")
    parser.add_argument("--output", required=True)
    parser.add_argument("--per-category", type=int, default=10)
    parser.add_argument("--edits", type=int, default=36)
    parser.add_argument("--inpaints", type=int, default=24)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    step = torch.load(Path(args.run) / "transformer.pt", map_location="cpu", weights_only=False)["step"]
    with tempfile.TemporaryDirectory() as folder:
        pipe = export_checkpoint(args.run, folder)
        pipe = type(pipe).from_pretrained(folder)
    generate, edit, inpaint = pipeline_callables(pipe, resolution=256)
    started = time.perf_counter()
    scores = {**run_generation(generate, generation_cases(seed=7, per_category=args.per_category)).scores,
              **run_edits(edit, edit_cases(seed=7, count=args.edits, resolution=256), resolution=256).scores,
              **run_inpaint(inpaint, seed=7, count=args.inpaints, resolution=256).scores}
    output = Path(args.output)
    curve = json.loads(output.read_text()) if output.exists() else []
    curve.append({"step": step, "scores": scores, "seconds": time.perf_counter() - started})
    output.write_text(json.dumps(curve, indent=2) + "\n")
    print(json.dumps(curve[-1], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
