"""`pictor serve`: the HTTP API (OpenAI Images API compatible) on this installation."""

from __future__ import annotations

import argparse
from contextlib import closing

from pictor.cli.options import add_installation_options, add_operator_models, settings_from


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("serve", help="run the HTTP API (OpenAI Images API compatible)")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    add_installation_options(parser)
    parser.add_argument("--keyless", action="store_true", help="local demo: requests need no key")
    parser.add_argument("--engine", choices=("local", "ray"),
                        help="where the models run: in this process (default) or on the replicas `pictor engine` "
                             "runs on Ray Serve")
    add_operator_models(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from pictor.allocator import keep_freed_memory
    from pictor.api import logs
    from pictor.api.app import create_app
    from pictor.api.security import DEMO_TENANT
    from pictor.assembly import Installation

    settings = settings_from(args, engine=args.engine)
    with closing(Installation.open(settings)) as installation:
        database = installation.database
        hint = "keys: `pictor keys create --tenant NAME [--role ROLE]` prints a new one"
        if not database.has_keys():  # a fresh installation: one admin key to start with, never once keys exist
            key = database.create_key(database.ensure_tenant(DEMO_TENANT).id, label="demo", role="admin")
            hint = (f"demo key (shown once): {key.plaintext}\n(an admin key of tenant '{DEMO_TENANT}'; "
                    f"revoke it with `pictor keys revoke {key.info.id}` once you have made your own)")
        root = installation.data.root
    logs.configure(settings.log_json)
    keep_freed_memory()
    print(f"Pictor on http://{settings.host}:{settings.port}  data: {root}\n{hint}", flush=True)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning",
                proxy_headers=True, forwarded_allow_ips=settings.forwarded_allow_ips)
    return 0
