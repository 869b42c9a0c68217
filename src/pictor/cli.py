"""The `pictor` command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

from PIL import Image

from pictor.api.permissions import ROLES
from pictor.service.quotas import QUOTA_NAMES


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height or width)


def _load(model: str | None):
    from pictor.embedded import WEIGHTS_DIR
    from pictor.engine.loading import load_model_folder

    return load_model_folder(model or WEIGHTS_DIR)


def _report_unknown(words: list[str]) -> None:
    if words:
        print(f"words the model does not know (ignored): {', '.join(words)}", file=sys.stderr)


def cmd_generate(args: argparse.Namespace) -> int:
    pipe = _load(args.model)
    width, height = _size(args.size)
    out = pipe([args.prompt] * args.n, width=width, height=height, seed=args.seed,
               num_inference_steps=args.steps, guidance_scale=args.guidance)
    _report_unknown(out.unknown_words[0])
    for i, image in enumerate(out.images):
        path = Path(args.output) if args.n == 1 else Path(args.output).with_stem(f"{Path(args.output).stem}-{i}")
        image.save(path)
        print(f"{path} (seed {out.seeds[i]})")
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    pipe = _load(args.model)
    image = Image.open(args.image).convert("RGB")
    mask = Image.open(args.mask) if args.mask else None
    out = pipe(args.instruction, image=image, mask=mask, seed=args.seed, num_inference_steps=args.steps,
               guidance_scale=args.guidance)
    _report_unknown(out.unknown_words[0])
    out.images[0].save(args.output)
    print(f"{args.output} (seed {out.seeds[0]})")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from pictor.embedded.train import TrainConfig, train

    config = TrainConfig.from_file(args.config) if args.config else TrainConfig()
    if args.autoencoder_steps:
        config.autoencoder.steps = args.autoencoder_steps
    if args.steps:
        config.transformer.steps = args.steps
    if args.device:
        config.device = args.device
    train(config, args.run, export_to=args.export, stop_at=args.stop_at, init_from=args.init_from)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from pictor.embedded.evaluate import results_markdown, run_benchmark

    result = run_benchmark(_load(args.model), per_category=args.per_category, edits=args.edits,
                           inpaints=args.inpaints, max_objects=args.max_objects, resolution=args.resolution)
    if args.steps_sweep:
        from pictor.embedded.evaluate import steps_sweep

        result["steps_sweep"] = steps_sweep(_load(args.model))
    print(json.dumps({k: result[k] for k in ("scores", "timings_ms", "peak_memory_mb")}, indent=2))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).with_suffix(".json").write_text(json.dumps(result, indent=2))
        Path(args.output).with_suffix(".md").write_text(results_markdown(result, args.title))
    return 0


def _settings(args: argparse.Namespace):
    from pictor.config import Settings

    return Settings.load(getattr(args, "config", None), data_dir=getattr(args, "data_dir", None),
                         host=getattr(args, "host", None), port=getattr(args, "port", None),
                         keyless=True if getattr(args, "keyless", False) else None,
                         models=getattr(args, "model_entries", None) or None,
                         models_file=getattr(args, "models_file", None))


def _database(settings):
    from pictor.storage import Database, DataDir

    data = DataDir.resolve(settings.data_dir).create()
    return Database(settings.database_url or data.database_url), data


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from pictor.api import logs
    from pictor.api.app import create_app
    from pictor.api.security import DEMO_TENANT

    settings = _settings(args)
    database, data = _database(settings)
    hint = "keys: `pictor keys create --tenant NAME [--role ROLE]` prints a new one"
    if not database.has_keys():  # a fresh installation: one admin key to start with, never once keys exist
        key = database.create_key(database.ensure_tenant(DEMO_TENANT).id, label="demo", role="admin")
        hint = (f"demo key (shown once): {key.plaintext}\n(an admin key of tenant '{DEMO_TENANT}'; "
                f"revoke it with `pictor keys revoke {key.info.id}` once you have made your own)")
    database.close()
    logs.configure(settings.log_json)
    print(f"Pictor on http://{settings.host}:{settings.port}  data: {data.root}\n{hint}", flush=True)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning",
                proxy_headers=True, forwarded_allow_ips=settings.forwarded_allow_ips)
    return 0


def _governance(settings, database, data):
    from pictor.service.governance import Governance

    return Governance.from_settings(settings, data.root, database)


def cmd_verify(args: argparse.Namespace) -> int:
    """A file's C2PA manifest against this installation's trust anchors, and which image it is (any tenant)."""
    from pictor.core import sha256_hex
    from pictor.governance.provenance import read
    from pictor.service.provenance import ProvenanceService, open_to_verify, read_watermark, unmarked_report
    from pictor.storage import LocalBlobStore, NotFound, Principal

    settings = _settings(args)
    database, data = _database(settings)
    try:
        governance = _governance(settings, database, data)
        blob = Path(args.image).read_bytes()
        fmt, image = open_to_verify(blob)  # png, jpeg, webp, gif or svg
        summary = read(blob, fmt, governance.credentials.trust_anchors_pem)
        record, match = database.find_image(None, sha256_hex(blob)), "exact"
        claimed = (summary.pictor or {}).get("artifact_id")
        if record is None and claimed and summary.validation_state in ("Trusted", "Valid"):
            with contextlib.suppress(NotFound):
                record, match = database.get_image_any_tenant(claimed), "manifest"
        # GIF and SVG cannot carry the watermark: the report says it does not apply (and why).
        mark, marked = read_watermark(image, database, None) if image is not None and fmt not in ("gif", "svg") \
            else (unmarked_report(fmt), None)
        if record is None and marked is not None:
            record, match = marked, "watermark"
        report = {"file": args.image, "c2pa": summary.to_dict(), "image": None, "lineage": None, "watermark": mark}
        if record is not None:
            report["image"] = {"id": record.id, "tenant": record.tenant_id, "model": record.model,
                               "seed": record.seed, "audit_index": record.params.get("audit_index"), "match": match}
            service = ProvenanceService(database, LocalBlobStore(data.blobs), governance)
            report["lineage"] = service.lineage(Principal(record.tenant_id, "", None), record.id)
    except Exception as error:  # an unreadable file is an answer, not a traceback
        print(f"pictor: cannot verify {args.image}: {error}", file=sys.stderr)
        return 2
    finally:
        database.close()
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(f"C2PA: {summary.validation_state or 'no manifest'}"
              + (f" ({', '.join(summary.errors)})" if summary.errors else ""))
        if summary.pictor:
            made = summary.pictor
            print(f"made by Pictor: {made.get('artifact_id')}  model {made.get('model_id')}  seed {made.get('seed')}"
                  f"  audit entry {made.get('audit_index')}")
        for depth, ancestor in enumerate(summary.lineage, 1):
            print(f"{'  ' * depth}from {ancestor}")
        if not mark["applicable"]:
            print(f"watermark: not applicable ({mark['reason']})")
        else:
            print(f"watermark: {'detected, names ' + mark['artifact_prefix'] if mark['detected'] else 'not found'}"
                  + (f" (confidence {mark['confidence']})" if mark["detected"] else ""))
        found = report["image"]
        print(f"in this installation: {found['id']} (tenant {found['tenant']}, {found['match']} match)" if found
              else "in this installation: no matching image")
    return 0 if summary.validation_state == "Trusted" or mark["detected"] else 1


def cmd_audit(args: argparse.Namespace) -> int:
    settings = _settings(args)
    database, data = _database(settings)
    try:
        audit = _governance(settings, database, data).audit
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
            from pictor.service.erasure import erase_prompt
            from pictor.storage import LocalBlobStore

            tenant_id = database.get_image_any_tenant(args.image_id).tenant_id
            record = erase_prompt(database, LocalBlobStore(data.blobs), tenant_id, args.image_id)
            governance = _governance(settings, database, data)
            governance.record_admin("prompt_erased", tenant=record.tenant_id, actor=_operator(),
                                    image_id=record.id)
            print(f"erased the prompt of {record.id}; its audit entry is unchanged")
        return 0
    finally:
        database.close()


def cmd_replay(args: argparse.Namespace) -> int:
    from pictor.api.dependencies import default_registry
    from pictor.service.images import ImageService
    from pictor.service.replay import replay
    from pictor.storage import LocalBlobStore

    settings = _settings(args)
    database, data = _database(settings)
    registry = default_registry(settings)
    try:
        service = ImageService(registry, database, LocalBlobStore(data.blobs), _governance(settings, database, data))
        report = replay(service, args.index)
        print("\n".join(report.lines()))
        return 0 if report.reproduced else 1
    finally:
        registry.close()
        database.close()


def cmd_sweep(args: argparse.Namespace) -> int:
    from pictor.service.retention import sweep_expired
    from pictor.storage import LocalBlobStore

    settings = _settings(args)
    database, data = _database(settings)
    try:
        count = sweep_expired(database, LocalBlobStore(data.blobs), _governance(settings, database, data),
                              limit=1_000_000)
        print(f"deleted {count} image{'s' if count != 1 else ''} past their tenant's retention period")
        return 0
    finally:
        database.close()


def cmd_tenants(args: argparse.Namespace) -> int:
    from pictor.governance.badge import BadgeSettings
    from pictor.storage import TenantNotFound

    settings = _settings(args)
    database, data = _database(settings)
    try:
        tenant = database.tenant_by_name(args.tenant)
        if args.action == "badge":
            if args.off:
                changes = {"badge": None}
            else:
                badge = BadgeSettings(**{k: v for k, v in (("text", args.text), ("corner", args.corner),
                                                            ("size", args.size), ("opacity", args.opacity))
                                         if v is not None})
                changes = {"badge": badge.to_dict()}
            database.update_tenant_settings(tenant.id, changes)
        elif args.action == "moderation":
            changes = {"moderation_level": args.level}
            database.update_tenant_settings(tenant.id, changes)
        elif args.action == "retention":
            changes = {"retention_days": None if args.days == "off" else args.days}
            database.update_tenant_settings(tenant.id, changes)
        elif args.action == "quota":
            given = {name: getattr(args, name) for name in QUOTA_NAMES if getattr(args, name) is not None}
            quotas = {**(database.tenant_settings(tenant.id).get("quotas") or {}), **given}
            quotas = {name: value for name, value in quotas.items() if value != "off"}
            changes = {"quotas": quotas or None}
            database.update_tenant_settings(tenant.id, changes)
        else:
            changes = None
        if changes is not None:
            _governance(settings, database, data).record_admin(f"tenant_{args.action}_changed", tenant=tenant.id,
                                                               actor=_operator(), changes=changes)
        print(json.dumps(database.tenant_settings(tenant.id), indent=2))
        return 0
    except TenantNotFound:
        print(f"pictor: no tenant named {args.tenant!r}", file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"pictor: {error}", file=sys.stderr)
        return 2
    finally:
        database.close()


def quota_value(text: str) -> int | str:
    """A quota's limit from the command line: a whole number, or 'off'."""
    if text == "off":
        return text
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number, or 'off'")
    return int(text)


