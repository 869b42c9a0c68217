"""C2PA manifests: sign every output (what made it, from which parents) and read them back, validated.

`sign` is the last step before storage: any pixel change after it makes the manifest `Invalid`.
A generation gets a `c2pa.created` action, an edit or variation `c2pa.opened` (its parent image, an ingredient
whose own manifest c2pa embeds, so an edit of an edit carries both ancestors) then `c2pa.edited`; both with the
IPTC digital source type `trainedAlgorithmicMedia`. A custom assertion `org.pictor.generation` holds the claim.

Threads: one `c2pa.Context` (settings + signer) is made per credentials object and process, then shared. c2pa-python
guards shared contexts and signers (`_native_call`), and c2pa-rs `Context` is thread-safe, so worker threads may
sign at once (the tests do it). A Builder or Reader is made per call and never shared. Contexts do not survive
`fork()`: the cache is keyed by process id.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import c2pa

from pictor import __version__
from pictor.governance.credentials import SigningCredentials

ASSERTION = "org.pictor.generation"
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
# c2pa-python 0.38 also signs GIF and SVG (the manifest goes in an application extension / a <metadata> element).
MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp", "gif": "image/gif",
              "svg": "image/svg+xml"}
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif",
              "image/svg+xml": "svg"}


def mime_type(format_or_mime: str) -> str:
    """`png`, `JPEG`, `.webp` or `image/png` -> the MIME type c2pa wants; ValueError for other formats."""
    name = format_or_mime.lower().lstrip(".")
    mime = MIME_TYPES.get(name, name)
    if mime not in EXTENSIONS:
        raise ValueError(f"no C2PA signing for format {format_or_mime!r}; one of png, jpeg, webp, gif, svg")
    return mime


class Parent(NamedTuple):
    """An input image: its encoded bytes, format (`png` or a MIME type) and a title (e.g. its artifact id)."""

    data: bytes
    format: str
    title: str


@dataclass(frozen=True)
class ProvenanceClaim:
    """What Pictor states about one output. `prompt_hash` is salted: the manifest travels with the image.

    `parents`: for an edit the first is the image edited (`parentOf`); other inputs (a mask, reference images, and
    every input of a generation) are `inputTo` ingredients. `extra_actions`: C2PA action dicts appended after the
    main ones, e.g. `{"action": "c2pa.edited", "description": "visible AI badge"}`. `extra_assertions`:
    `{"label": ..., "data": ...}` dicts; c2pa refuses a `c2pa.watermarked` action without a `c2pa.soft-binding`
    assertion (`{"alg": ..., "blocks": [{"scope": {}, "value": <base64>}]}`) naming the watermark.
    """

    artifact_id: str
    kind: Literal["created", "edited"]
    model_id: str
    weights_hash: str
    seed: int
    prompt_hash: str
    job_id: str
    format: str
    audit_index: int | None = None
    policy_version: str | None = None
    parents: Sequence[Parent] = ()
    extra_actions: Sequence[dict[str, Any]] = ()
    extra_assertions: Sequence[dict[str, Any]] = ()

    def assertion(self) -> dict[str, Any]:
        """The `org.pictor.generation` assertion's data."""
        names = ("artifact_id", "kind", "model_id", "weights_hash", "seed", "prompt_hash", "job_id", "audit_index",
                 "policy_version")
        return {name: getattr(self, name) for name in names}


@dataclass
class Ancestor:
    """One ingredient of a manifest, and (recursively) its own ingredients, as far as the manifests reach."""

    title: str | None
    relationship: str | None
    format: str | None
    artifact_id: str | None  # from its Pictor assertion; None for an image without a Pictor manifest
    actions: list[dict[str, Any]] = field(default_factory=list)
    ingredients: list[Ancestor] = field(default_factory=list)


@dataclass
class ProvenanceSummary:
    """What a verifier needs to know about an image's manifest; `validation_state` None: no manifest at all."""

    validation_state: Literal["Trusted", "Valid", "Invalid"] | None
    errors: list[str] = field(default_factory=list)
    title: str | None = None
    claim_generator: str | None = None
    issuer: str | None = None
    signer: str | None = None
    signed_at: str | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)
    pictor: dict[str, Any] | None = None
    ingredients: list[Ancestor] = field(default_factory=list)

    @property
    def lineage(self) -> list[str | None]:
        """Artifact ids of the `parentOf` chain, nearest first (an edit of an edit: [parent, grandparent])."""
        chain, level = [], self.ingredients
        while parent := next((a for a in level if a.relationship == "parentOf"), None):
            chain.append(parent.artifact_id)
            level = parent.ingredients
        return chain

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "lineage": self.lineage}


