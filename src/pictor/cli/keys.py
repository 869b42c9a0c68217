"""`pictor keys`: create, list, rotate and revoke API keys; each change is an admin entry of the audit log."""

from __future__ import annotations

import argparse
import sys
from contextlib import closing
from datetime import timedelta
from typing import TYPE_CHECKING

from pictor.api.permissions import ROLES
from pictor.cli.options import add_installation_options, operator, settings_from

if TYPE_CHECKING:
    from pictor.assembly import Installation


def duration(text: str) -> timedelta:
    """`90d`, `12h`, `30m` or `45s` as a time span (for key expiry and rotation)."""
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: a number and a unit, d, h, m or s (90d)")
    return timedelta(**{units[text[-1]]: int(text[:-1])})


def add_parser(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help="create, list and revoke API keys")
    actions = keys.add_subparsers(dest="action", required=True)
    for action in ("create", "list", "revoke", "rotate"):
        parser = actions.add_parser(action)
        add_installation_options(parser)
        if action in ("revoke", "rotate"):
            parser.add_argument("key_id")
        else:
            parser.add_argument("--tenant", required=True)
        if action == "create":
            parser.add_argument("--label")
            parser.add_argument("--role", choices=ROLES, default="member",
                                help="admin, member (default: generate and read), reader (read only), auditor "
                                     "(provenance and the audit log, no generation)")
            parser.add_argument("--expires", type=duration,
                                help="the key stops working after this long: 90d, 12h, 30m")
        if action == "rotate":
            parser.add_argument("--grace", type=duration, default=duration("7d"),
                                help="how long the old key keeps working (default 7d)")
    keys.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pictor.assembly import Installation
    from pictor.storage import ApiKeyNotFound, TenantNotFound

    with closing(Installation.open(settings_from(args))) as installation:
        try:
            _act(args, installation)
        except TenantNotFound:
            print(f"pictor: no tenant named {args.tenant!r}", file=sys.stderr)
            return 1
        except ApiKeyNotFound:
            print(f"pictor: no API key with id {args.key_id!r} (see `pictor keys list --tenant NAME`)",
                  file=sys.stderr)
            return 1
    return 0


def _act(args: argparse.Namespace, installation: Installation) -> None:
    from pictor.storage.tables import utcnow

    database = installation.database

    def record(action: str, key, **details) -> None:
        installation.governance.record_admin(action, tenant=key.tenant_id, actor=operator(), subject_key=key.id,
                                             **details)

    if args.action == "create":
        tenant = database.ensure_tenant(args.tenant)
        expires = utcnow() + args.expires if args.expires else None
        made = database.create_key(tenant.id, label=args.label, role=args.role, expires=expires)
        record("key_created", made.info, role=made.info.role, expires=None if expires is None else expires.isoformat())
        print(made.plaintext)
    elif args.action == "list":
        for key in database.list_keys(database.tenant_by_name(args.tenant).id):
            state = f"revoked {key.revoked:%Y-%m-%d}" if key.revoked else "active"
            if not key.revoked and key.expires is not None:
                state = f"{'expired' if key.expires <= utcnow() else 'expires'} {key.expires:%Y-%m-%d %H:%M}"
            print(f"{key.id}  {key.hint}  {key.role}  {key.label or ''}  {state}")
    elif args.action == "rotate":
        new = database.rotate_key(args.key_id, utcnow() + args.grace)
        record("key_rotated", new.info, replaces=args.key_id, old_key_expires=(utcnow() + args.grace).isoformat(),
               role=new.info.role)
        print(new.plaintext)
        print(f"{args.key_id} keeps working until {utcnow() + args.grace:%Y-%m-%d %H:%M} UTC", file=sys.stderr)
    else:
        record("key_revoked", database.revoke_key(args.key_id))
        print(f"revoked {args.key_id}")
