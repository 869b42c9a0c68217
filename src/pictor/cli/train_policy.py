"""`pictor train-policy-classifier`: fit the content policy's text classifier to labelled prompts."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train-policy-classifier",
                            help="fit the content policy's text classifier to labelled prompts (JSONL)")
    parser.add_argument("--data", default="training/policy-text", help="a folder of *.jsonl training files")
    parser.add_argument("--out", required=True, help="the weights file to write (safetensors)")
    parser.add_argument("--max-fpr", type=float, default=0.01,
                        help="per level, the out-of-fold false-positive rate its threshold may reach")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds for the thresholds")
    parser.add_argument("--epochs", type=int, help="training epochs (default: the trainer's)")
    parser.add_argument("--world", type=int, default=400,
                        help="also train on this many allowed prompts of the embedded model's world")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pictor.governance.text_classifier_training import (
        LEVEL_TIERS,
        TrainSettings,
        choose_threshold,
        load_examples,
        out_of_fold_scores,
        train,
        world_examples,
    )

    files = sorted(Path(args.data).glob("*.jsonl"))
    if not files:
        print(f"no *.jsonl files in {args.data}")
        return 2
    examples = load_examples(files) + world_examples(args.world, args.seed)
    settings = TrainSettings(seed=args.seed, **({"epochs": args.epochs} if args.epochs else {}))
    scores = out_of_fold_scores(examples, args.folds, settings)
    levels = {level: {"tier": tier, "threshold": round(choose_threshold(scores, examples, tier, args.max_fpr), 4)}
              for level, tier in LEVEL_TIERS.items()}
    digest = train(examples, settings).save(args.out, {"examples": len(examples), "seed": args.seed})
    print(json.dumps({"file": Path(args.out).name, "sha256": digest, "examples": len(examples),
                      "levels": levels}, indent=2))
    return 0
