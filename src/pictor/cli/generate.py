"""`pictor generate`: an image from a prompt, made, signed and audited as the server makes it."""

from __future__ import annotations

import argparse
import sys

from pictor.cli.local_images import add_image_options, make_images, output_format
from pictor.cli.options import operator, parse_size
from pictor.core import ImageJob, JobKind


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("generate", help="make an image from a prompt (signed and audited, in the data folder)")
    parser.add_argument("prompt")
    parser.add_argument("--size", default="64x64", help="WIDTHxHEIGHT of the output (multiples of 16)")
    parser.add_argument("-n", type=int, default=1, help="number of images")
    add_image_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        width, height = parse_size(args.size)
        job = ImageJob(kind=JobKind.GENERATE, prompt=args.prompt, size=f"{width}x{height}", n=args.n, seed=args.seed,
                       quality=args.quality, output_format=output_format(args.output), user=operator())
    except ValueError as error:
        print(f"pictor: {error}", file=sys.stderr)
        return 2
    return make_images(args, job)
