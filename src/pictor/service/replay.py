"""Deterministic replay: remake an image from its audit record and compare the pixels' hash.

The entry holds everything but the prompt (kept, salted-hashed, beside it), the inputs (content-
addressed blobs: images, mask, markup overlay) and the model's weights hash, including the steps and seed of the
candidate that was returned and, for a complexity=high repair, the repair's seed and steps (its box and prompt are
derived again from the remade candidate, and must match); replay refuses with a reason rather than guess when
one of them is gone or different. The server settings that shaped the pixels are recorded too (the CPU threads,
the device, batch invariance and, for an edit, the mask's blend band and automatic mask): `recorded_settings`
gives them to whoever builds the replaying service, and a report that differs names each one that differs, or
that its entry does not record.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field, replace
from typing import Any

from pictor.core import ImageJob, JobKind
from pictor.engine.placement import current_cpu_threads
from pictor.governance.audit import salted_hash
from pictor.service.governance import pixels_hash
from pictor.service.images import ImageService
from pictor.service.masks import keep_outside_mask
from pictor.service.search import engine_request, repair_request
from pictor.storage import Database, NotFound


@dataclass
class ReplayReport:
    index: int
    reproduced: bool
    reasons: list[str] = field(default_factory=list)  # why it could not be replayed, or why it differs
    artifact_id: str | None = None
    expected: str | None = None
    actual: str | None = None

    def lines(self) -> list[str]:
        head = (f"audit entry {self.index} ({self.artifact_id}): "
                + ("reproduced, same pixels hash" if self.reproduced else "NOT reproduced"))
        return [head, *(f"  {reason}" for reason in self.reasons),
                *([f"  expected {self.expected}", f"  actual   {self.actual}"] if self.actual else [])]


def _final_entry(database: Database, index: int) -> dict[str, Any] | None:
    rows = database.audit_entries(index, index + 1) if index >= 0 else []
    return json.loads(rows[0].entry) if rows and rows[0].entry is not None else None


def recorded_settings(database: Database, index: int) -> dict[str, Any]:
    """The server settings that shaped the image of audit entry `index`, as Settings fields, where its entry
    records them ({} for an entry that is not an image's): build the replaying service with them.

    The device only when it was the CPU, which every machine has; a GPU's image on a machine without one is
    replayed on what there is, and the report says so.
    """
    entry = _final_entry(database, index)
    if entry is None or entry.get("event") != "image":
        return {}
    found = _edit_settings(entry.get("parameters") or {})
    if entry.get("cpu_threads"):
        found["torch_threads"] = entry["cpu_threads"]
    if "batch_invariant" in entry:
        found["batch_invariant"] = entry["batch_invariant"]
    if entry.get("device") == "cpu":
        found["device"] = "cpu"
    return found


def replay(service: ImageService, index: int) -> ReplayReport:
    """Remake the image of audit entry `index` with the same model, inputs, parameters and seed.

    `service` should be built with the entry's `recorded_settings`; where it is not, a differing result names them.
    """
    entry = _final_entry(service.database, index)
    if entry is None:
        return ReplayReport(index, False, [f"there is no final audit entry {index}"])
    if entry.get("event") != "image":
        return ReplayReport(index, False, [f"entry {index} records a '{entry.get('event')}' event, not an image"])
    report = ReplayReport(index, False, artifact_id=entry["artifact_id"], expected=entry.get("pixels_hash"))
    try:
        record = service.database.get_image(entry["tenant"], entry["artifact_id"])
    except NotFound:
        report.reasons.append("its image record is gone")
        return report
    prompt = record.params.get("prompt", "")
    salt = service.database.prompt_salt(record.id)
    if "prompt_erased" in record.params or salt is None:
        report.reasons.append("its prompt was erased on request")
        return report
    if salted_hash(prompt, salt) != entry["prompt_hash"]:
        report.reasons.append("the stored prompt does not match the audited prompt hash")
        return report
    params = entry["parameters"]
    try:
        worker = service.registry.worker(entry["model"])
    except LookupError:
        report.reasons.append(f"the model '{entry['model']}' is not served here")
        return report
    backend = worker.backend
    if backend.weights_hash != entry["weights_hash"]:
        report.reasons.append(f"the model's weights changed ({entry['weights_hash'][:12]} then, "
                              f"{backend.weights_hash[:12]} now)")
        return report
    try:
        images = tuple(service.blobs.get(digest) for digest in params["input_hashes"])
        mask = service.blobs.get(params["mask_hash"]) if params.get("mask_hash") else None
        markup = service.blobs.get(params["markup_hash"]) if params.get("markup_hash") else None
    except NotFound:
        report.reasons.append("an input image is no longer stored")
        return report
    job = ImageJob(kind=JobKind(params["kind"]), prompt=prompt, images=images, mask=mask, size=params["size"],
                   seed=params["seed"], quality=params["quality"], output_format=params["output_format"],
                   output_compression=params["output_compression"], background=params["background"],
                   model=entry["model"], tenant_id=entry["tenant"], markup=markup,
                   **({"frame_count": params["frame_count"], "frame_duration_ms": params["frame_duration_ms"]}
                      if "frame_count" in params else {}))
    plan = asyncio.run(service.prepare(job, moderate=False))
    # The image's own steps: a candidate of a search (complexity=high) may have been made with fewer than the tier's.
    request = replace(engine_request(plan, params["seed"]), steps=params.get("steps", plan.steps))
    image = worker.submit(request).result().image
    repair = (entry.get("validation") or {}).get("repair")
    if repair:  # a complexity=high repair: the candidate's one wrong object repainted (service/validation)
        fix = plan.reader.propose_repair(image, plan.engine_prompt if plan.engine_prompt is not None else prompt)
        if fix is None or fix.to_dict() != {key: repair[key] for key in ("box", "prompt", "wrong")}:
            report.reasons.append("the remade candidate does not call for the recorded repair")
            return report
        made = worker.submit(repair_request(plan, image, fix, repair["seed"], repair["steps"])).result().image
        image = keep_outside_mask(made, image, fix.mask(image.size))
    image = image if plan.mask is None else keep_outside_mask(image, plan.sources[0], plan.mask)
    report.actual = pixels_hash(image)
    report.reproduced = report.actual == report.expected
    if not report.reproduced:
        device = backend.device.split(":")[0]
        if device != entry.get("device"):
            report.reasons.append(f"made on {entry.get('device')}, replayed on {device}: kernels differ by device")
        elif device == "cpu" and entry.get("cpu_threads") not in (None, current_cpu_threads()):
            report.reasons.append(f"made with {entry['cpu_threads']} CPU threads, replayed with "
                                  f"{current_cpu_threads()}: the sums run in another order (set torch_threads)")
        if not entry.get("batch_invariant", True):
            report.reasons.append("the server batched requests (batch_invariant off), so the result depended on "
                                  "what shared its batch")
        report.reasons += _edit_settings_differences(service, params, plan.mask is not None)
    return report


def _edit_settings(params: dict[str, Any]) -> dict[str, Any]:
    """An edit's mask settings from its entry's parameters, where recorded."""
    found = {name: params[name] for name in ("mask_blend_px", "auto_edit_mask") if name in params}
    if params.get("auto_mask"):  # an automatic mask was made, so the setting was on (entries before its record)
        found["auto_edit_mask"] = True
    return found


def _edit_settings_differences(service: ImageService, params: dict[str, Any], masked: bool) -> list[str]:
    """The edit settings that may explain a difference: recorded and not those of `service`, or not recorded."""
    if params.get("kind") != JobKind.EDIT.value:
        return []
    recorded, reasons = _edit_settings(params), []
    now = {"mask_blend_px": service.mask_blend_px, "auto_edit_mask": service.auto_edit_mask}
    relevant = {"mask_blend_px": masked,  # the blend band only changes a masked edit's pixels
                # the automatic mask is only tried for an edit of one image without a mask or markup
                "auto_edit_mask": len(params.get("input_hashes") or []) == 1 and not params.get("mask_hash")
                and not params.get("markup_hash")}
    for name, value in now.items():
        if not relevant[name]:
            continue
        if name not in recorded:
            reasons.append(f"its entry does not record {name} (made before it was recorded): replayed with "
                           f"{name}={_setting(value)}; set PICTOR_{name.upper()} to the server's setting of then")
        elif recorded[name] != value:
            reasons.append(f"made with {name}={_setting(recorded[name])}, replayed with {name}={_setting(value)}")
    return reasons


def _setting(value: Any) -> str:
    """A setting as its environment variable is written (true / false, 3)."""
    return str(value).lower() if isinstance(value, bool) else str(value)
