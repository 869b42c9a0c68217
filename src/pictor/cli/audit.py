"""`pictor audit`: verify or export the audit log, sign a checkpoint, erase a prompt on request."""

from __future__ import annotations

import argparse
from contextlib import closing
from pathlib import Path

from pictor.cli.options import add_installation_options, operator, settings_from

ACTIONS = (("verify", "recompute every entry, link and signed checkpoint; non-zero on any change"),
           ("export", "write entries, checkpoints, proofs and the public key for an auditor"),
           ("checkpoint", "sign a checkpoint of the log now and print it"),
           ("erase-prompt", "forget one image's prompt; the log still verifies"))


def add_parser(sub: argparse._SubParsersAction) -> None:
    audit = sub.add_parser("audit", help="verify or export the audit log; erase a prompt on request")
    actions = audit.add_subparsers(dest="action", required=True)
    for action, text in ACTIONS:
        parser = actions.add_parser(action, help=text)
        add_installation_options(parser)
        if action == "export":
            parser.add_argument("output", help="a folder to write")
        if action == "erase-prompt":
            parser.add_argument("image_id")
    audit.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pictor.assembly import Installation
    from pictor.storage import Principal

    with closing(Installation.open(settings_from(args))) as installation:
        audit = installation.governance.audit
        if args.action == "verify":
            report = audit.verify()
            for line in report.lines():
                print(line)
            return 0 if report.ok else 1
        if args.action == "export":
            print(audit.export(Path(args.output)))
        elif args.action == "checkpoint":
            print(audit.checkpoint().note, end="")
        else:
            tenant_id = installation.database.get_image_any_tenant(args.image_id).tenant_id
            installation.provenance.erase_prompt(Principal(tenant_id, "", None), args.image_id)
            installation.governance.record_admin("prompt_erased", tenant=tenant_id, actor=operator(),
                                                 image_id=args.image_id)
            print(f"erased the prompt of {args.image_id}; its audit entry is unchanged")
        return 0
