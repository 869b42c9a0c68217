"""Provenance use cases: an image's manifest, verifying any file, lineage, audit proofs, erasing a prompt.

Everything is tenant-scoped: another tenant's image or audit entry is reported as not found, and a
verified file is matched only against the caller's own images.
"""

from __future__ import annotations

import io
import json
from typing import Any

from PIL import Image

from pictor.core import sha256_hex
from pictor.governance import watermark
from pictor.governance.provenance import read
from pictor.service import erasure
from pictor.service.errors import InvalidRequest, NotFoundError
from pictor.service.governance import Governance
from pictor.service.inputs import ACCEPTED_FORMATS, open_image
from pictor.service.marking import UNMARKABLE
from pictor.storage import BlobStore, Database, ImageNotFound, ImageRecord, Principal


def read_watermark(image: Image.Image, database: Database, tenant_id: str | None) -> tuple[dict[str, Any],
                                                                                         ImageRecord | None]:
    """The watermark's report, and the image it names when exactly one of the tenant's images has that id prefix
    (`tenant_id` None: any tenant, for the operator's tools)."""
    found = watermark.detect(image)
    report = {"detected": found.detected, "applicable": True, "artifact_id": None,
              "confidence": round(found.confidence, 3),
              "artifact_prefix": found.artifact_prefix if found.detected else None}
    if not found.detected:
        return report, None
    candidates = database.images_with_prefix(tenant_id, found.artifact_prefix)
    if len(candidates) != 1:
        return report, None
    report["artifact_id"] = candidates[0].id
    return report, candidates[0]


def open_to_verify(data: bytes) -> tuple[str, Image.Image | None]:
    """The format of a file to verify and its pixels: every output format Pictor makes is accepted. PNG, JPEG and
    WebP as for inputs; a GIF (its first frame: the watermark is not read from it, see `unmarked_report`); an SVG
    has no pixels (None). Anything else is a 400-style InvalidRequest, as for inputs."""
    if data[:6] in (b"GIF87a", b"GIF89a"):
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            raise InvalidRequest("The 'image' file is corrupt or truncated.", "image", "invalid_image_file") from None
        return "gif", image
    if _looks_like_svg(data):
        return "svg", None
    image = open_image(data, "image")
    return ACCEPTED_FORMATS[image.format], image


def _looks_like_svg(data: bytes) -> bool:
    try:
        head = data[:4096].decode("utf-8").lstrip("\ufeff \t\r\n")
    except UnicodeDecodeError:
        return False
    return (head.startswith("<?xml") or head.startswith("<svg")) and "<svg" in head


def unmarked_report(fmt: str) -> dict[str, Any]:
    """The watermark's report for formats that cannot carry one (GIF, SVG): not applicable, and why."""
    return {"detected": False, "applicable": False, "reason": UNMARKABLE[fmt], "artifact_id": None,
            "confidence": None, "artifact_prefix": None}


