"""Images made from the command line: the server's own image service on the local data folder.

`pictor generate` and `pictor edit` build the same components as `pictor serve` (pictor.assembly), so every file
they write is moderated, watermarked, C2PA-signed and audited exactly like an API response; the CLI only writes
the signed bytes it gets back.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import replace
from pathlib import Path
from typing import get_args

from pictor.cli.options import add_installation_options, settings_from
from pictor.core import ImageJob, Quality

EMBEDDED_MODEL = "pictor-embedded"  # the embedded backend's name in the registry
FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp", ".gif": "gif", ".svg": "svg"}


def add_image_options(parser: argparse.ArgumentParser) -> None:
    """The options that generate and edit share: model, seed, quality, output, tenant and installation."""
    parser.add_argument("--model", help="an embedded-model folder to use instead of the shipped one")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quality", choices=get_args(Quality), default="auto",
                        help="the quality tier, as in the API: more denoising steps from low to max (auto: medium)")
    parser.add_argument("-o", "--output", default="pictor.png",
                        help="the file to write; its suffix names the format (.png, .jpg, .webp, .gif, .svg)")
    parser.add_argument("--tenant", default="demo", help="the tenant the image is made for (made if missing)")
    add_installation_options(parser)


def output_format(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: the suffix names the format, one of {', '.join(FORMATS)}")
    return FORMATS[suffix]


def make_images(args: argparse.Namespace, job: ImageJob) -> int:
    """Run `job` for the tenant of `--tenant` through the image service and write each image it returns."""
    from pictor.assembly import Components
    from pictor.service.errors import ServiceError
    from pictor.storage import Principal

    overrides = {"embedded_model": args.model} if args.model else {}
    try:
        parts = Components.build(settings_from(args, **overrides))
    except (ValueError, OSError) as error:  # a model folder that does not load, settings that do not parse
        print(f"pictor: {error}", file=sys.stderr)
        return 2
    try:
        tenant = parts.database.ensure_tenant(args.tenant)
        principal = Principal(tenant.id, tenant.name, key_id=None, role="admin")
        job = replace(job, tenant_id=tenant.id, model=EMBEDDED_MODEL if args.model else job.model)
        result = asyncio.run(parts.service.run(job, principal))
    except ServiceError as error:
        print(f"pictor: {error.message}", file=sys.stderr)
        return 1
    finally:
        parts.close()
    if result.images and result.images[0].unknown_words:
        print(f"words the model does not know (ignored): {', '.join(result.images[0].unknown_words)}",
              file=sys.stderr)
    output = Path(args.output)
    for i, image in enumerate(result.images):
        path = output if len(result.images) == 1 else output.with_stem(f"{output.stem}-{i}")
        path.write_bytes(image.artifact.data)
        print(f"{path} (seed {image.seed}; {image.artifact.id}, audit entry {image.artifact.audit_index})")
    return 0
