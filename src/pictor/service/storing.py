"""The last steps of the request path: each output kept to its hard mask, marked, encoded and signed; then every
blob, record and audit entry stored, in one transaction: all or nothing.

Audit indexes are reserved first because each C2PA manifest names its entry; a failure after that closes the
reservations with a `failed` entry. Uploaded inputs become image records (unless they are the tenant's own earlier
images, which then become the parents), so an edit's lineage names its parents. A failure part-way leaves at most
unreferenced blobs (content-addressed, so harmless), never a record.
"""

from __future__ import annotations

from dataclasses import dataclass

from pictor.core import Artifact, Decision, new_image_id, sha256_hex
from pictor.engine.placement import current_cpu_threads
from pictor.engine.protocol import EngineResult
from pictor.governance.provenance import Parent
from pictor.service import animation
from pictor.service.governance import Governance, Receipt, pixels_hash
from pictor.service.inputs import ACCEPTED_FORMATS
from pictor.service.marking import Marks, encode_output, mark
from pictor.service.masks import keep_outside_mask
from pictor.service.planning import Plan
from pictor.storage import BlobStore, Database, Principal


@dataclass
class ProducedImage:
    artifact: Artifact
    seed: int
    revised_prompt: str | None
    unknown_words: list[str]
    validation: dict | None = None  # the validator's verdict (service/validation), the `validation` extension field


def repair_actions(extra: dict) -> list[dict]:
    """A complexity=high repair is an edit of the generated candidate: the manifest says so."""
    repair = (extra.get("validation") or {}).get("repair")
    if not repair:
        return []
    return [{"action": "c2pa.edited", "description": f"validator-guided repair: {repair['prompt']} repainted in "
                                                   f"box {repair['box']} ({repair['wrong']})"}]


def output_audit_fields(plan: Plan, marks: Marks, extra: dict) -> dict:
    """The audit entry's fields for validation, markup, GIF and the watermark a format could not carry."""
    fields: dict = {"validation": extra.get("validation"), "candidates": plan.candidates}
    if marks.watermark_reason:
        fields["watermark_reason"] = marks.watermark_reason
    if plan.markup_guide is not None:
        fields["markup"] = plan.markup_guide.to_dict()
    if plan.job.output_format == "gif":
        fields["gif"] = {"frame_count": len(extra.get("frames") or []),
                         "frame_duration_ms": animation.frame_duration(plan.job.frame_duration_ms)}
    if plan.engine_prompt is not None:
        fields["engine_prompt_words"] = len(plan.engine_prompt.split())
    return fields