def sign(image: bytes, claim: ProvenanceClaim, credentials: SigningCredentials) -> bytes:
    """`image` (already encoded in `claim.format`) with a signed C2PA manifest embedded."""
    mime = mime_type(claim.format)
    if claim.kind == "created":
        actions = [{"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                    "softwareAgent": {"name": claim.model_id}}]
    elif claim.kind == "edited":
        if not claim.parents:
            raise ValueError("an edited image needs its parent image")
        actions = [{"action": "c2pa.opened", "parameters": {"ingredientIds": ["parent"]}},
                   {"action": "c2pa.edited", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                    "softwareAgent": {"name": claim.model_id}}]
    else:
        raise ValueError(f"unknown claim kind {claim.kind!r}")
    manifest = {
        "claim_generator_info": [{"name": "Pictor", "version": __version__}],
        "title": f"{claim.artifact_id}.{EXTENSIONS[mime]}",
        "format": mime,
        "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": actions + list(claim.extra_actions)}},
                       {"label": ASSERTION, "data": claim.assertion()}, *claim.extra_assertions],
    }
    builder = c2pa.Builder(manifest, _signing_context(credentials, os.getpid()))
    try:
        for i, parent in enumerate(claim.parents):
            first_of_edit = i == 0 and claim.kind == "edited"
            ingredient = {"title": parent.title, "relationship": "parentOf" if first_of_edit else "inputTo",
                          "label": "parent" if first_of_edit else f"input{i}"}
            builder.add_ingredient(ingredient, mime_type(parent.format), io.BytesIO(parent.data))
        signed = io.BytesIO()
        builder.sign(mime, io.BytesIO(image), signed)
    finally:
        builder.close()
    return signed.getvalue()


def read(image: bytes, format_or_mime: str, trust_anchors_pem: bytes | None = None) -> ProvenanceSummary:
    """The manifest of `image`, validated; "Trusted" needs the signer's root in `trust_anchors_pem`."""
    mime = mime_type(format_or_mime)
    context = _reading_context(trust_anchors_pem or b"", os.getpid())
    try:
        reader = c2pa.Reader.try_create(mime, io.BytesIO(image), context=context)
    except c2pa.C2paError as error:  # a manifest is there but cannot be parsed or verified at all
        return ProvenanceSummary("Invalid", errors=[str(error)])
    if reader is None:
        return ProvenanceSummary(None)
    with reader:
        store = json.loads(reader.json())
        state = reader.get_validation_state()
    manifests = store.get("manifests", {})
    active = manifests.get(store.get("active_manifest"), {})
    info = active.get("signature_info", {})
    generator = next(iter(active.get("claim_generator_info", [])), {})
    return ProvenanceSummary(
        validation_state=state,
        errors=_failure_codes(store.get("validation_results", {})),
        title=active.get("title"),
        claim_generator=" ".join(str(generator[k]) for k in ("name", "version") if k in generator) or None,
        issuer=info.get("issuer"),
        signer=info.get("common_name"),
        signed_at=info.get("time"),
        actions=_actions(active),
        pictor=_assertion(active, ASSERTION),
        ingredients=[_ancestor(ingredient, manifests, depth=0) for ingredient in active.get("ingredients", [])],
    )


@functools.lru_cache(maxsize=8)
def _signing_context(credentials: SigningCredentials, pid: int) -> c2pa.Context:
    """Settings and signer parsed once per credentials (and process); the context owns the signer."""
    return c2pa.Context(_settings(credentials.trust_anchors_pem), credentials.make_signer())


@functools.lru_cache(maxsize=8)
def _reading_context(trust_anchors_pem: bytes, pid: int) -> c2pa.Context:
    return c2pa.Context(_settings(trust_anchors_pem))


def _settings(trust_anchors_pem: bytes) -> c2pa.Settings:
    """Offline (no remote manifests, no OCSP), no thumbnails, trusting `trust_anchors_pem` when given."""
    settings: dict[str, Any] = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
                                "builder": {"thumbnail": {"enabled": False}}}
    if trust_anchors_pem.strip():
        settings["trust"] = {"trust_anchors": trust_anchors_pem.decode()}
    return c2pa.Settings.from_dict(settings)


def _assertion(manifest: dict, label: str) -> Any:
    return next((a.get("data") for a in manifest.get("assertions", []) if a.get("label") == label), None)


def _actions(manifest: dict) -> list[dict[str, Any]]:
    for label in ("c2pa.actions.v2", "c2pa.actions"):
        data = _assertion(manifest, label)
        if data is not None:
            return data.get("actions", [])
    return []


def _ancestor(ingredient: dict, manifests: dict, depth: int) -> Ancestor:
    manifest = manifests.get(ingredient.get("active_manifest"), {})
    pictor = _assertion(manifest, ASSERTION) or {}
    nested = manifest.get("ingredients", []) if depth < 64 else []
    return Ancestor(title=ingredient.get("title"), relationship=ingredient.get("relationship"),
                    format=ingredient.get("format"), artifact_id=pictor.get("artifact_id"),
                    actions=_actions(manifest),
                    ingredients=[_ancestor(i, manifests, depth + 1) for i in nested])


def _failure_codes(results: dict) -> list[str]:
    """Failure codes of the active manifest and of the ingredients' validation deltas."""
    codes = [item["code"] for item in results.get("activeManifest", {}).get("failure", [])]
    for delta in results.get("ingredientDeltas", []):
        codes += [item["code"] for item in delta.get("validationDeltas", {}).get("failure", [])]
    return codes
