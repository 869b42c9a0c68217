"""The `pictor` command line: one module per command, each adding its own parser and running it.

Commands that need more than their arguments build from the composition root (pictor.assembly): the records-only
`Installation` for keys, tenants, audit, verify and sweep; the server's own `Components` for generate, edit and
replay; `serve`, `batch` and `dataset` run the server itself.
"""

from __future__ import annotations

import argparse

from pictor.cli import (
    audit,
    batch,
    bench,
    dataset,
    edit,
    engine,
    generate,
    keys,
    models,
    replay,
    serve,
    sweep,
    tenants,
    train,
    train_policy,
    verify,
)

# In the order `pictor --help` lists them.
COMMANDS = (generate, edit, train, train_policy, bench, serve, engine, keys, verify, audit, replay, tenants, sweep,
            batch, dataset, models)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pictor", description="Pictor image generation and editing")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
