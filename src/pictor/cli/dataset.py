"""`pictor dataset`: a labelled synthetic data set (images, JSONL metadata, COCO boxes) made through a server."""

from __future__ import annotations

import argparse
from pathlib import Path

from pictor.cli.options import parse_size
from pictor.cli.remote_work import add_server_options, remote_work


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("dataset", help="a labelled synthetic data set (images, JSONL metadata, COCO boxes)")
    parser.add_argument("folder")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--size", default="64x64", help="WIDTHxHEIGHT")
    parser.add_argument("--seed", type=int, default=0, help="the scenes and the first seeds follow from it")
    parser.add_argument("--max-objects", type=int, default=2, choices=(1, 2, 3, 4))
    parser.add_argument("--retries", type=int, default=2, help="rounds that ask again for images the judge rejects")
    parser.add_argument("--keep-unverified", action="store_true", help="label images still wrong after the retries")
    parser.add_argument("--model")
    parser.add_argument("--quality", choices=("low", "medium", "high", "auto"))
    add_server_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pictor.commands.dataset import DatasetOptions, build_dataset

    width, height = parse_size(args.size)
    options = DatasetOptions(args.count, width, height, args.seed, args.max_objects, args.retries,
                             args.keep_unverified, args.model, args.quality)
    summary = remote_work(args, "dataset", lambda client, on_progress: build_dataset(
        client, Path(args.folder), options, on_progress))
    if summary is None:
        return 1
    print(f"{summary.folder}: {summary.verified} of {summary.requested} images verified by the judge "
          f"({summary.unverified} still wrong, {summary.failed} refused or failed) after {summary.rounds} round(s), "
          f"{summary.images_made} images made; annotations.json (COCO), metadata.jsonl, images/")
    return 0 if summary.failed == 0 else 1
