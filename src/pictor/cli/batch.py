"""`pictor batch run`: a JSONL of Images requests through the Batch API of a server (or of one started here)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pictor.cli.remote_work import add_server_options, remote_work


def add_parser(sub: argparse._SubParsersAction) -> None:
    batch = sub.add_parser("batch", help="run a JSONL of Images requests through the Batch API")
    actions = batch.add_subparsers(dest="action", required=True)
    parser = actions.add_parser("run", help="upload, run and collect a batch; run it again to resume")
    parser.add_argument("requests", help="JSONL: one {custom_id, method, url, body} per line")
    parser.add_argument("-o", "--output", help="output JSONL (default: REQUESTS.output.jsonl)")
    parser.add_argument("--errors", help="error JSONL (default: OUTPUT.errors.jsonl, when any line failed)")
    parser.add_argument("--images", help="also write each image to this folder as CUSTOM_ID_N.FORMAT")
    add_server_options(parser)
    batch.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pictor.commands.batch import run_batch

    requests = Path(args.requests)
    output = Path(args.output) if args.output else requests.with_name(requests.stem + ".output.jsonl")
    outcome = remote_work(args, requests.name, lambda client, on_progress: run_batch(
        client, requests, output, Path(args.errors) if args.errors else None,
        Path(args.images) if args.images else None, on_progress=on_progress))
    if outcome is None:
        return 1
    print(f"{outcome.batch_id} {outcome.status}{' (resumed)' if outcome.resumed else ''}: "
          f"{outcome.completed} of {outcome.total} succeeded, {outcome.failed} failed")
    for label, path in (("output", outcome.output), ("errors", outcome.errors)):
        if path is not None:
            print(f"{label}: {path}")
    if outcome.images:
        print(f"images: {len(outcome.images)} in {Path(args.images)}")
    return 0 if outcome.status == "completed" else 1
