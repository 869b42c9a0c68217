"""The composition root: builds every component once from Settings and hands them to the routes."""

from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from pictor.api.errors import ApiError
from pictor.api.metrics import Metrics
from pictor.api.permissions import allows, permission_for
from pictor.api.security import DEMO_TENANT, LinkSigner, RateLimiter, authenticate
from pictor.config import Settings
from pictor.engine.registry import ModelRegistry
from pictor.service.batches import BatchRunner
from pictor.service.governance import Governance
from pictor.service.images import ImageService
from pictor.service.jobs import JobRunner
from pictor.service.provenance import ProvenanceService
from pictor.service.quotas import QuotaKeeper
from pictor.service.result_cache import ResultCache
from pictor.service.sessions import SessionService
from pictor.storage import Database, DataDir, LocalBlobStore, Principal
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
class Components:
    settings: Settings
    database: Database
    blobs: LocalBlobStore
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
    metrics: Metrics = field(default_factory=Metrics)
    keyless_principal: Principal | None = None

    @classmethod
    def build(cls, settings: Settings, registry: ModelRegistry | None = None) -> Components:
        data = DataDir.resolve(settings.data_dir).create()
        database = Database(settings.database_url or data.database_url)
        blobs = LocalBlobStore(data.blobs)
        registry = registry or default_registry(settings)
        governance = Governance.from_settings(settings, data.root, database)
        governance.audit.void_pending()  # requests that a crash cut short: their reservations become void entries
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
        jobs = JobRunner(service, JobStore(database), blobs, settings.resolved_job_workers())
        return cls(settings=settings, database=database, blobs=blobs, registry=registry,
                   service=service, governance=governance,
                   provenance=ProvenanceService(database, blobs, governance),
                   sessions=SessionService(service, database, blobs),
                   signer=LinkSigner(link_secret(data.root), settings.url_lifetime_s),
                   limiter=RateLimiter(settings.rate_limit_per_minute), keyless_principal=keyless, quotas=quotas,
                   jobs=jobs, batches=BatchRunner(jobs, BatchStore(database), blobs))

    def close(self) -> None:
        self.registry.close()
        self.governance.audit.checkpoint()  # a clean stop leaves every entry under a signed checkpoint
        self.database.close()


def components(request: Request) -> Components:
    return request.app.state.components


def principal(request: Request) -> Principal:
    """The authenticated caller, allowed by its key's role to call the route that matched (a 403 naming the
    permission otherwise); also where each key's rate limit is applied."""
    parts = components(request)
    started = time.perf_counter()
    caller = getattr(request.state, "authenticated", None) or authenticate(request, parts.database,
                                                                           parts.keyless_principal)
    route = getattr(request.scope.get("route"), "path", request.url.path)
    needed = permission_for(request.method, route)
    if not allows(caller.role, needed):
        raise ApiError(403, f"This key's role ({caller.role}) does not have the '{needed or 'unlisted route'}' "
                            "permission this request needs.", "invalid_request_error", None, "permission_denied")
    parts.limiter.check(caller.key_id or caller.tenant_id)
    request.state.principal = caller
    request.state.auth_ms = (time.perf_counter() - started) * 1000  # a step of Server-Timing
    return caller


Caller = Annotated[Principal, Depends(principal)]
