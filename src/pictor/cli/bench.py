"""`pictor bench-embedded`: score a model folder with the world's judge (the model itself, no service)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench-embedded", help="score the embedded model with the world's judge")
    parser.add_argument("--model", help="model folder (default: the shipped embedded model)")
    parser.add_argument("--per-category", type=int, default=50)
    parser.add_argument("--edits", type=int, default=120)
    parser.add_argument("--inpaints", type=int, default=60)
    parser.add_argument("--max-objects", type=int, default=2, help="objects per edit/inpaint scene")
    parser.add_argument("--output", help="results path stem, e.g. bench/results/embedded-cpu")
    parser.add_argument("--title", default="Embedded model benchmark")
    parser.add_argument("--resolution", type=int, default=256, help="side of the images made and judged")
    parser.add_argument("--steps-sweep", action="store_true", help="also score 1, 2, 4, 8 and 11 decoding rounds")
    parser.set_defaults(func=run)


def _load(model: str | None):
    from pictor.embedded import WEIGHTS_DIR
    from pictor.engine.loading import load_model_folder

    return load_model_folder(model or WEIGHTS_DIR)


def run(args: argparse.Namespace) -> int:
    from pictor.embedded.evaluate import results_markdown, run_benchmark

    result = run_benchmark(_load(args.model), per_category=args.per_category, edits=args.edits,
                           inpaints=args.inpaints, max_objects=args.max_objects, resolution=args.resolution)
    if args.steps_sweep:
        from pictor.embedded.evaluate import steps_sweep

        result["steps_sweep"] = steps_sweep(_load(args.model))
    print(json.dumps({k: result[k] for k in ("scores", "timings_ms", "peak_memory_mb")}, indent=2))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).with_suffix(".json").write_text(json.dumps(result, indent=2))
        Path(args.output).with_suffix(".md").write_text(results_markdown(result, args.title))
    return 0
