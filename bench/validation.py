"""Output validation benchmark: adherence of returned images with validation off vs on (best of k), embedded model.

Prompts: the multi-object categories of the embedded benchmark (`pictor.embedded.evaluate.generation_cases`:
two objects, counting, position, colour binding), each with its fixed seed. For every prompt:
- off: the image of seed s (what complexity low/medium returns);
- on: candidates of seeds s, s+1, ..., s+k-1 (the service's seeds for n=1), each scored by the validator
  (`pictor.service.validation.EmbeddedJudgeValidator`: the prompt parsed by the world's grammar, the image read back
  by the judge), the best returned (`validation.choose`, as complexity=high does).
"Fully correct" is the embedded benchmark's own criterion on the case's ground-truth spec (exactly the objects asked
for, each with its attributes, the relation if said, and the background), not the validator's parse of the prompt.
Compute: wall time of the model runs plus the validator's scoring, on vs off, on one core.

Run:  taskset -c 1 python bench/validation.py --per-category 25 --candidates 3 [--out bench/results/NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

from pictor.embedded.evaluate import generation_cases, machine_description, spec_satisfied
from pictor.embedded.judge import background_colours, detect
from pictor.engine.embedded_backend import EmbeddedBackend
from pictor.engine.protocol import EngineRequest
from pictor.service.images import STEPS_BY_QUALITY
from pictor.service.validation import EmbeddedJudgeValidator, choose

CATEGORIES = ("two_objects", "counting", "position", "colour_binding")


def correct(case, image) -> bool:
    detection = detect(image)
    ok = spec_satisfied(case.spec, detection.objects)
    if case.spec.background is not None:
        ok = ok and background_colours(detection) == case.spec.background.colours
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-category", type=int, default=25)
    parser.add_argument("--candidates", type=int, default=3)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--out", default="bench/results/validation-cpu-2core")
    args = parser.parse_args()
    torch.set_num_threads(1)
    backend = EmbeddedBackend()
    validator = EmbeddedJudgeValidator()
    steps = STEPS_BY_QUALITY["medium"]
    cases = [c for c in generation_cases(seed=0, per_category=args.per_category) if c.category in CATEGORIES]
    started = time.perf_counter()
    model_s = {"off": 0.0, "on": 0.0}
    judge_s = 0.0
    rows = []
    per_category: dict[str, dict[str, list[bool]]] = defaultdict(lambda: {"off": [], "on": []})
    for index, case in enumerate(cases):
        seed = 1000 + index
        images = []
        for j in range(args.candidates):
            request = EngineRequest("generate", case.prompt, args.size, args.size, seed + j, steps=steps)
            t0 = time.perf_counter()
            images.append(backend.run([request])[0].image)
            spent = time.perf_counter() - t0
            model_s["on"] += spent
            if j == 0:
                model_s["off"] += spent
        t0 = time.perf_counter()
        verdicts = [validator.score(image, case.prompt, "generate") for image in images]
        best = choose(verdicts)
        judge_s += time.perf_counter() - t0
        off, on = correct(case, images[0]), correct(case, images[best])
        per_category[case.category]["off"].append(off)
        per_category[case.category]["on"].append(on)
        rows.append({"category": case.category, "prompt": case.prompt, "seed": seed, "chosen": best,
                     "scores": [round(v.score or 0.0, 4) for v in verdicts], "correct_off": off, "correct_on": on})
    total = {mode: [r[f"correct_{mode}"] for r in rows] for mode in ("off", "on")}
    share = {mode: sum(values) / len(values) for mode, values in total.items()}
    compute_ratio = (model_s["on"] + judge_s) / model_s["off"]
    result = {
        "machine": machine_description(), "prompts": len(rows), "candidates": args.candidates, "size": args.size,
        "steps": steps, "share_fully_correct": share, "gain_points": round(100 * (share["on"] - share["off"]), 1),
        "compute_ratio": round(compute_ratio, 3), "model_seconds": model_s, "validator_seconds": judge_s,
        "validator_ms_per_image": round(1000 * judge_s / (len(rows) * args.candidates), 2),
        "per_category": {c: {m: sum(v) / len(v) for m, v in modes.items()} | {"prompts": len(modes["off"])}
                         for c, modes in per_category.items()},
        "chosen_not_first": sum(r["chosen"] != 0 for r in rows),
        "worse_than_off": sum(r["correct_off"] and not r["correct_on"] for r in rows),
        "wall_seconds": round(time.perf_counter() - started, 1), "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(markdown(result, args))
    print(markdown(result, args))
    return 0


def markdown(result: dict, args: argparse.Namespace) -> str:
    share = result["share_fully_correct"]
    lines = [
        f"# Output validation: best of {result['candidates']} vs the first image (embedded model, "
        f"{result['size']}x{result['size']})", "",
        f"Machine: {result['machine']}. Process pinned to one core (`taskset -c 1`), torch with 1 thread.", "",
        f"{result['prompts']} multi-object prompts ({args.per_category} per category from "
        "`pictor.embedded.evaluate.generation_cases(seed=0)`: two objects, counting, position, colour binding), "
        f"fixed seeds (prompt i: seed 1000 + i), {result['steps']} steps (quality medium). Off: the image of seed s. "
        f"On: seeds s .. s+{result['candidates'] - 1}, each scored by `EmbeddedJudgeValidator`, the best returned "
        "(what `complexity=high` does). Fully correct: the embedded benchmark's criterion on the ground-truth spec.",
        "",
        "| | validation off | validation on (best of k) |",
        "|---|---:|---:|",
        f"| share fully correct | {100 * share['off']:.1f}% | {100 * share['on']:.1f}% |",
    ]
    for category, values in result["per_category"].items():
        lines.append(f"| {category} ({values['prompts']}) | {100 * values['off']:.1f}% | {100 * values['on']:.1f}% |")
    lines += [
        "",
        f"Gain: **{result['gain_points']:+.1f} points** of fully correct images, at **{result['compute_ratio']:.2f}x** "
        f"the compute (model {result['model_seconds']['on']:.1f} s vs {result['model_seconds']['off']:.1f} s, plus "
        f"{result['validator_seconds']:.1f} s of validation: {result['validator_ms_per_image']} ms per image scored).",
        f"The validator chose another candidate than the first for {result['chosen_not_first']} prompts; "
        f"{result['worse_than_off']} prompts were correct off and not on (the judge's score favoured a wrong one).",
        "", f"Wall time: {result['wall_seconds']} s. Rows (prompt, seed, scores, choice) in the JSON file.", "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
