"""The composition root: every part of Pictor is built here, from one Settings, in one flat sequence.

The server (api/app.py) and every CLI command that needs more than its arguments build from here, so that
`pictor replay`, `pictor verify` and `pictor generate` see exactly what the server sees (InvokeAI's
`ApiDependencies.initialize` is the model). Two builds of the same parts:

- `Installation.open`: the data folder, the database and the blob store (a folder or S3: `blob_url`); governance and
  the provenance service on first use. No model is loaded: for the commands that read and write records (keys,
  tenants, audit, verify, sweep).
- `Components.build`: the same installation, then the model registry, the services and the API's own parts
  (signed links, the per-key request limiter, metrics, the keyless demo caller). For the server and for the
  commands that make or remake images (generate, edit, replay).

This module sits above every layer (it is the one place that knows them all); nothing below imports it.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from pictor.api.metrics import Metrics
from pictor.api.security import DEMO_TENANT, LinkSigner, RateLimiter
from pictor.config import Settings
from pictor.engine.registry import ModelRegistry
from pictor.service.batches import BatchRunner
from pictor.service.files import FileService
from pictor.service.gallery import Gallery
from pictor.service.governance import Governance
from pictor.service.images import ImageService
from pictor.service.jobs import JobRunner
from pictor.service.provenance import ProvenanceService
from pictor.service.quotas import QuotaKeeper
from pictor.service.result_cache import ResultCache
from pictor.service.sessions import SessionService
from pictor.service.tenant_admin import TenantAdmin
from pictor.storage import BlobStore, Database, DataDir, Principal, open_blob_store
from pictor.storage.batches import BatchStore
from pictor.storage.database import JobStore

log = logging.getLogger(__name__)


def link_secret(data_dir: Path) -> bytes:
    """A per-installation secret for signed links, made on first start and kept private."""
    path = data_dir / "link-secret"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(32))
    return path.read_bytes()


def default_registry(settings: Settings) -> ModelRegistry:
    """The models this process serves: its own (`local_registry`), or a Ray Serve application's replicas."""
    if settings.engine == "ray":
        from pictor.ray_engine import connect

        registry = ModelRegistry()
        for backend, default in connect(settings):
            registry.register(backend, default=default, max_batch=settings.max_batch, step_batching=False)
        return registry
    return local_registry(settings)


def local_registry(settings: Settings) -> ModelRegistry:
    """The embedded model (the default unless an operator's model says otherwise) and the operator's models, in
    this process (a server's own, or a Ray Serve replica's)."""
    from pictor.embedded import WEIGHTS_DIR
    from pictor.engine.embedded_backend import EmbeddedBackend
    from pictor.engine.placement import apply_cpu_threads

    apply_cpu_threads(settings.torch_threads)  # before any model runs: the server and replay alike
    registry = ModelRegistry()
    backend = EmbeddedBackend(settings.embedded_model or WEIGHTS_DIR, device=settings.resolved_device(),
                              batch_invariant=settings.batch_invariant)
    registry.register(backend, default=True, max_batch=settings.max_batch, step_batching=settings.step_batching)
    register_operator_models(registry, settings)
    return registry


def register_operator_models(registry: ModelRegistry, settings: Settings) -> None:
    """The operator's diffusers models (--model, the models file), each loaded once and resident."""
    from pictor.engine.diffusers_backend import DiffusersBackend
    from pictor.engine.models_file import model_specs

    for spec in model_specs(settings.models, settings.models_file):
        if spec.name in registry.workers:
            raise ValueError(f"model name {spec.name!r} is taken; choose another")
        log.info("loading model %s from %s", spec.name, spec.path)
        backend = DiffusersBackend(spec, device=settings.resolved_device(), batch_invariant=settings.batch_invariant)
        registry.register(backend, default=spec.default, max_batch=settings.max_batch)