def _operator() -> str:
    """Who acts from the command line, for the audit log: the operating-system user."""
    import getpass

    try:
        return f"operator:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"operator:uid-{os.getuid()}"


def duration(text: str) -> timedelta:
    """`90d`, `12h`, `30m` or `45s` as a time span (for key expiry and rotation)."""
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: a number and a unit, d, h, m or s (90d)")
    return timedelta(**{units[text[-1]]: int(text[:-1])})


def cmd_keys(args: argparse.Namespace) -> int:
    from pictor.storage import ApiKeyNotFound, TenantNotFound
    from pictor.storage.tables import utcnow

    settings = _settings(args)
    database, data = _database(settings)

    def record(action: str, key, **details) -> None:
        _governance(settings, database, data).record_admin(action, tenant=key.tenant_id, actor=_operator(),
                                                           subject_key=key.id, **details)

    try:
        if args.action == "create":
            tenant = database.ensure_tenant(args.tenant)
            expires = utcnow() + args.expires if args.expires else None
            made = database.create_key(tenant.id, label=args.label, role=args.role, expires=expires)
            record("key_created", made.info, role=made.info.role,
                   expires=None if expires is None else expires.isoformat())
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
    except TenantNotFound:
        print(f"pictor: no tenant named {args.tenant!r}", file=sys.stderr)
        return 1
    except ApiKeyNotFound:
        print(f"pictor: no API key with id {args.key_id!r} (see `pictor keys list --tenant NAME`)", file=sys.stderr)
        return 1
    finally:
        database.close()
    return 0


