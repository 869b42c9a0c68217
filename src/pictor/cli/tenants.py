"""`pictor tenants`: a tenant's settings (visible badge, policy level, quotas, retention); each change is audited."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import closing
from typing import Any

from pictor.cli.options import add_installation_options, operator, settings_from
from pictor.service.quotas import QUOTA_NAMES


def quota_value(text: str) -> int | str:
    """A quota's limit from the command line: a whole number, or 'off'."""
    if text == "off":
        return text
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number, or 'off'")
    return int(text)


def add_parser(sub: argparse._SubParsersAction) -> None:
    tenants = sub.add_parser("tenants", help="a tenant's settings (visible badge, policy level, quotas)")
    actions = tenants.add_subparsers(dest="action", required=True)
    for action in ("show", "badge", "moderation", "quota", "retention"):
        parser = actions.add_parser(action)
        parser.add_argument("--tenant", required=True)
        add_installation_options(parser)
        if action == "badge":
            parser.add_argument("--off", action="store_true", help="no badge (the default)")
            parser.add_argument("--text", help="the label, e.g. 'AI-generated'")
            parser.add_argument("--corner", choices=("top-left", "top-right", "bottom-left", "bottom-right"))
            parser.add_argument("--size", type=float, help="text height as a fraction of the short side (0.05)")
            parser.add_argument("--opacity", type=float, help="0.1..1 (0.85)")
        if action == "moderation":
            parser.add_argument("--level", required=True, choices=("strict", "standard", "low"),
                                help="the policy level of `moderation=auto` requests (default standard)")
        if action == "retention":
            parser.add_argument("--days", required=True, type=quota_value,
                                help="images older than this many days are deleted (bytes and prompt), or 'off'")
        if action == "quota":
            for name in QUOTA_NAMES:
                parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=quota_value,
                                    help="a limit (a whole number), or 'off' for none")
    tenants.set_defaults(func=run)


def changes_asked(args: argparse.Namespace, current: dict[str, Any]) -> dict[str, Any] | None:
    """The settings the action changes (None for `show`); `current` is the tenant's settings now."""
    from pictor.governance.badge import BadgeSettings

    if args.action == "badge":
        if args.off:
            return {"badge": None}
        given = (("text", args.text), ("corner", args.corner), ("size", args.size), ("opacity", args.opacity))
        return {"badge": BadgeSettings(**{k: v for k, v in given if v is not None}).to_dict()}
    if args.action == "moderation":
        return {"moderation_level": args.level}
    if args.action == "retention":
        return {"retention_days": None if args.days == "off" else args.days}
    if args.action == "quota":
        given = {name: getattr(args, name) for name in QUOTA_NAMES if getattr(args, name) is not None}
        quotas = {**(current.get("quotas") or {}), **given}
        return {"quotas": {name: value for name, value in quotas.items() if value != "off"} or None}
    return None


def run(args: argparse.Namespace) -> int:
    from pictor.assembly import Installation
    from pictor.storage import TenantNotFound

    with closing(Installation.open(settings_from(args))) as installation:
        database = installation.database
        try:
            tenant = database.tenant_by_name(args.tenant)
            changes = changes_asked(args, database.tenant_settings(tenant.id))
            if changes is not None:
                database.update_tenant_settings(tenant.id, changes)
                installation.governance.record_admin(f"tenant_{args.action}_changed", tenant=tenant.id,
                                                     actor=operator(), changes=changes)
            print(json.dumps(database.tenant_settings(tenant.id), indent=2))
            return 0
        except TenantNotFound:
            print(f"pictor: no tenant named {args.tenant!r}", file=sys.stderr)
            return 1
        except ValueError as error:
            print(f"pictor: {error}", file=sys.stderr)
            return 2
