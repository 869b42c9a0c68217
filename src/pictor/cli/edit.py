"""`pictor edit`: an image edited by instruction, or inside a mask, as the server edits it."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from PIL import Image

from pictor.cli.local_images import add_image_options, make_images, output_format
from pictor.cli.options import operator
from pictor.core import ImageJob, JobKind


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("edit", help="edit an image by instruction, or inside a mask (white = change)")
    parser.add_argument("image")
    parser.add_argument("instruction")
    parser.add_argument("--mask", help="mask image: white where the instruction may change the image")
    add_image_options(parser)
    parser.set_defaults(func=run)


def api_mask(path: str) -> bytes:
    """The command line's mask (white = change) in the API's convention (fully transparent = change), as PNG."""
    grey = Image.open(path).convert("L")
    mask = Image.new("RGBA", grey.size, (0, 0, 0, 255))
    mask.putalpha(grey.point(lambda value: 0 if value >= 128 else 255))
    buffer = io.BytesIO()
    mask.save(buffer, "PNG")
    return buffer.getvalue()


def run(args: argparse.Namespace) -> int:
    try:
        job = ImageJob(kind=JobKind.EDIT, prompt=args.instruction, images=(Path(args.image).read_bytes(),),
                       mask=api_mask(args.mask) if args.mask else None, seed=args.seed, quality=args.quality,
                       output_format=output_format(args.output), user=operator())
    except (ValueError, OSError) as error:
        print(f"pictor: {error}", file=sys.stderr)
        return 2
    return make_images(args, job)