@contextlib.contextmanager
def _pictor_client(args: argparse.Namespace):
    """A client of the server at --server, or of one started in this process on the data folder."""
    from pictor.commands.remote import PictorClient, local_server

    if args.server:
        key = args.api_key or os.environ.get("PICTOR_API_KEY")
        if not key:
            raise SystemExit("--server needs --api-key or PICTOR_API_KEY")
        client = PictorClient(args.server, key)
        try:
            yield client
        finally:
            client.close()
    else:
        with local_server(_settings(args), args.tenant) as client:
            yield client


def _progress_bar(label: str, enabled: bool):
    """(on_progress, close) for a tqdm bar whose total follows the batch's."""
    from tqdm import tqdm

    bar = tqdm(desc=label, unit="img", disable=not enabled, dynamic_ncols=True)

    def on_progress(done: int, total: int) -> None:
        if bar.total != total:
            bar.reset(total=total)
        bar.n = done
        bar.refresh()

    return on_progress, bar.close


def _remote_work(args: argparse.Namespace, label: str, work):
    """work(client, on_progress) with a progress bar; None (after printing why) when the server refuses."""
    from pictor.commands.remote import RemoteError

    on_progress, close = _progress_bar(label, not args.no_progress)
    try:
        with _pictor_client(args) as client:
            return work(client, on_progress)
    except RemoteError as error:
        print(f"error: {error}", file=sys.stderr)
        return None
    finally:
        close()


