"""`pictor sweep`: delete now every image past its tenant's retention period (the server does it regularly)."""

from __future__ import annotations

import argparse
from contextlib import closing

from pictor.cli.options import add_installation_options, settings_from


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("sweep", help="delete now every image past its tenant's retention period")
    add_installation_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pictor.assembly import Installation
    from pictor.service.retention import sweep_expired

    with closing(Installation.open(settings_from(args))) as installation:
        count = sweep_expired(installation.database, installation.blobs, installation.governance, limit=1_000_000)
    print(f"deleted {count} image{'s' if count != 1 else ''} past their tenant's retention period")
    return 0
