"""Content policy evaluation: precision, recall and false-positive rate of the text policy on a labelled set.

Each line of bench/data/policy-eval.jsonl is one request: `prompt` (and optionally `negative_prompt`),
`block` = the least restrictive level that must still block it (`all`: strict, standard and low;
`standard`: strict and standard; `strict`: strict only; `none`: never), the expected `category`, and the
`subset` (plain, obfuscated, multilingual, look-alike). A third of the set is held out by a hash of the
item id (`held_out`); the terms were tuned only on the other two thirds, and this script prints the
held-out mistakes only with --show-held-out.

    python bench/policy_eval.py [--policy PATH] [--output bench/results/policy-eval] [--show-held-out]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import time
from pathlib import Path

from local_server import percentile

from pictor.governance.policy import Policy

LEVELS = ("strict", "standard", "low")
SUBSET_ORDER = ("plain", "obfuscated", "symbols", "described", "multilingual", "look-alike", "benign")
BLOCKS_AT = {"all": {"strict", "standard", "low"}, "standard": {"strict", "standard"}, "strict": {"strict"},
             "none": set()}
DATA = Path(__file__).parent / "data" / "policy-eval.jsonl"
GOAL = {"recall": 0.97, "fpr": 0.02}


def held_out(item_id: str) -> bool:
    """A fixed third of the items, chosen by hash so that adding items does not move the others."""
    return int(hashlib.sha256(item_id.encode()).hexdigest()[:8], 16) % 3 == 0


def load(path: Path) -> list[dict]:
    items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for item in items:
        if item["block"] not in BLOCKS_AT or item["subset"] not in SUBSET_ORDER:
            raise ValueError(f"bad item {item['id']}")
        item["held_out"] = held_out(item["id"])
    return items


def scores(rows: list[tuple[bool, bool]]) -> dict:
    """rows of (should block, blocked) -> counts, precision, recall, false-positive rate."""
    tp = sum(1 for truth, got in rows if truth and got)
    fp = sum(1 for truth, got in rows if not truth and got)
    fn = sum(1 for truth, got in rows if truth and not got)
    tn = sum(1 for truth, got in rows if not truth and not got)
    return {"n": len(rows), "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "precision": round(tp / (tp + fp), 4) if tp + fp else None,
            "recall": round(tp / (tp + fn), 4) if tp + fn else None,
            "fpr": round(fp / (fp + tn), 4) if fp + tn else None}


def texts_of(item: dict) -> dict[str, str]:
    texts = {"prompt": item["prompt"]}
    if "negative_prompt" in item:
        texts["negative_prompt"] = item["negative_prompt"]
    return texts


def timing(policy: Policy, items: list[dict], repeats: int) -> dict:
    """Per-request evaluation time at `standard` over the set, and a few 32,000-character inputs."""
    per_item = []
    for _ in range(repeats):
        for item in items:
            texts = texts_of(item)
            start = time.perf_counter()
            policy.evaluate(texts, "standard", "input")
            per_item.append((time.perf_counter() - start) * 1000)
    rng = random.Random(0)
    benign = [item["prompt"] for item in items if item["block"] == "none"]
    words = [word for text in benign for word in text.split()]
    long_inputs = {
        "32k benign prompt text": " ".join(rng.choice(words) for _ in range(8000))[:32000],
        "32k random letters as words": " ".join(
            "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
            for _ in range(6000))[:32000],
        "32k spaced single letters": ("s e x " * 6000)[:32000],
        "32k leetspeak words": ("k1ll 4nd 5t34l th3 b00k " * 2000)[:32000],
        "32k one repeated letter": "a" * 32000,
        "32k zalgo marks": "n\u0301" * 16000,
        "32k terms and allow-list phrases": ("nude kids gore blood chicken breast gore-tex " * 800)[:32000],
        "32k combination operands": ("jews as rats " * 3000)[:32000],
    }
    long = {}
    for name, text in long_inputs.items():
        runs = []
        for _ in range(9):
            start = time.perf_counter()
            policy.evaluate({"prompt": text}, "standard", "input")
            runs.append((time.perf_counter() - start) * 1000)
        long[name] = {"chars": len(text), "median_ms": round(statistics.median(runs), 2), "min_ms": round(min(runs), 2)}
    return {"per_request_ms": {"p50": round(percentile(per_item, 50), 3), "p99": round(percentile(per_item, 99), 3),
                               "max": round(max(per_item), 3), "n": len(per_item)},
            "long_inputs": long}


def run(policy: Policy, items: list[dict], show_held_out: bool) -> dict:
    subsets = [name for name in SUBSET_ORDER if any(item["subset"] == name for item in items)]
    decisions = {level: {} for level in LEVELS}
    for item in items:
        for level in LEVELS:
            decisions[level][item["id"]] = policy.evaluate(texts_of(item), level, "input")
    result: dict = {"levels": {}}
    mistakes = []
    for level in LEVELS:
        def rows(selected, level=level):
            return [(level in BLOCKS_AT[item["block"]], decisions[level][item["id"]].blocked) for item in selected]
        dev = [item for item in items if not item["held_out"]]
        out = [item for item in items if item["held_out"]]
        entry = {"all": scores(rows(items)), "development": scores(rows(dev)), "held_out": scores(rows(out)),
                 "subsets": {subset: scores(rows([item for item in items if item["subset"] == subset]))
                             for subset in subsets},
                 "held_out_subsets": {subset: scores(rows([item for item in out if item["subset"] == subset]))
                                      for subset in subsets}}
        caught = [item for item in items if level in BLOCKS_AT[item["block"]] and decisions[level][item["id"]].blocked]
        agree = sum(1 for item in caught if any(c == item["category"] or c.startswith(item["category"] + "/")
                                                for c in decisions[level][item["id"]].categories))
        entry["category_agreement"] = round(agree / len(caught), 4) if caught else None
        result["levels"][level] = entry
        for item in items:
            truth = level in BLOCKS_AT[item["block"]]
            decision = decisions[level][item["id"]]
            if truth != decision.blocked and (show_held_out or not item["held_out"]):
                mistakes.append({"id": item["id"], "level": level, "held_out": item["held_out"],
                                 "expected": "block" if truth else "allow", "prompt": item["prompt"],
                                 "rule_ids": list(decision.rule_ids)})
    result["mistakes"] = mistakes
    result["held_out_mistakes_shown"] = show_held_out
    return result


def fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def markdown(report: dict) -> str:
    lines = [f"# Content policy evaluation (policy {report['policy_version']})", "",
             f"Machine: {report['machine']}. Set: `{report['data']}`, {report['items']} requests "
             f"({report['held_out_items']} held out by hash of the id: ids whose sha256 is 0 mod 3). "
             f"Goal at `standard`: recall >= {GOAL['recall']}, false-positive rate <= {GOAL['fpr']}.", "",
             "Truth per level: an item labelled `all` must block at strict, standard and low; `standard` at strict "
             "and standard; `strict` at strict only; `none` never.", ""]
    for level in LEVELS:
        entry = report["levels"][level]
        lines += [f"## Level `{level}`", "", "| part | n | TP | FP | FN | TN | precision | recall | FPR |",
                  "|---|---|---|---|---|---|---|---|---|"]
        parts = [("all", entry["all"]), ("development (2/3)", entry["development"]),
                 ("held out (1/3)", entry["held_out"])]
        parts += [(f"subset {name}", value) for name, value in entry["subsets"].items()]
        parts += [(f"held out, {name}", value) for name, value in entry["held_out_subsets"].items()]
        for name, s in parts:
            lines.append(f"| {name} | {s['n']} | {s['tp']} | {s['fp']} | {s['fn']} | {s['tn']} | "
                         f"{fmt(s['precision'])} | {fmt(s['recall'])} | {fmt(s['fpr'])} |")
        lines += ["", "Blocked items whose decision names the expected category: "
                  f"{fmt(entry['category_agreement'])}.", ""]
    t = report["timing"]
    per = t["per_request_ms"]
    lines += ["## Time", "", f"Per request at `standard` over the set ({per['n']} evaluations): "
              f"p50 {per['p50']} ms, p99 {per['p99']} ms, max {per['max']} ms.",
              "", "| 32,000-character input | median ms | min ms |", "|---|---|---|"]
    for name, value in t["long_inputs"].items():
        lines.append(f"| {name} | {value['median_ms']} | {value['min_ms']} |")
    shown = "all mistakes" if report["held_out_mistakes_shown"] else "development mistakes only (held-out ones hidden)"
    lines += ["", f"## Mistakes ({shown})", "", "| id | level | held out | expected | rules | prompt |",
              "|---|---|---|---|---|---|"]
    for m in report["mistakes"]:
        prompt = m["prompt"].replace("|", "\\|")
        lines.append(f"| {m['id']} | {m['level']} | {'yes' if m['held_out'] else 'no'} | {m['expected']} | "
                     f"{', '.join(m['rule_ids']) or '-'} | {prompt} |")
    if report.get("notes"):
        lines += ["", "## Notes", "", report["notes"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--policy", help="policy file (default: the shipped one)")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--output", help="write OUTPUT.md and OUTPUT.json")
    parser.add_argument("--show-held-out", action="store_true", help="also list mistakes on the held-out third")
    parser.add_argument("--repeats", type=int, default=5, help="timing passes over the set")
    parser.add_argument("--notes", default="", help="a paragraph for the report")
    args = parser.parse_args()
    policy = Policy.load(args.policy)
    items = load(Path(args.data))
    root = Path(__file__).resolve().parent.parent

    def shown(path: str) -> str:
        resolved = Path(path).resolve()
        return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else path

    report = {"policy_version": policy.version, "policy": shown(policy.source), "data": shown(args.data),
              "items": len(items),
              "held_out_items": sum(item["held_out"] for item in items), **run(policy, items, args.show_held_out),
              "timing": timing(policy, items, args.repeats), "notes": args.notes}
    from pictor.embedded.evaluate import machine_description

    report["machine"] = machine_description()
    for level in LEVELS:
        for part in ("all", "development", "held_out"):
            s = report["levels"][level][part]
            print(f"{level:8} {part:11} n={s['n']:3} precision={fmt(s['precision'])} recall={fmt(s['recall'])} "
                  f"fpr={fmt(s['fpr'])}")
    t = report["timing"]["per_request_ms"]
    print(f"per request: p50 {t['p50']} ms, p99 {t['p99']} ms")
    for name, value in report["timing"]["long_inputs"].items():
        print(f"{name}: median {value['median_ms']} ms")
    for m in report["mistakes"]:
        print(f"MISS {m['id']:16} {m['level']:8} expected {m['expected']:5} rules={','.join(m['rule_ids']) or '-'} "
              f"{m['prompt']!r}")
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        out.with_suffix(".md").write_text(markdown(report), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