def cmd_batch(args: argparse.Namespace) -> int:
    from pictor.commands.batch import run_batch

    requests = Path(args.requests)
    output = Path(args.output) if args.output else requests.with_name(requests.stem + ".output.jsonl")
    outcome = _remote_work(args, requests.name, lambda client, on_progress: run_batch(
        client, requests, output, Path(args.errors) if args.errors else None,
        Path(args.images) if args.images else None, on_progress=on_progress))
    if outcome is None:
        return 1
    print(f"{outcome.batch_id} {outcome.status}{' (resumed)' if outcome.resumed else ''}: "
          f"{outcome.completed} of {outcome.total} succeeded, {outcome.failed} failed")
    for label, path in (("output", outcome.output), ("errors", outcome.errors)):
        if path is not None:
            print(f"{label}: {path}")
    if outcome.images:
        print(f"images: {len(outcome.images)} in {Path(args.images)}")
    return 0 if outcome.status == "completed" else 1


def cmd_dataset(args: argparse.Namespace) -> int:
    from pictor.commands.dataset import DatasetOptions, build_dataset

    width, height = _size(args.size)
    options = DatasetOptions(args.count, width, height, args.seed, args.max_objects, args.retries,
                             args.keep_unverified, args.model, args.quality)
    summary = _remote_work(args, "dataset", lambda client, on_progress: build_dataset(
        client, Path(args.folder), options, on_progress))
    if summary is None:
        return 1
    print(f"{summary.folder}: {summary.verified} of {summary.requested} images verified by the judge "
          f"({summary.unverified} still wrong, {summary.failed} refused or failed) after {summary.rounds} round(s), "
          f"{summary.images_made} images made; annotations.json (COCO), metadata.jsonl, images/")
    return 0 if summary.failed == 0 else 1


def cmd_models(args: argparse.Namespace) -> int:
    # JSON only (no torch import): this answers at once, and no weights are loaded.
    from pictor.embedded import WEIGHTS_DIR
    from pictor.engine.families import describe, family, index_class_name, tasks_of
    from pictor.engine.models_file import model_specs

    settings = _settings(args)
    folder = settings.embedded_model or WEIGHTS_DIR
    try:
        specs = model_specs(settings.models, settings.models_file)
    except ValueError as error:
        print(f"pictor: {error}", file=sys.stderr)
        return 2
    default = "" if any(spec.default for spec in specs) else " (default)"
    print(f"pictor-embedded{default}  {index_class_name(folder)}  {folder}")
    for spec in specs:
        try:
            name, pipeline = describe(spec.name, spec.path, spec.family)
            tasks = ",".join(sorted(tasks_of(family(name), spec.edit_by_img2img))) if name != "?" else "?"
        except ValueError as error:
            print(f"{spec.name}  error: {error}")
            continue
        print(f"{spec.name}{' (default)' if spec.default else ''}  {name}  {pipeline}  tasks: {tasks}  {spec.path}")
    return 0


