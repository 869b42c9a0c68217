"""`pictor replay`: remake an image from its audit entry, with the settings it records, and compare the pixels."""

from __future__ import annotations

import argparse
from contextlib import closing

from pictor.cli.options import add_installation_options, settings_from


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("replay", help="remake an image from its audit entry and compare its pixels' hash")
    parser.add_argument("index", type=int)
    add_installation_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pictor.assembly import Components, Installation
    from pictor.service.replay import recorded_settings, replay

    settings = settings_from(args)
    # The entry's own settings (mask blend, automatic mask, CPU threads...) outrank this machine's: they made the
    # pixels. The models load once, with them.
    with closing(Installation.open(settings)) as installation:
        recorded = recorded_settings(installation.database, args.index)
    parts = Components.build(settings.model_copy(update=recorded))
    try:
        report = replay(parts.service, args.index)
    finally:
        parts.close()
    print("\n".join(report.lines()))
    return 0 if report.reproduced else 1
