"""Output validation benchmark: adherence of returned images with validation off vs on, embedded model.

Prompts: the multi-object categories of the embedded benchmark (`pictor.embedded.evaluate.generation_cases`:
two objects, counting, position, colour binding), each with its fixed seed s (prompt i: 1000 + i). Strategies, each
on the same prompts and seeds (candidate j has seed s + j, as the service gives it for n=1):
- off: the image of seed s at the tier's steps (what complexity low/medium returns);
- best of 3: seeds s .. s+2 at the tier's steps, all made, the best returned (Pictor's `candidates: 3`);
- complexity=high: the budgeted search of `pictor.service.validation.search_for("high", ...)` as
  `ImageService._search` runs it for one image: cheap candidates one after another until the validator passes one or
  their share of the budget is spent, the best kept; when none passed, repairs (`EmbeddedSceneReader.propose_repair`:
  the one wrong object of the best repairable candidate repainted by the model's inpainting) until one passes or the
  budget is spent;
- extra `--search STEPS:BUDGET[:refine|:repairs=R]` variants (candidate steps, budget in images at the tier's steps;
  refine: a passing cheap candidate's seed remade at the tier's steps, kept if it passes too, when the budget holds
  it; repairs=R: R of the budget's runs kept for repairs).
Every candidate is scored by `EmbeddedSceneReader` (the prompt parsed by the world's grammar, the image read back
by the judge); `validation.choose` picks. "Fully correct" is the embedded benchmark's own criterion on the case's
ground-truth spec (exactly the objects asked for, each with its attributes, the relation if said, and the
background), not the validator's parse of the prompt.

Compute = denoising steps actually run (the service's `usage.compute.denoising_steps`), relative to off. Each
(prompt, seed, steps) image is made once and shared by the strategies that use it; its model time is measured, and
a strategy's model seconds are the sum over the images it used (validation time is reported apart).

Run:  taskset -c 1 python bench/validation.py --per-category 25 [--search 4:3] [--out bench/results/NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pictor.embedded.evaluate import Case, generation_cases, machine_description, spec_satisfied
from pictor.embedded.judge import background_colours, detect
from pictor.engine.embedded_backend import EmbeddedBackend
from pictor.engine.embedded_scene import EmbeddedSceneReader
from pictor.engine.protocol import EngineRequest
from pictor.service.masks import keep_outside_mask
from pictor.service.planning import STEPS_BY_QUALITY
from pictor.service.validation import Search, Verdict, choose, search_for

CATEGORIES = ("two_objects", "counting", "position", "colour_binding")


def correct(case: Case, image) -> bool:
    detection = detect(image)
    ok = spec_satisfied(case.spec, detection.objects)
    if case.spec.background is not None:
        ok = ok and background_colours(detection) == case.spec.background.colours
    return ok


class Pool:
    """Images made once per (prompt, seed, steps), with their verdict, correctness and model time."""

    def __init__(self, backend: EmbeddedBackend, size: int):
        self.backend, self.size, self.validator = backend, size, EmbeddedSceneReader()
        self.made: dict[tuple[int, int, int], tuple[Verdict, bool, float]] = {}
        self.images: dict[tuple[int, int, int], Image.Image] = {}
        self.repaired: dict[tuple, tuple[Verdict, bool, float]] = {}
        self.judge_s = 0.0

    def get(self, index: int, case: Case, seed: int, steps: int) -> tuple[Verdict, bool, float]:
        key = (index, seed, steps)
        if key not in self.made:
            request = EngineRequest("generate", case.prompt, self.size, self.size, seed, steps=steps)
            t0 = time.perf_counter()
            image = self.backend.run([request])[0].image
            spent = time.perf_counter() - t0
            t0 = time.perf_counter()
            verdict = self.validator.score(image, case.prompt, "generate")
            self.judge_s += time.perf_counter() - t0
            self.made[key] = (verdict, correct(case, image), spent)
            self.images[key] = image
        return self.made[key]

    def repair(self, index: int, case: Case, source: tuple[int, int, int], seed: int,
               steps: int) -> tuple[Verdict, bool, float] | None:
        """The repair of candidate `source` with `seed` as the service makes it (None: nothing to repair)."""
        image = self.images[source]
        fix = self.validator.propose_repair(image, case.prompt)
        if fix is None:
            return None
        key = (source, seed, steps)
        if key not in self.repaired:
            request = EngineRequest("inpaint", fix.prompt, self.size, self.size, seed, images=[image],
                                    mask=fix.mask(image.size), steps=steps)
            t0 = time.perf_counter()
            made = self.backend.run([request])[0].image
            spent = time.perf_counter() - t0
            fixed = keep_outside_mask(made, image, fix.mask(image.size))
            t0 = time.perf_counter()
            verdict = self.validator.score(fixed, case.prompt, "generate")
            self.judge_s += time.perf_counter() - t0
            self.repaired[key] = (verdict, correct(case, np.asarray(fixed.convert("RGB"))), spent)
        return self.repaired[key]


def run_search(search: Search, refine: bool, pool: Pool, index: int, case: Case, seed: int) -> dict:
    """One image's search as `ImageService._search` runs it (n=1): returns the outcome and what it spent."""
    verdicts, made, steps, seconds = [], [], 0, 0.0
    for j in range(search.candidates):
        verdict, ok, spent = pool.get(index, case, seed + j, search.candidate_steps)
        verdicts.append(verdict)
        made.append(ok)
        steps, seconds = steps + search.candidate_steps, seconds + spent
        if search.early_stop and verdict.status == "passed":
            break
    best = choose(verdicts)
    ok, refined, repaired = made[best], None, None
    if (refine and verdicts[best].status == "passed" and search.candidate_steps < search.full_steps
            and steps + search.full_steps <= search.budget_steps):
        verdict, full_ok, spent = pool.get(index, case, seed + best, search.full_steps)
        steps, seconds = steps + search.full_steps, seconds + spent
        refined = verdict.status == "passed"
        if refined:
            ok = full_ok
    if search.repairs and not any(v.status == "passed" for v in verdicts):
        order = sorted(range(len(verdicts)), key=lambda k: (-(verdicts[k].score or 0.0), k))
        source = next((k for k in order if pool.validator.propose_repair(
            pool.images[(index, seed + k, search.candidate_steps)], case.prompt) is not None), None)
        repaired = False if source is not None else None
        for attempt in range(search.repairs if source is not None else 0):
            got = pool.repair(index, case, (index, seed + source, search.candidate_steps),
                              seed + search.candidates + attempt, search.repair_steps)
            assert got is not None
            verdict, fixed_ok, spent = got
            steps, seconds = steps + search.repair_steps, seconds + spent
            if verdict.status == "passed":
                ok, repaired = fixed_ok, True
                break
    return {"correct": ok, "steps": steps, "seconds": seconds, "chosen": best, "candidates": len(verdicts),
            "passed": verdicts[best].status == "passed", "refined": refined, "repaired": repaired}


