"""`pictor verify`: a file's C2PA manifest and watermark, and which image of this installation it is (any tenant).

The report is the provenance service's own (`ProvenanceService.verify`, as `POST /v1/provenance/verify` answers),
asked for by the operator, whose matches span every tenant; the image found is then named with its tenant.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pictor.cli.options import add_installation_options, settings_from

if TYPE_CHECKING:
    from pictor.assembly import Installation


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("verify", help="check an image's C2PA provenance and find it in this installation")
    parser.add_argument("image")
    parser.add_argument("--json", action="store_true", help="the whole report as JSON")
    add_installation_options(parser)
    parser.set_defaults(func=run)


def verification(installation: Installation, path: str) -> dict[str, Any]:
    """The provenance service's report on the file at `path`, matched against every tenant's images."""
    from pictor.storage import Principal

    # The storage reads an absent tenant as "any tenant": the operator's tools only, never an API caller.
    operator = Principal(tenant_id=None, tenant_name="", key_id=None, role="admin")  # type: ignore[arg-type]
    provenance = installation.provenance
    report = {"file": path, **provenance.verify(operator, Path(path).read_bytes())}
    found = report["image"]
    if found is not None:  # its tenant, and its lineage there (descendants are listed within one tenant)
        found["tenant"] = installation.database.get_image_any_tenant(found["id"]).tenant_id
        report["lineage"] = provenance.lineage(Principal(found["tenant"], "", None), found["id"])
    return report


def run(args: argparse.Namespace) -> int:
    from pictor.assembly import Installation

    with closing(Installation.open(settings_from(args))) as installation:
        try:
            report = verification(installation, args.image)
        except Exception as error:  # an unreadable file is an answer, not a traceback
            print(f"pictor: cannot verify {args.image}: {error}", file=sys.stderr)
            return 2
    c2pa, mark = report["c2pa"], report["watermark"]
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_report(c2pa, mark, report["image"])
    return 0 if c2pa["validation_state"] == "Trusted" or mark["detected"] else 1


def print_report(c2pa: dict[str, Any], mark: dict[str, Any], found: dict[str, Any] | None) -> None:
    print(f"C2PA: {c2pa['validation_state'] or 'no manifest'}"
          + (f" ({', '.join(c2pa['errors'])})" if c2pa["errors"] else ""))
    if c2pa["pictor"]:
        made = c2pa["pictor"]
        print(f"made by Pictor: {made.get('artifact_id')}  model {made.get('model_id')}  seed {made.get('seed')}"
              f"  audit entry {made.get('audit_index')}")
    for depth, ancestor in enumerate(c2pa["lineage"], 1):
        print(f"{'  ' * depth}from {ancestor}")
    if not mark["applicable"]:
        print(f"watermark: not applicable ({mark['reason']})")
    else:
        print(f"watermark: {'detected, names ' + mark['artifact_prefix'] if mark['detected'] else 'not found'}"
              + (f" (confidence {mark['confidence']})" if mark["detected"] else ""))
    print(f"in this installation: {found['id']} (tenant {found['tenant']}, {found['match']} match)" if found
          else "in this installation: no matching image")