class ProvenanceService:
    def __init__(self, database: Database, blobs: BlobStore, governance: Governance):
        self.database = database
        self.blobs = blobs
        self.governance = governance

    @property
    def trust_anchors(self) -> bytes:
        """The PEM that verifiers should trust for Pictor's manifests."""
        return self.governance.credentials.trust_anchors_pem

    def _summary(self, data: bytes, fmt: str) -> dict[str, Any]:
        return read(data, fmt, self.trust_anchors).to_dict()

    def image_provenance(self, principal: Principal, image_id: str) -> dict[str, Any]:
        record = self.database.get_image(principal.tenant_id, image_id)
        described = {"id": record.id, "content_hash": record.content_hash,
                     "audit_index": record.params.get("audit_index"), "deleted": None, "c2pa": None}
        if record.deleted is not None:  # its bytes (and so its manifest) are gone; the hashes and the audit stay
            return {**described, "deleted": int(record.deleted.timestamp())}
        return {**described, "c2pa": self._summary(self.blobs.get(record.content_hash), record.format)}

    def verify(self, principal: Principal, data: bytes) -> dict[str, Any]:
        """What can be said of any file: its manifest's validity, and which of the caller's images it is."""
        fmt, image = open_to_verify(data)
        summary = self._summary(data, fmt)
        record = self.database.find_image(principal.tenant_id, sha256_hex(data))
        match = "exact" if record is not None else None
        claimed = (summary.get("pictor") or {}).get("artifact_id")
        if record is None and claimed and summary["validation_state"] in ("Trusted", "Valid"):
            try:  # re-saved with its manifest intact: the manifest still names the artifact
                record, match = self.database.get_image(principal.tenant_id, claimed), "manifest"
            except ImageNotFound:
                record = None
        if fmt in UNMARKABLE or image is None:
            mark, marked = unmarked_report(fmt), None
        else:
            mark, marked = read_watermark(image, self.database, principal.tenant_id)
        if record is None and marked is not None:  # metadata stripped, pixels re-encoded: the watermark remains
            record, match = marked, "watermark"
        return {"c2pa": summary, "image": None if record is None else {**_describe(record), "match": match},
                "lineage": None if record is None else self.lineage(principal, record.id), "watermark": mark}

    def lineage(self, principal: Principal, image_id: str) -> dict[str, Any]:
        """Ancestors and descendants, each edge with the operation that made the child."""
        root = self.database.get_image(principal.tenant_id, image_id)
        ancestors, edges, seen = [], [], {root.id}
        frontier = [root]
        while frontier:
            child = frontier.pop()
            for parent_id in child.parents:
                edges.append({"parent": parent_id, "child": child.id, "operation": _operation(child)})
                if parent_id not in seen:
                    seen.add(parent_id)
                    parent = self.database.get_image(principal.tenant_id, parent_id)
                    ancestors.append(_describe(parent))
                    frontier.append(parent)
        descendants, frontier = [], [root.id]
        while frontier:
            parent_id = frontier.pop()
            for child_id in self.database.children_of(principal.tenant_id, parent_id):
                child = self.database.get_image(principal.tenant_id, child_id)
                edges.append({"parent": parent_id, "child": child_id, "operation": _operation(child)})
                if child_id not in seen:
                    seen.add(child_id)
                    descendants.append(_describe(child))
                    frontier.append(child_id)
        return {"id": root.id, "ancestors": ancestors, "descendants": descendants, "edges": edges}

    # ---- the audit log -------------------------------------------------------------------------

    def checkpoint(self) -> dict[str, Any]:
        """The latest signed checkpoint (signing one first if entries are newer) and the key that signed it."""
        audit = self.governance.audit
        checkpoint = audit.checkpoint()
        return {"size": checkpoint.size, "root": checkpoint.root, "checkpoint": checkpoint.note,
                "origin": audit.origin, "public_key": audit.signer.public_key_pem(),
                "verifier_key": audit.signer.verifier_key()}

    def inclusion(self, principal: Principal, index: int, tree_size: int | None) -> dict[str, Any]:
        """Proof that one of the caller's entries is in the log (another tenant's entry: not found)."""
        entries = self.database.audit_entries(index, index + 1) if index >= 0 else []
        if not entries or entries[0].entry is None or json.loads(entries[0].entry).get("tenant") != principal.tenant_id:
            raise NotFoundError(f"No audit entry {index} for this tenant.", "index", "not_found")
        try:
            return self.governance.audit.inclusion(index, tree_size)
        except ValueError as error:
            raise InvalidRequest(str(error), "tree_size", "invalid_tree_size") from None

    def consistency(self, old_size: int, new_size: int | None) -> dict[str, Any]:
        try:
            return self.governance.audit.consistency(old_size, new_size)
        except ValueError as error:
            raise InvalidRequest(str(error), "old_size", "invalid_tree_size") from None

    def erase_prompt(self, principal: Principal, image_id: str) -> dict[str, Any]:
        """Forget an image's prompt (and the salt of its hash); the audit log stays verifiable."""
        record = erasure.erase_prompt(self.database, self.blobs, principal.tenant_id, image_id)
        return {"id": record.id, "prompt_erased": True}


def _operation(record: ImageRecord) -> str:
    return str(record.params.get("kind", "unknown"))


def _describe(record: ImageRecord) -> dict[str, Any]:
    return {"id": record.id, "created": int(record.created.timestamp()), "operation": _operation(record),
            "model": record.model, "seed": record.seed, "format": record.format,
            "size": f"{record.width}x{record.height}", "audit_index": record.params.get("audit_index"),
            "prompt": record.params.get("prompt"), "parents": list(record.parents),
            "deleted": None if record.deleted is None else int(record.deleted.timestamp())}