class OutputStore:
    """Signs and stores a request's outputs (see the module's docstring)."""

    def __init__(self, database: Database, blobs: BlobStore, governance: Governance):
        self.database, self.blobs, self.governance = database, blobs, governance

    def store(self, plan: Plan, principal: Principal, results: list[EngineResult],
              output_checks: list[Decision] | None = None, cache_states: list[str] | None = None,
              extras: list[dict] | None = None) -> list[ProducedImage]:
        with plan.times.step("audit"):  # the entries' indexes, reserved before signing names them
            receipt = self.governance.receipt(len(results))
        try:
            produced = self._store_signed(plan, principal, results, receipt, output_checks or [], cache_states,
                                          extras)
        except BaseException as error:
            receipt.fail(error)
            raise
        with plan.times.step("audit"):
            self.governance.audit.maybe_checkpoint()
        return produced

    def _parents(self, plan: Plan, principal: Principal) -> tuple[list[Parent], list[Artifact]]:
        """The inputs as C2PA parents, and the uploads among them that become image records."""
        parents, uploads = [], []
        for data, image in zip(plan.job.images, plan.sources):
            known = self.database.find_image(principal.tenant_id, sha256_hex(data))
            if known is None:
                upload = Artifact(id=new_image_id(), data=data, format=ACCEPTED_FORMATS[image.format],
                                  width=image.width, height=image.height, tenant_id=principal.tenant_id)
                uploads.append(upload)
                parents.append(Parent(data, upload.format, upload.id))
            else:
                parents.append(Parent(data, known.format, known.id))
        return parents, uploads

    def _store_signed(self, plan: Plan, principal: Principal, results: list[EngineResult], receipt: Receipt,
                      output_checks: list[Decision], cache_states: list[str] | None = None,
                      extras: list[dict] | None = None) -> list[ProducedImage]:
        job, model, times, backend = plan.job, plan.model, plan.times, plan.backend
        assert backend is not None
        if plan.mask is not None:
            # The hard mask, whatever the backend did: outside the editable area the input's own pixels
            # (alpha included), also after a transparent background was made.
            with times.step("mask"):
                for result in results:
                    result.image = keep_outside_mask(result.image, plan.sources[0], plan.mask)
        parents, uploads = self._parents(plan, principal)
        parent_ids = tuple(parent.title for parent in parents)
        params = {**job.parameters(), "job_id": receipt.job_id, **plan.settings}
        if plan.composition is not None:
            params["composition"] = {**plan.composition, "reference_image_id": parent_ids[1]}
        if plan.auto_mask:
            params["auto_mask"] = True
        badge = plan.badge
        produced = []
        for position, result in enumerate(results):
            artifact_id = new_image_id()
            extra = extras[position] if extras else {}
            final, marks = mark(result.image, plan, artifact_id)  # steps "badge", then "watermark"
            with times.step("encode"):
                encoded = encode_output(final, plan, extra.get("frames"), badge)
            with times.step("sign"):
                data = receipt.sign(position, artifact_id, encoded, job.output_format, prompt=job.prompt, model=model,
                                    weights_hash=backend.weights_hash, seed=result.seed, parents=parents,
                                    actions=[*repair_actions(extra), *marks.actions], assertions=marks.assertions)
            artifact = Artifact(id=artifact_id, data=data, format=job.output_format, width=result.image.width,
                                height=result.image.height, model=model, seed=result.seed, parents=parent_ids,
                                tenant_id=principal.tenant_id, audit_index=receipt.indexes[position])
            unsalted = {k: v for k, v in params.items() if k != "prompt"}
            checks = plan.decisions + output_checks[position:position + 1]
            with times.step("audit"):
                decoded_hash = pixels_hash(result.image)  # what replay compares: the model's pixels, unmarked
            receipt.record(position, artifact, prompt=job.prompt, decisions=checks, fields={
                "key_id": principal.key_id, "user": job.user, "kind": job.kind.value, "task": plan.task,
                "parameters": {**unsalted, "seed": result.seed, "steps": extra.get("steps", plan.steps),
                               "size": plan.size},
                "parents": list(parent_ids), "weights_hash": backend.weights_hash,
                "pixels_hash": decoded_hash, "device": backend.device.split(":")[0],
                # Where the model ran: a remote backend (a Ray replica) says its own threads.
                "cpu_threads": getattr(backend, "cpu_threads", None) or current_cpu_threads(),
                "batch_invariant": backend.batch_invariant, "badge": badge.to_dict() if badge else None,
                "watermark": marks.watermark, **({"cache": cache_states[position]} if cache_states else {}),
                **output_audit_fields(plan, marks, extra)})
            produced.append(ProducedImage(artifact, result.seed, result.revised_prompt, result.unknown_words,
                                          extra.get("validation")))
        self._write(plan, principal, uploads, produced, params, receipt)
        return produced

    def _write(self, plan: Plan, principal: Principal, uploads: list[Artifact], produced: list[ProducedImage],
               params: dict, receipt: Receipt) -> None:
        job, times = plan.job, plan.times
        records = [(upload, {"kind": "upload"}) for upload in uploads]
        records += [(item.artifact, {**params, "seed": item.seed, "audit_index": item.artifact.audit_index})
                    for item in produced]
        with times.step("store"):
            for artifact, _ in records:
                self.blobs.put(artifact.data)
            if job.mask is not None:
                self.blobs.put(job.mask)  # kept (content-addressed) so that replay can remake a masked edit
            if job.markup is not None:
                self.blobs.put(job.markup)
        with times.step("audit"):
            entries = receipt.entries()
        with times.step("store"):
            self.database.record_images(records, key_id=principal.key_id, user=job.user, audit=entries,
                                        salts=receipt.salts)