def strategies(full: int, extra: list[str]) -> dict[str, tuple[Search, bool]]:
    """name -> (search, refine)."""
    found = {"off": (Search(1, full, full, full), False),
             "best of 3 (candidates=3)": (Search(3, full, full, 3 * full), False),
             "complexity=high (shipped)": (search_for("high", None, full, (1, 50), True), False)}
    for text in extra:
        parts = text.split(":")
        cheap, budget = int(parts[0]), int(parts[1]) * full
        refine = "refine" in parts[2:]
        repairs = next((int(p.split("=")[1]) for p in parts[2:] if p.startswith("repairs=")), 0)
        name = f"search {cheap} steps, budget {parts[1]}x" + (", refine" if refine else "") + (
            f", {repairs} repairs" if repairs else "")
        found[name] = (Search(budget // cheap - repairs, cheap, full, budget, early_stop=True, repairs=repairs,
                              repair_steps=cheap), refine)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-category", type=int, default=25)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--quality", default="medium")
    parser.add_argument("--search", action="append", default=[], help="extra variant STEPS:BUDGET[:refine][:repairs=R]")
    parser.add_argument("--out", default="bench/results/validation-cpu-2core")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pool = Pool(EmbeddedBackend(), args.size)
    full = STEPS_BY_QUALITY[args.quality]
    plans = strategies(full, args.search)
    cases = [c for c in generation_cases(seed=0, per_category=args.per_category) if c.category in CATEGORIES]
    started = time.perf_counter()
    rows = []
    for index, case in enumerate(cases):
        seed = 1000 + index
        outcome = {name: run_search(search, refine, pool, index, case, seed)
                   for name, (search, refine) in plans.items()}
        rows.append({"category": case.category, "prompt": case.prompt, "seed": seed, "strategies": outcome})
    names = list(plans)
    off_steps = sum(r["strategies"]["off"]["steps"] for r in rows)
    off_seconds = sum(r["strategies"]["off"]["seconds"] for r in rows)
    summary = {}
    for name in names:
        got = [r["strategies"][name] for r in rows]
        per_category: dict[str, list[bool]] = defaultdict(list)
        for row, item in zip(rows, got):
            per_category[row["category"]].append(item["correct"])
        summary[name] = {
            "search": {"candidates": plans[name][0].candidates, "candidate_steps": plans[name][0].candidate_steps,
                       "budget_steps": plans[name][0].budget_steps, "early_stop": plans[name][0].early_stop,
                       "repairs": plans[name][0].repairs, "refine": plans[name][1]},
            "share_fully_correct": sum(g["correct"] for g in got) / len(got),
            "per_category": {c: sum(v) / len(v) for c, v in per_category.items()},
            "denoising_steps": sum(g["steps"] for g in got),
            "compute_ratio": round(sum(g["steps"] for g in got) / off_steps, 3),
            "model_seconds": round(sum(g["seconds"] for g in got), 2),
            "time_ratio": round(sum(g["seconds"] for g in got) / off_seconds, 3),
            "mean_candidates": round(sum(g["candidates"] for g in got) / len(got), 2),
            "refined": sum(g["refined"] is True for g in got),
            "refine_rejected": sum(g["refined"] is False for g in got),
            "repaired": sum(g["repaired"] is True for g in got),
            "repair_failed": sum(g["repaired"] is False for g in got),
            "worse_than_off": sum(r["strategies"]["off"]["correct"] and not g["correct"] for r, g in zip(rows, got)),
        }
        summary[name]["gain_points"] = round(
            100 * (summary[name]["share_fully_correct"] - summary["off"]["share_fully_correct"]), 1)
    result = {
        "machine": machine_description(), "prompts": len(rows), "size": args.size, "quality": args.quality,
        "full_steps": full, "compute_definition": "denoising steps actually run (usage.compute.denoising_steps)",
        "strategies": summary, "images_made": len(pool.made), "validator_seconds": round(pool.judge_s, 2),
        "validator_ms_per_image": round(1000 * pool.judge_s / max(1, len(pool.made) + len(pool.repaired)), 2),
        "judge_agreement": judge_agreement(pool),
        "repairs_made": len(pool.repaired), "wall_seconds": round(time.perf_counter() - started, 1), "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
    out.with_suffix(".md").write_text(markdown(result, args))
    print(markdown(result, args))
    return 0


def judge_agreement(pool: Pool) -> dict:
    """How often the validator's pass (its parse of the prompt) and the ground-truth criterion agree."""
    pairs = [(v.status == "passed", ok) for v, ok, _ in [*pool.made.values(), *pool.repaired.values()]]
    return {"both": sum(a and b for a, b in pairs), "validator_only": sum(a and not b for a, b in pairs),
            "truth_only": sum(b and not a for a, b in pairs), "images": len(pairs)}


def markdown(result: dict, args: argparse.Namespace) -> str:
    strategies_ = result["strategies"]
    names = list(strategies_)
    categories = list(strategies_["off"]["per_category"])
    lines = [
        f"# Output validation: validation off vs on (embedded model, {result['size']}x{result['size']}, "
        f"quality {result['quality']} = {result['full_steps']} steps)", "",
        f"Machine: {result['machine']}. Process pinned to one core (`taskset -c 1`), torch with 1 thread.", "",
        f"Command: `taskset -c 1 python bench/validation.py --per-category {args.per_category}"
        + "".join(f" --search {s}" for s in args.search) + f" --out {args.out}`", "",
        f"{result['prompts']} multi-object prompts ({args.per_category} per category from "
        "`pictor.embedded.evaluate.generation_cases(seed=0)`: two objects, counting, position, colour binding), "
        "fixed seeds (prompt i: seed 1000 + i; candidate j: seed + j). Fully correct: the embedded benchmark's "
        "criterion on the ground-truth spec. Compute: denoising steps actually run (what `usage.compute."
        "denoising_steps` reports), relative to off; model time measured alongside.", "",
        "| strategy | candidates x steps (budget) | fully correct | gain | compute (steps) | model time | "
        "mean candidates | " + " | ".join(categories) + " |",
        "|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(categories),
    ]
    for name in names:
        s = strategies_[name]
        search = s["search"]
        shape = f"<= {search['candidates']} x {search['candidate_steps']}"
        shape += f" ({search['budget_steps']})"
        if search["early_stop"]:
            shape += ", stop at pass"
        if search["refine"]:
            shape += ", refine"
        if search["repairs"]:
            shape += f", then <= {search['repairs']} repairs"
        lines.append(f"| {name} | {shape} | {100 * s['share_fully_correct']:.1f}% | {s['gain_points']:+.1f} | "
                     f"{s['compute_ratio']:.2f}x | {s['time_ratio']:.2f}x | {s['mean_candidates']} | "
                     + " | ".join(f"{100 * s['per_category'][c]:.0f}%" for c in categories) + " |")
    agreement = result["judge_agreement"]
    lines += [
        "",
        f"Validator vs ground truth over the {agreement['images']} images made (repairs included): both pass "
        f"{agreement['both']}, validator only {agreement['validator_only']}, ground truth only "
        f"{agreement['truth_only']} ({result['validator_ms_per_image']} ms per image scored, "
        f"{result['validator_seconds']} s in all, not counted in compute).",
        "Refinements (a passing cheap candidate remade at the tier's steps): "
        + "; ".join(f"{name}: {s['refined']} kept, {s['refine_rejected']} failed (cheap one kept)"
                    for name, s in strategies_.items() if s["search"]["refine"]) + ".",
        "Repairs (when no candidate passed: the best repairable candidate's one wrong object repainted by the model's "
        "inpainting, returned only if it passes): "
        + "; ".join(f"{name}: {s['repaired']} passed, {s['repair_failed']} tried without a pass"
                    for name, s in strategies_.items() if s["search"]["repairs"]) + ".",
        "Worse than off (correct off, not with the strategy): "
        + ", ".join(f"{name} {s['worse_than_off']}" for name, s in strategies_.items() if name != "off") + ".",
        "", f"Wall time: {result['wall_seconds']} s ({result['images_made']} images and {result['repairs_made']} "
        "repairs made). Rows in the JSON file.", "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
