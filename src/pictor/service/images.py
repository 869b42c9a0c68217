"""The Images use cases: generate, edit, variation, with or without streamed previews.

One path for all three, in the order of DESIGN.md's diagram, one module per step: plan the job
(service/planning: checks, policy on the input, decoding, what the model's scene reader makes of it),
admit it against the quotas, search its candidates on the model (service/search, service/model_runs, the
result cache first), animate a GIF (service/animation), check the outputs against the policy, then mark,
encode, sign and store them (service/marking, service/storing) and count the usage (service/usage).
Nothing is stored before the model has succeeded, so a refused or failed request leaves no state behind.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from pictor.core import ImageJob
from pictor.engine.registry import ModelRegistry
from pictor.engine.scene import SceneReader
from pictor.service import animation, vector
from pictor.service.content_checks import ContentChecks
from pictor.service.cpu_pool import run_on_cores
from pictor.service.encoding import MIME_TYPES
from pictor.service.errors import NotFoundError
from pictor.service.governance import Governance
from pictor.service.model_runs import CacheSettings, ModelRuns, PartialImage, preview_observer
from pictor.service.planning import Plan, Planner
from pictor.service.quotas import QuotaKeeper, work_units
from pictor.service.result_cache import ResultCache
from pictor.service.search import CandidateSearch, SearchOutcome
from pictor.service.storing import OutputStore, ProducedImage
from pictor.service.usage import add_compute, request_usage
from pictor.storage import BlobStore, Database, ImageNotFound, Principal

log = logging.getLogger(__name__)


@dataclass
class ImagesResult:
    created: int
    images: list[ProducedImage]
    size: str
    quality: str
    background: str
    output_format: str
    usage: dict = field(default_factory=dict)
    model_seconds: float = 0.0  # the longest model call behind this result (for Server-Timing)
    cache: str | None = None  # "hit" (every image from the result cache), "miss", None (not cacheable: no seed)
    svg_usage: dict | None = None  # SVG outputs: what the vectoriser did (upstream's separate `svg_usage`)
    steps_ms: dict[str, float] = field(default_factory=dict)  # milliseconds per step of the request's path


# What `stream` yields when nothing else was due for `keepalive_s` (an SSE comment on the wire).
KEEP_ALIVE = object()


class ImageService:
    def __init__(self, registry: ModelRegistry, database: Database, blobs: BlobStore, governance: Governance,
                 mask_blend_px: int = 0, auto_edit_mask: bool = True, result_cache: ResultCache | None = None,
                 quotas: QuotaKeeper | None = None, rate_limits: dict[str, int] | None = None):
        self.registry = registry
        self.quotas = quotas  # None: no quotas (command-line tools)
        self.rate_limits = rate_limits or {}  # work per minute: "key" and "tenant" (the server's defaults)
        self.result_cache = result_cache if result_cache is not None and result_cache.enabled else None
        self.database = database
        self.blobs = blobs
        self.governance = governance
        self.checks = ContentChecks(governance)
        self.planner = Planner(registry, database, self.checks, mask_blend_px, auto_edit_mask)
        self.outputs = OutputStore(database, blobs, governance)
        self.cache_settings = CacheSettings(self.result_cache, self.planner.mask_blend_px, auto_edit_mask)

    @property
    def mask_blend_px(self) -> int:
        return self.planner.mask_blend_px

    @property
    def auto_edit_mask(self) -> bool:
        return self.planner.auto_edit_mask

    async def prepare(self, job: ImageJob, principal: Principal | None = None, moderate: bool = True) -> Plan:
        """Check and decode everything a job needs, before any work: every refusal happens here (service/planning).

        `moderate=False` only for replaying an audited request, which the policy of its day already allowed.
        """
        return await self.planner.prepare(job, principal, moderate)

    def model_name(self, model: str | None) -> str:
        """The served model a request's `model` names (the default for None); UnknownModel otherwise."""
        return self.planner.model_name(model)

    def scene_reader(self, model: str | None) -> SceneReader:
        """The scene reader of the model a request names (engine/scene): how its texts and images are read."""
        return self.planner.scene_reader(model)

    async def run(self, job: ImageJob | Plan, principal: Principal,
                  on_partial: Callable[[PartialImage], None] | None = None, partial_images: int = 0,
                  encode_partials: bool = True, rate_limited: bool = True) -> ImagesResult:
        """Make, store and describe the job's images; previews go to `on_partial` if asked for (without their
        pixels when `encode_partials` is false: a caller that only counts them, for progress, gets empty `data`
        and the model makes no preview images at all). The tenant's daily quotas are counted first (`admit`), and
        given back if the work fails or is cancelled."""
        plan = job if isinstance(job, Plan) else await self.prepare(job, principal)
        await self.admit(plan, principal, rate_limited)
        try:
            return await self._run(plan, principal, on_partial, partial_images, encode_partials)
        except BaseException:
            if self.quotas is not None and plan.reservation is not None:
                await asyncio.to_thread(self.quotas.release, principal.tenant_id, plan.reservation)
                plan.reservation = None
            raise

    async def admit(self, plan: Plan, principal: Principal, rate_limited: bool = True) -> None:
        """Charge the plan's work to the tenant's and key's per-minute rate limits (`rate_limited`: not for queued
        jobs, which the queue already paces), then count its images and nominal steps against the tenant's daily
        quotas, once (a 429 beyond either)."""
        if self.quotas is None or plan.reservation is not None:
            return
        n = plan.job.n
        work = work_units(n * plan.candidates, plan.width, plan.height, plan.steps) if rate_limited else None
        with plan.times.step("quota"):
            plan.reservation = await asyncio.to_thread(self.quotas.admit, principal.tenant_id, principal.key_id, n,
                                                       n * plan.steps, work, self.rate_limits.get("key"),
                                                       self.rate_limits.get("tenant"))

    async def _run(self, plan: Plan, principal: Principal, on_partial: Callable[[PartialImage], None] | None,
                   partial_images: int, encode_partials: bool) -> ImagesResult:
        job = plan.job
        base_seed = job.seed if job.seed is not None else secrets.randbelow(2**31)
        worker = self.registry.worker(plan.model)
        previews = {}
        if on_partial is not None and partial_images > 0:  # candidate 0 of each image streams its previews
            loop = asyncio.get_running_loop()
            previews = {i: preview_observer(loop, i, partial_images, plan, on_partial, encode_partials)
                        for i in range(job.n)}
        runs = ModelRuns(plan, principal.tenant_id, worker, self.cache_settings, previews)
        outcome = await CandidateSearch(plan, runs, base_seed).run()
        started = time.perf_counter()
        model_runs, steps_run = outcome.runs, outcome.steps_run
        if plan.motion is not None:
            plate_runs = await self._animate(plan, runs, outcome)
            model_runs, steps_run = model_runs + plate_runs, steps_run + plate_runs * plan.steps
        validation_ms = outcome.scoring_ms + (time.perf_counter() - started) * 1000
        cache_states, model_seconds = outcome.cache_states, outcome.model_seconds
        times = plan.times
        times.add("model", model_seconds * 1000)
        times.add("validation", validation_ms)
        with times.step("policy"):
            checks = await run_on_cores(self.checks.check_images, job, [r.image for r in outcome.results],
                                        plan.level, "output", principal)
        produced = await run_on_cores(self.outputs.store, plan, principal, outcome.results, checks,
                                      cache_states, outcome.extras)
        usage = request_usage(plan, plan.sources)
        add_compute(usage, plan, model_runs, steps_run, validation_ms, outcome.made)
        return ImagesResult(
            created=int(time.time()),
            images=produced,
            size=plan.size,
            quality=plan.quality,
            background=plan.background,
            output_format=job.output_format,
            usage=usage,
            model_seconds=model_seconds,
            cache=None if cache_states is None else ("hit" if "miss" not in cache_states else "miss"),
            svg_usage=vector.usage(produced[0].artifact.data) if job.output_format == "svg" else None,
            steps_ms=dict(times.ms),
        )

    async def _animate(self, plan: Plan, runs: ModelRuns, outcome: SearchOutcome) -> int:
        """The GIF frames of each result (service/animation); returns how many model runs they took."""
        assert plan.motion is not None
        count = plan.job.frame_count or animation.FRAME_COUNT_DEFAULT
        model_runs = 0
        for result, extra in zip(outcome.results, outcome.extras):
            made = await animation.animate(result.image, plan.motion, count, result.seed, runs.inpaint, plan.reader)
            model_runs += made.model_calls
            extra["frames"] = made.frames
            verdict = extra["validation"]
            verdict["frames"] = made.to_dict()
            if not made.consistent:
                verdict["unmet"] = [*verdict["unmet"], *made.problems]
                if verdict["status"] == "passed":
                    verdict["status"] = "failed"
        return model_runs

    def forget_cached(self, tenant_id: str) -> None:
        """After a prompt's erasure: nothing the tenant's requests left in the result cache stays."""
        if self.result_cache is not None:
            self.result_cache.forget_tenant(tenant_id)

    async def stream(self, job: ImageJob | Plan, principal: Principal, partial_images: int,
                     keepalive_s: float | None = None) -> AsyncIterator:
        """Yield PartialImage events as previews arrive, then the ImagesResult; KEEP_ALIVE whenever
        `keepalive_s` passes without one. Closing (or cancelling) the iterator cancels the work: engine
        requests still queued are dropped, and nothing is stored unless storing had already begun."""
        events: asyncio.Queue = asyncio.Queue()
        task = asyncio.create_task(self.run(job, principal, on_partial=events.put_nowait,
                                            partial_images=partial_images))
        task.add_done_callback(lambda _: events.put_nowait(None))
        getter: asyncio.Task | None = None
        try:
            while True:
                getter = getter or asyncio.ensure_future(events.get())
                done, _ = await asyncio.wait({getter}, timeout=keepalive_s)
                if not done:
                    yield KEEP_ALIVE
                    continue
                event, getter = getter.result(), None
                if event is None:
                    break
                yield event
            yield task.result()
        finally:
            if getter is not None:
                getter.cancel()
            if not task.done():
                log.info("stream closed before its result: cancelling its work")
            task.cancel()

    # ---- reading back --------------------------------------------------------------------------

    def image_bytes(self, principal: Principal, image_id: str) -> tuple[bytes, str]:
        """The stored bytes and format of one of the tenant's images (NotFound for anyone else's)."""
        return self.tenant_image_bytes(principal.tenant_id, image_id)

    def tenant_image_bytes(self, tenant_id: str, image_id: str) -> tuple[bytes, str]:
        """As image_bytes, for a tenant named by a signed link; a deleted image is not found (and says when)."""
        record = self.database.get_image(tenant_id, image_id)
        if record.deleted is not None:
            raise NotFoundError(f"The image '{image_id}' was deleted on {record.deleted:%Y-%m-%d %H:%M} UTC.", None,
                                "image_deleted")
        return self.blobs.get(record.content_hash), record.format

    def presigned_link(self, tenant_id: str, image_id: str, lifetime_s: int) -> str | None:
        """The blob store's own link to one of the tenant's images (S3's presigned GET), or None: a folder has none,
        and a deleted or unknown image gets none (Pictor's own link then says why)."""
        try:
            record = self.database.get_image(tenant_id, image_id)
        except ImageNotFound:
            return None
        if record.deleted is not None:
            return None
        return self.blobs.presigned_url(record.content_hash, lifetime_s, MIME_TYPES[record.format])
