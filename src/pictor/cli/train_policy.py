"""`pictor train-policy-classifier`: fit the content policy's text classifier to labelled prompts."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pictor.governance.policy import Policy

# The family-safe level may refuse more to miss less; the others hold the content policy's goal (<= 0.02).
MAX_FPR = {"strict": 0.03, "standard": 0.015, "low": 0.015}
# confirm_at, the score at which the classifier confirms a weak term's category, is the smallest of these whose
# out-of-fold recall at `standard` comes within CONFIRM_TOLERANCE of the best: each weak-term look-alike it vetoes
# frees false-positive budget for the classifier's own threshold, while a lower one keeps the weak term a second
# opinion on prompts unlike the training ones. None is above 0.2: a weak term then needs the classifier to lean
# towards its category already, and stops being a second opinion.
CONFIRM_CANDIDATES = (0.02, 0.05, 0.1, 0.2)
CONFIRM_TOLERANCE = 0.002


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train-policy-classifier",
                            help="fit the content policy's text classifier to labelled prompts (JSONL)")
    parser.add_argument("--data", default="training/policy-text", help="a folder of *.jsonl training files")
    parser.add_argument("--out", required=True, help="the weights file to write (safetensors)")
    parser.add_argument("--max-fpr", action="append", default=[], metavar="LEVEL=RATE",
                        help="the false-positive rate that the policy's rules and the classifier's out-of-fold "
                             f"scores together may reach on the training prompts at a level (default: {MAX_FPR})")
    parser.add_argument("--policy", help="the policy whose rules the thresholds complement (default: the shipped)")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds for the thresholds")
    parser.add_argument("--epochs", type=int, help="training epochs (default: the trainer's)")
    parser.add_argument("--world", type=int, default=400,
                        help="also train on this many allowed prompts of the embedded model's world")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--members", type=int, default=1,
                        help="fit this many models from seeds SEED, SEED+1, ... and average them (a linear model: "
                             "the average of their logits, at no cost when scoring)")
    parser.add_argument("--confirm-at", type=float,
                        help=f"the policy's confirm_at (default: chosen out of fold from {CONFIRM_CANDIDATES})")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pictor.governance.policy import Policy
    from pictor.governance.text_classifier_training import (
        LEVEL_TIERS,
        TrainSettings,
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
    settings = TrainSettings(seed=args.seed, members=args.members, **({"epochs": args.epochs} if args.epochs else {}))
    scores = out_of_fold_scores(examples, args.folds, settings)
    max_fpr = MAX_FPR | {level: float(rate) for level, rate in (item.split("=", 1) for item in args.max_fpr)}
    policy = Policy.load(args.policy)
    if args.confirm_at is not None:
        policy = policy.with_confirm_at(args.confirm_at)
    else:
        by_confirm = {value: level_outcome(policy.with_confirm_at(value), examples, scores, "standard",
                                           max_fpr["standard"]) for value in CONFIRM_CANDIDATES}
        # Those that keep the level's false-positive budget (the rules alone can spend more than all of it).
        kept = {value: outcome for value, outcome in by_confirm.items() if outcome["fpr"] <= max_fpr["standard"]}
        kept = kept or by_confirm
        best = max(outcome["recall"] for outcome in kept.values())
        chosen = min(value for value, outcome in kept.items() if outcome["recall"] >= best - CONFIRM_TOLERANCE)
        print("# confirm_at out of fold: " + ", ".join(f"{value} recall {outcome['recall']:.3f}"
                                                       for value, outcome in by_confirm.items()))
        policy = policy.with_confirm_at(chosen)
    levels = {level: level_outcome(policy, examples, scores, level, max_fpr[level]) for level in LEVEL_TIERS}
    digest = train(examples, settings).save(args.out, {"examples": len(examples), "seed": args.seed,
                                                             "members": args.members})
    # The policy file's section for these weights, to paste over the old one.
    print(f"# {len(examples)} training prompts; out-of-fold with the rules: "
          + ", ".join(f"{level} recall {v['recall']:.3f} at false-positive rate {v['fpr']:.3f}"
                      for level, v in levels.items()))
    print(f"[text_classifier]\nconfirm_at = {policy.confirm_at}\nfile = {json.dumps(Path(args.out).name)}\n"
          f"sha256 = \"{digest}\"\n\n[text_classifier.levels]")
    for level, v in levels.items():
        print(f"{level} = {{ tier = \"{v['tier']}\", threshold = {v['threshold']} }}")
    return 0


def level_outcome(policy: Policy, examples: list, scores, level: str, max_fpr: float) -> dict:
    """A level's tier and threshold (at most `max_fpr` of the prompts it must allow blocked, rules included), and the
    recall and false-positive rate of the policy's decisions with that threshold, out of fold: the classifier's
    gates (a parent category's confirmation, a named minor) included."""
    import numpy as np

    from pictor.governance.text_classifier import TIERS
    from pictor.governance.text_classifier_training import CATEGORIES, LEVEL_TIERS, choose_threshold

    tier = LEVEL_TIERS[level]
    column = TIERS.index(tier)
    tier_scores = [dict(zip(CATEGORIES, scores[i, :, column])) for i in range(len(examples))]
    strict_scores = [dict(zip(CATEGORIES, scores[i, :, 0])) for i in range(len(examples))]
    # What the rules block when the out-of-fold scores confirm (or not) their weaker terms.
    blocked = np.array([rules_block(policy, example.prompt, level, scores_of, strict_of)
                        for example, scores_of, strict_of in zip(examples, tier_scores, strict_scores)])
    threshold = round(choose_threshold(scores, examples, tier, max_fpr, blocked), 4)
    truth = np.array([example.should_block(tier) for example in examples])
    live = policy.with_text_threshold(level, tier, threshold)
    got = np.array([live.evaluate(example.prompt, level, text_scores=scores_of, strict_scores=strict_of).blocked
                    for example, scores_of, strict_of in zip(examples, tier_scores, strict_scores)])
    return {"tier": tier, "threshold": threshold, "recall": got[truth].mean(), "fpr": got[~truth].mean()}


def rules_block(policy: Policy, prompt: str, level: str, scores: dict[str, float],
                strict: dict[str, float]) -> bool:
    """Whether the policy's rules block the prompt at the level, given these classifier scores (at the level's tier
    and at strict)."""
    decision = policy.evaluate(prompt, level, text_scores=scores, strict_scores=strict)
    return decision.blocked and any(not rule.startswith("classifier.") for rule in decision.rule_ids)