@dataclass
class Installation:
    """One installation's records: its data folder, database and blob store; governance and provenance when asked.

    Governance is built on first use (it loads the signing credentials, the content policy and any image
    classifier), so that `pictor keys list` touches nothing but the database.
    """

    settings: Settings
    data: DataDir
    database: Database
    blobs: BlobStore

    @classmethod
    def open(cls, settings: Settings) -> Installation:
        data = DataDir.resolve(settings.data_dir).create()
        blobs = open_blob_store(settings.blob_url, data.blobs)
        return cls(settings, data, Database(settings.database_url or data.database_url), blobs)

    @cached_property
    def governance(self) -> Governance:
        return Governance.from_settings(self.settings, self.data.root, self.database)

    @cached_property
    def provenance(self) -> ProvenanceService:
        return ProvenanceService(self.database, self.blobs, self.governance)

    def close(self) -> None:
        self.database.close()


@dataclass
class Components:
    """Everything the server runs on, built once by `build`; the commands that make images use the same."""

    settings: Settings
    database: Database
    blobs: BlobStore
    registry: ModelRegistry
    service: ImageService
    governance: Governance
    provenance: ProvenanceService
    sessions: SessionService
    signer: LinkSigner
    limiter: RateLimiter
    jobs: JobRunner  # async jobs; started and stopped by the app's lifespan
    batches: BatchRunner  # batches (on the jobs); started after them, stopped before them
    quotas: QuotaKeeper  # the tenants' quotas, shared with the image service
    gallery: Gallery  # the tenant's images, searched
    files: FileService  # batch input and output files
    tenant_admin: TenantAdmin  # a tenant's keys and settings, for its admin keys
    metrics: Metrics = field(default_factory=Metrics)
    keyless_principal: Principal | None = None

    @classmethod
    def build(cls, settings: Settings, registry: ModelRegistry | None = None) -> Components:
        """Storage, governance, the models (`registry`, or the settings' own) and the services, in that order.

        Pending audit reservations are not voided here: only the serving process may do that (see Governance.open).
        """
        installation = Installation.open(settings)
        try:
            database, blobs = installation.database, installation.blobs
            governance = installation.governance
            registry = registry or default_registry(settings)
        except BaseException:
            installation.close()  # a model folder that does not load leaves no database open
            raise
        keyless = None
        if settings.keyless:
            tenant = database.ensure_tenant(DEMO_TENANT)
            keyless = Principal(tenant_id=tenant.id, tenant_name=tenant.name, key_id=None, role="admin")
        quotas = QuotaKeeper(database)
        rate_limits = {name: limit for name, limit in (("key", settings.work_per_minute_per_key),
                                                       ("tenant", settings.work_per_minute_per_tenant)) if limit}
        service = ImageService(registry, database, blobs, governance, settings.mask_blend_px,
                               settings.auto_edit_mask, ResultCache(settings.result_cache_mb * 1024 * 1024), quotas,
                               rate_limits)
        metrics = Metrics()
        jobs = JobRunner(service, JobStore(database), blobs, settings.resolved_job_workers(),
                         settings.job_lease_s, observe_steps=metrics.observe_steps)
        batch_store = BatchStore(database)
        return cls(settings=settings, database=database, blobs=blobs, registry=registry,
                   service=service, governance=governance, provenance=installation.provenance,
                   sessions=SessionService(service, database, blobs),
                   signer=LinkSigner(link_secret(installation.data.root), settings.url_lifetime_s, settings.public_url),
                   limiter=RateLimiter(settings.rate_limit_per_minute), keyless_principal=keyless, quotas=quotas,
                   jobs=jobs, batches=BatchRunner(jobs, batch_store, blobs),
                   gallery=Gallery(database, blobs, governance, service), files=FileService(batch_store, blobs, quotas),
                   tenant_admin=TenantAdmin(database, governance), metrics=metrics)

    def presigned_link(self, tenant_id: str, image_id: str) -> str | None:
        """The blob store's own link to an image where `blob_presigned_urls` asks for one; None: Pictor's own link."""
        if not self.settings.blob_presigned_urls:
            return None
        return self.service.presigned_link(tenant_id, image_id, self.settings.url_lifetime_s)

    def close(self) -> None:
        self.registry.close()
        self.governance.audit.checkpoint()  # a clean stop leaves every entry under a signed checkpoint
        self.database.close()