def operator_models(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", dest="model_entries", action="append", metavar="NAME=PATH",
                   help="serve a diffusers model folder, single-file checkpoint or hub id as NAME (repeatable)")
    p.add_argument("--models", dest="models_file", metavar="FILE", help="a models file (TOML, [[model]] tables)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pictor", description="Pictor image generation and editing")
    sub = parser.add_subparsers(dest="command", required=True)

    def model_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", help="a diffusers-format model folder (default: the embedded model)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--steps", type=int, default=12, help="denoising steps")
        p.add_argument("--guidance", type=float, default=2.0, help="text guidance scale")
        p.add_argument("-o", "--output", default="pictor.png")

    gen = sub.add_parser("generate", help="make an image from a prompt")
    gen.add_argument("prompt")
    gen.add_argument("--size", default="64x64", help="WIDTHxHEIGHT of the output")
    gen.add_argument("-n", type=int, default=1, help="number of images")
    model_options(gen)
    gen.set_defaults(func=cmd_generate)

    edit = sub.add_parser("edit", help="edit an image by instruction, or inside a mask (white = change)")
    edit.add_argument("image")
    edit.add_argument("instruction")
    edit.add_argument("--mask", help="mask image: white where the prompt fills in")
    model_options(edit)
    edit.set_defaults(func=cmd_edit)

    train = sub.add_parser("train-embedded", help="train the embedded model from a config and a seed")
    train.add_argument("--config", help="TOML training config (see configs/)")
    train.add_argument("--run", default="runs/embedded", help="folder for checkpoints and logs (resumes)")
    train.add_argument("--export", help="write the trained pipeline folder here")
    train.add_argument("--autoencoder-steps", type=int, help="override the config's autoencoder steps")
    train.add_argument("--init-from", help="a new run starts from this exported model folder (its weights, at the "
                                           "config's transformer.schedule_from)")
    train.add_argument("--steps", type=int, help="override the config's transformer steps")
    train.add_argument("--device", help="cpu / cuda (default: the config's)")
    train.add_argument("--stop-at", type=int,
                       help="end this session at this step of the stage it is in, without changing the schedule")
    train.set_defaults(func=cmd_train)

    bench = sub.add_parser("bench-embedded", help="score the embedded model with the world's judge")
    bench.add_argument("--model", help="model folder (default: the shipped embedded model)")
    bench.add_argument("--per-category", type=int, default=50)
    bench.add_argument("--edits", type=int, default=120)
    bench.add_argument("--inpaints", type=int, default=60)
    bench.add_argument("--max-objects", type=int, default=2, help="objects per edit/inpaint scene")
    bench.add_argument("--output", help="results path stem, e.g. bench/results/embedded-cpu")
    bench.add_argument("--title", default="Embedded model benchmark")
    bench.add_argument("--resolution", type=int, default=256, help="side of the images made and judged")
    bench.add_argument("--steps-sweep", action="store_true", help="also score 1, 2, 4, 8 and 11 decoding rounds")
    bench.set_defaults(func=cmd_bench)

    serve = sub.add_parser("serve", help="run the HTTP API (OpenAI Images API compatible)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--data-dir", help="data folder (default: PICTOR_DATA_DIR or the user's data folder)")
    serve.add_argument("--config", help="TOML settings file")
    serve.add_argument("--keyless", action="store_true", help="local demo: requests need no key")
    operator_models(serve)
    serve.set_defaults(func=cmd_serve)

    keys = sub.add_parser("keys", help="create, list and revoke API keys")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    for action in ("create", "list", "revoke", "rotate"):
        p = keys_sub.add_parser(action)
        p.add_argument("--data-dir")
        p.add_argument("--config")
        if action in ("revoke", "rotate"):
            p.add_argument("key_id")
        else:
            p.add_argument("--tenant", required=True)
        if action == "create":
            p.add_argument("--label")
            p.add_argument("--role", choices=ROLES, default="member",
                           help="admin, member (default: generate and read), reader (read only), auditor "
                                "(provenance and the audit log, no generation)")
            p.add_argument("--expires", type=duration, help="the key stops working after this long: 90d, 12h, 30m")
        if action == "rotate":
            p.add_argument("--grace", type=duration, default=duration("7d"),
                           help="how long the old key keeps working (default 7d)")
    keys.set_defaults(func=cmd_keys)

    verify = sub.add_parser("verify", help="check an image's C2PA provenance and find it in this installation")
    verify.add_argument("image")
    verify.add_argument("--json", action="store_true", help="the whole report as JSON")
    verify.add_argument("--data-dir")
    verify.add_argument("--config")
    verify.set_defaults(func=cmd_verify)

    audit = sub.add_parser("audit", help="verify or export the audit log; erase a prompt on request")
    audit_sub = audit.add_subparsers(dest="action", required=True)
    for action, text in (("verify", "recompute every entry, link and signed checkpoint; non-zero on any change"),
                         ("export", "write entries, checkpoints, proofs and the public key for an auditor"),
                         ("checkpoint", "sign a checkpoint of the log now and print it"),
                         ("erase-prompt", "forget one image's prompt; the log still verifies")):
        p = audit_sub.add_parser(action, help=text)
        p.add_argument("--data-dir")
        p.add_argument("--config")
        if action == "export":
            p.add_argument("output", help="a folder to write")
        if action == "erase-prompt":
            p.add_argument("image_id")
    audit.set_defaults(func=cmd_audit)

    replay_cmd = sub.add_parser("replay", help="remake an image from its audit entry and compare its pixels' hash")
    replay_cmd.add_argument("index", type=int)
    replay_cmd.add_argument("--data-dir")
    replay_cmd.add_argument("--config")
    replay_cmd.set_defaults(func=cmd_replay)

    tenants = sub.add_parser("tenants", help="a tenant's settings (visible badge, policy level, quotas)")
    tenants_sub = tenants.add_subparsers(dest="action", required=True)
    for action in ("show", "badge", "moderation", "quota", "retention"):
        p = tenants_sub.add_parser(action)
        p.add_argument("--tenant", required=True)
        p.add_argument("--data-dir")
        p.add_argument("--config")
        if action == "badge":
            p.add_argument("--off", action="store_true", help="no badge (the default)")
            p.add_argument("--text", help="the label, e.g. 'AI-generated'")
            p.add_argument("--corner", choices=("top-left", "top-right", "bottom-left", "bottom-right"))
            p.add_argument("--size", type=float, help="text height as a fraction of the short side (0.05)")
            p.add_argument("--opacity", type=float, help="0.1..1 (0.85)")
        if action == "moderation":
            p.add_argument("--level", required=True, choices=("strict", "standard", "low"),
                           help="the policy level of `moderation=auto` requests (default standard)")
        if action == "retention":
            p.add_argument("--days", required=True, type=quota_value,
                           help="images older than this many days are deleted (bytes and prompt), or 'off'")
        if action == "quota":
            for name in QUOTA_NAMES:
                p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=quota_value,
                               help="a limit (a whole number), or 'off' for none")
    tenants.set_defaults(func=cmd_tenants)
    sweep = sub.add_parser("sweep", help="delete now every image past its tenant's retention period")
    sweep.add_argument("--data-dir")
    sweep.add_argument("--config")
    sweep.set_defaults(func=cmd_sweep)

    def server_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--server", help="a running Pictor (e.g. http://127.0.0.1:8000); default: start one here")
        p.add_argument("--api-key", help="the key for --server (default: PICTOR_API_KEY)")
        p.add_argument("--tenant", default="demo", help="without --server: the tenant the work is done for")
        p.add_argument("--data-dir")
        p.add_argument("--config")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")

    batch = sub.add_parser("batch", help="run a JSONL of Images requests through the Batch API")
    batch_sub = batch.add_subparsers(dest="action", required=True)
    batch_run = batch_sub.add_parser("run", help="upload, run and collect a batch; run it again to resume")
    batch_run.add_argument("requests", help="JSONL: one {custom_id, method, url, body} per line")
    batch_run.add_argument("-o", "--output", help="output JSONL (default: REQUESTS.output.jsonl)")
    batch_run.add_argument("--errors", help="error JSONL (default: OUTPUT.errors.jsonl, when any line failed)")
    batch_run.add_argument("--images", help="also write each image to this folder as CUSTOM_ID_N.FORMAT")
    server_options(batch_run)
    batch.set_defaults(func=cmd_batch)

    dataset = sub.add_parser("dataset", help="a labelled synthetic data set (images, JSONL metadata, COCO boxes)")
    dataset.add_argument("folder")
    dataset.add_argument("--count", type=int, default=100)
    dataset.add_argument("--size", default="64x64", help="WIDTHxHEIGHT")
    dataset.add_argument("--seed", type=int, default=0, help="the scenes and the first seeds follow from it")
    dataset.add_argument("--max-objects", type=int, default=2, choices=(1, 2, 3, 4))
    dataset.add_argument("--retries", type=int, default=2, help="rounds that ask again for images the judge rejects")
    dataset.add_argument("--keep-unverified", action="store_true", help="label images still wrong after the retries")
    dataset.add_argument("--model")
    dataset.add_argument("--quality", choices=("low", "medium", "high", "auto"))
    server_options(dataset)
    dataset.set_defaults(func=cmd_dataset)

    models = sub.add_parser("models", help="list the models this installation serves")
    models.add_argument("--config")
    operator_models(models)
    models.set_defaults(func=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
