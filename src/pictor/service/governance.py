"""The governance steps of the request path, composed: C2PA signing and the audit record of each output.

One `Governance` object per installation holds the signing credentials and the audit log. For each
request, `Receipt` reserves audit indexes before signing (the manifest names its audit entry), and
builds the entries that are written in the same transaction as the image records.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from pictor.config import Settings
from pictor.core import Artifact, Decision
from pictor.governance import credentials as signing
from pictor.governance.audit import AuditLog, new_salt, salted_hash
from pictor.governance.checkpoint import CheckpointSigner
from pictor.governance.classifiers import load_classifier
from pictor.governance.policy import Policy
from pictor.governance.provenance import Parent, ProvenanceClaim, sign
from pictor.storage import Database


def new_job_id() -> str:
    return f"job_{secrets.token_hex(12)}"


def pixels_hash(image: Image.Image) -> str:
    """The hash of decoded pixels (mode, size, bytes): what replay compares, since signed files carry times."""
    digest = hashlib.sha256(f"{image.mode}:{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


@dataclass
class Governance:
    credentials: signing.SigningCredentials
    audit: AuditLog
    policy: Policy = field(default_factory=Policy.load)

    @property
    def policy_version(self) -> str:
        return self.policy.version

    def level(self, moderation: str, tenant_settings: dict[str, Any]) -> str:
        """The policy level of a request: `moderation=auto` is the tenant's level, `low` relaxes it (a tenant
        set to `strict` stays strict: a regulated tenant's choice outranks a request's)."""
        tenant_level = tenant_settings.get("moderation_level")
        if moderation == "low" and tenant_level == "strict":
            return "strict"
        return self.policy.resolve_level(moderation, tenant_level)

    def refuse(self, decision: Decision, *, tenant: str | None, key_id: str | None, user: str | None, kind: str,
               texts: dict[str, str]) -> None:
        """The audit entry of a refused request: which rules, at which stage; the texts only as salted hashes."""
        (index,) = self.audit.reserve(1)
        salt = new_salt()
        item = self.audit.entry(index, {
            "event": "refused", "tenant": tenant, "key_id": key_id, "user": user, "kind": kind,
            "text_hashes": {name: salted_hash(text, salt) for name, text in texts.items() if text},
            "policy": {"version": self.policy_version, "stage": decision.stage, "rule_ids": list(decision.rule_ids),
                       "categories": list(decision.categories),
                       **({"scores": dict(decision.scores)} if decision.scores else {})}})
        self.audit.database.finalise_audit([item], {f"audit:{index}": salt})

    def record_admin(self, action: str, *, tenant: str | None, actor: str, key_id: str | None = None,
                     **details: Any) -> int:
        """An audit entry for an administrative action (a key made, rotated or revoked; a tenant setting changed; a
        prompt erased; an image deleted): what, on which tenant, by whom (`key:<id>` through the API,
        `operator:<user>` from the command line) and through which key; the entry's time is when."""
        (index,) = self.audit.reserve(1)
        item = self.audit.entry(index, {"event": "admin", "action": action, "tenant": tenant, "actor": actor,
                                        "key_id": key_id, "details": details})
        self.audit.database.finalise_audit([item], {})
        return index

    @classmethod
    def open(cls, root: Path, database: Database, origin: str = "pictor.local/audit", checkpoint_every: int = 100,
             chain: Path | None = None, key: Path | None = None, anchors: Path | None = None,
             policy: Path | None = None, image_classifier: str | None = None,
             audit_key: Path | None = None) -> Governance:
        """Credentials (the operator's, or a CA made on first start) and the audit log, whose checkpoints are signed
        with `audit_key` (the operator's, shared by every process) or a key made in the data folder on first start.

        Only the serving process should call `audit.void_pending()` (at start-up, before serving): from a
        command-line tool it would void the reservations of a server that is running.
        """
        if chain is not None or key is not None:
            if chain is None or key is None:
                raise ValueError("an own signing chain needs both signing_chain and signing_key")
            credentials = signing.from_files(chain, key, anchors)
        else:
            credentials = signing.load_or_create(root / "provenance")
        if audit_key is not None:
            signer = CheckpointSigner.load(audit_key, origin)
        else:
            signer = CheckpointSigner.load_or_create(root / "audit" / "checkpoint-key.pem", origin)
        classifier = load_classifier(image_classifier) if image_classifier else None
        return cls(credentials, AuditLog(database, signer, origin, checkpoint_every=checkpoint_every),
                   Policy.load(policy, image_classifier=classifier))

    @classmethod
    def from_settings(cls, settings: Settings, root: Path, database: Database) -> Governance:
        return cls.open(root, database, settings.audit_origin, settings.audit_checkpoint_every, settings.signing_chain,
                        settings.signing_key, settings.signing_anchors, settings.policy_file,
                        settings.image_classifier, settings.audit_signing_key)

    def receipt(self, count: int) -> Receipt:
        return Receipt(self, self.audit.reserve(count), new_job_id())


@dataclass
class Receipt:
    """One request's outputs on their way to storage: reserved audit indexes, salts, signed bytes, entries."""

    governance: Governance
    indexes: list[int]
    job_id: str
    salts: dict[str, str] = field(default_factory=dict)
    _fields: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def sign(self, position: int, artifact_id: str, data: bytes, fmt: str, *, prompt: str, model: str,
             weights_hash: str, seed: int, parents: list[Parent], actions: Sequence[dict[str, Any]] = (),
             assertions: Sequence[dict[str, Any]] = ()) -> bytes:
        """The encoded output with its C2PA manifest: the last step that touches its bytes."""
        salt = self.salts.setdefault(artifact_id, new_salt())
        claim = ProvenanceClaim(
            artifact_id=artifact_id, kind="edited" if parents else "created", model_id=model,
            weights_hash=weights_hash, seed=seed, prompt_hash=salted_hash(prompt, salt), job_id=self.job_id,
            format=fmt, audit_index=self.indexes[position], policy_version=self.governance.policy_version,
            parents=parents, extra_actions=actions, extra_assertions=assertions)
        return sign(data, claim, self.governance.credentials)

    def record(self, position: int, artifact: Artifact, fields: dict[str, Any], prompt: str,
               decisions: Sequence[Decision] = ()) -> None:
        """The audit entry of one stored output (the prompt only as its salted hash), with the policy's decisions."""
        salt = self.salts.setdefault(artifact.id, new_salt())
        self._fields.append((self.indexes[position], {
            "event": "image", "job_id": self.job_id, "artifact_id": artifact.id, "tenant": artifact.tenant_id,
            "output_hash": artifact.content_hash, "model": artifact.model, "seed": artifact.seed,
            "prompt_hash": salted_hash(prompt, salt),
            "policy": {"version": self.governance.policy_version, "decision": "allowed",
                       "checks": [{"stage": d.stage, "rule_ids": list(d.rule_ids),
                                   **({"scores": dict(d.scores)} if d.scores else {})} for d in decisions]},
            **fields}))

    def entries(self) -> list[tuple[int, str, str]]:
        return self.governance.audit.entries(self._fields)

    def fail(self, error: BaseException) -> None:
        """Close the reservations of a request that failed after reserving, so later entries can be checkpointed."""
        items = [self.governance.audit.entry(index, {"event": "failed", "job_id": self.job_id,
                                                     "error": type(error).__name__}) for index in self.indexes]
        self.governance.audit.database.finalise_audit(items)
