"""The Images use cases: generate, edit, variation, with or without streamed previews.

One path for all three: resolve the model and the parameters, decode the inputs, run the engine,
encode, store the bytes and the record, answer. Nothing is stored before the model has succeeded,
so a refused or failed request leaves no state behind.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image

from pictor.core import Artifact, Decision, ImageJob, JobKind, new_image_id, sha256_hex
from pictor.engine.placement import current_cpu_threads
from pictor.engine.protocol import Capabilities, EngineRequest, EngineResult
from pictor.engine.registry import ModelNotFound, ModelRegistry
from pictor.engine.scene import NO_UNDERSTANDING, SceneReader, reader_of
from pictor.governance import watermark
from pictor.governance.badge import BadgeSettings, apply_badge
from pictor.governance.provenance import Parent
from pictor.service import animation, composition, markup, validation, vector
from pictor.service.encoding import encode
from pictor.service.errors import InvalidRequest, ModelFailure, ModerationBlocked, NotFoundError, UnknownModel
from pictor.service.governance import Governance, Receipt, pixels_hash
from pictor.service.inputs import ACCEPTED_FORMATS, editable_area, open_image
from pictor.service.quotas import QuotaKeeper, work_units
from pictor.service.result_cache import CachedOutput, ResultCache, cache_key, engine_inputs
from pictor.service.timings import StepTimes
from pictor.storage import Database, LocalBlobStore, Principal

log = logging.getLogger(__name__)

DEFAULT_SIZE = (1024, 1024)
MIN_SIDE, MAX_SIDE, MAX_RATIO = 16, 4096, 3.0
MAX_PROMPT_CHARS = 32000
MAX_INPUT_IMAGES = 16
# Denoising steps per quality tier (legacy `standard` / `hd` arrive mapped to medium / high).
# xhigh and max (gpt-image-2.5) go on with more steps; `complexity` adds candidates instead (service/validation).
STEPS_BY_QUALITY = {"low": 6, "medium": 12, "high": 20, "xhigh": 28, "max": 40, "auto": 12}
RESOLVED_QUALITY = {"auto": "medium"}
# Output formats that cannot carry the invisible watermark, and why (their audit entries say so).
UNMARKABLE = {"svg": "an SVG has no pixels to carry it: vectorisation would remove it",
              "gif": "GIF's 256-colour palette quantisation destroys it"}
_SIZE = re.compile(r"^(\d+)x(\d+)$")


@dataclass
class ProducedImage:
    artifact: Artifact
    seed: int
    revised_prompt: str | None
    unknown_words: list[str]
    validation: dict | None = None  # the validator's verdict (service/validation), the `validation` extension field


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


@dataclass
class Plan:
    """A checked job with its inputs decoded and its parameters resolved: ready for the model."""

    job: ImageJob
    model: str
    task: str  # generate / edit / inpaint / variation
    width: int
    height: int
    sources: list[Image.Image]
    mask: Image.Image | None  # L, white where the image may change
    steps: int
    background: str  # resolved: transparent / opaque
    level: str = "standard"  # the content policy's level for this request
    decisions: list[Decision] = field(default_factory=list)  # the policy's input checks (all allowed)
    # A composition ("put this logo on the blue square"): sources[0] is then the input with the reference
    # (sources[1]) pasted in, and the mask the seam ring; this says where it went (see service/composition).
    composition: dict | None = None
    auto_mask: bool = False  # an unmasked instruction edit confined to the object it names
    badge: BadgeSettings | None = None  # the tenant's visible badge, read with its other settings in prepare()
    candidates: int = 1  # at most this many made per returned image; the validator keeps the best
    validator: validation.Validator | None = None
    search: validation.Search | None = None  # how the candidates are made (complexity / `candidates`)
    engine_prompt: str | None = None  # what the model is given, when not the job's prompt (markup, GIF motion)
    markup_guide: markup.MarkupGuide | None = None
    motion: animation.Motion | None = None  # GIF output
    reservation: tuple[str, int, int] | None = None  # what admit() counted against the daily quotas
    reader: SceneReader = NO_UNDERSTANDING  # the model's scene reader (engine/scene)
    times: StepTimes = field(default_factory=StepTimes)  # the request's steps so far (Server-Timing)

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def quality(self) -> str:
        return RESOLVED_QUALITY.get(self.job.quality, self.job.quality)


@dataclass
class Marks:
    """What the governance marks did to one output, for its C2PA manifest and audit entry."""

    actions: list[dict] = field(default_factory=list)
    assertions: list[dict] = field(default_factory=list)
    watermark: dict | None = None  # None: too small to carry one (or a format that cannot: see watermark_reason)
    watermark_reason: str | None = None


@dataclass
class PartialImage:
    image_index: int
    partial_index: int
    data: bytes


@dataclass
class _Candidate:
    result: EngineResult
    verdict: validation.Verdict
    steps: int
    cache: str  # "hit" / "miss" / "" (not cacheable)


@dataclass
class SearchOutcome:
    """The returned candidate of each image, its extension fields, and what the search spent."""

    results: list[EngineResult] = field(default_factory=list)
    extras: list[dict] = field(default_factory=list)
    cache_states: list[str] | None = field(default_factory=list)
    runs: int = 0
    steps_run: int = 0
    made: int = 0  # candidates made for the image that needed the most
    scoring_ms: float = 0.0
    model_seconds: float = 0.0


# What `stream` yields when nothing else was due for `keepalive_s` (an SSE comment on the wire).
KEEP_ALIVE = object()


def _check_limits(job: ImageJob) -> None:
    """The request's sizes, checked before any work that grows with them."""
    if len(job.prompt) > MAX_PROMPT_CHARS:
        raise InvalidRequest(f"The prompt is {len(job.prompt)} characters; the limit is {MAX_PROMPT_CHARS}.",
                             "prompt", "string_above_max_length")
    if len(job.images) > MAX_INPUT_IMAGES:
        raise InvalidRequest(f"At most {MAX_INPUT_IMAGES} images per edit.", "image", "too_many_images")


def _check_bounds(width: int, height: int, what: str, param: str, code: str) -> None:
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise InvalidRequest(f"{what}: each side must be within {MIN_SIDE}..{MAX_SIDE}.", param, code)
    if max(width, height) / min(width, height) > MAX_RATIO:
        raise InvalidRequest(f"{what}: the long side may be at most 3 times the short side.", param, code)


def resolve_size(size: str) -> tuple[int, int]:
    if size == "auto":
        return DEFAULT_SIZE
    match = _SIZE.match(size)
    if not match:
        raise InvalidRequest(f"Invalid size '{size}': use 'auto' or WIDTHxHEIGHT.", "size", "invalid_size")
    width, height = int(match[1]), int(match[2])
    _check_bounds(width, height, f"Invalid size '{size}'", "size", "invalid_size")
    if width % 16 or height % 16:
        raise InvalidRequest(f"Invalid size '{size}': each side must be a multiple of 16.", "size", "invalid_size")
    return width, height


def text_tokens(prompt: str) -> int:
    return len(re.findall(r"\w+", prompt))


def image_tokens(width: int, height: int) -> int:
    """One token per 32x32 tile: an estimate in the units upstream reports, documented as such."""
    return math.ceil(width / 32) * math.ceil(height / 32)


class ImageService:
    def __init__(self, registry: ModelRegistry, database: Database, blobs: LocalBlobStore, governance: Governance,
                 mask_blend_px: int = 0, auto_edit_mask: bool = True, result_cache: ResultCache | None = None,
                 quotas: QuotaKeeper | None = None, rate_limits: dict[str, int] | None = None):
        self.registry = registry
        self.quotas = quotas  # None: no quotas (command-line tools)
        self.rate_limits = rate_limits or {}  # work per minute: "key" and "tenant" (the server's defaults)
        self.result_cache = result_cache if result_cache is not None and result_cache.enabled else None
        self.database = database
        self.blobs = blobs
        self.governance = governance
        self.mask_blend_px = max(0, mask_blend_px)  # Settings.mask_blend_px: the blend band inside a mask's edge
        self.auto_edit_mask = auto_edit_mask  # Settings.auto_edit_mask

    # ---- the three use cases -------------------------------------------------------------------

    async def prepare(self, job: ImageJob, principal: Principal | None = None, moderate: bool = True) -> Plan:
        """Check and decode everything a job needs, before any work: every refusal happens here.

        `moderate=False` only for replaying an audited request, which the policy of its day already allowed.
        """
        _check_limits(job)  # before anything reads the prompt or the images: a refusal costs nothing
        model = self._model(job)
        settings = self.database.tenant_settings(job.tenant_id) if job.tenant_id else {}
        level = self.governance.level(job.moderation, settings)
        # Off the event loop: the policy's work grows with the text, and other requests must not wait on it.
        times = StepTimes()
        with times.step("policy"):
            decisions = [await asyncio.to_thread(self._check_text, job, level, principal)] if moderate else []
        with times.step("decode"):
            width, height, sources, mask = await asyncio.to_thread(self._inputs, job)
        if moderate:
            with times.step("policy"):
                decisions += await asyncio.to_thread(self._check_images, job, sources, level, "input", principal)
        placed = None
        backend = self.registry.worker(model).backend
        reader = reader_of(backend)
        auto_mask = False
        guide = None
        if job.markup is not None:
            # The overlay's strokes (and the objects under them) are the editable area: a masked edit from here on.
            guide = await asyncio.to_thread(markup.guide, job.markup, sources[0], job.prompt, reader)
            mask, (width, height) = guide.mask, sources[0].size
            _check_bounds(width, height, f"The image is {width}x{height}, and the result is made at its size", "image",
                          "invalid_image_dimensions")
        elif job.kind == JobKind.EDIT and len(sources) >= 2 and composition.wants_composition(job.prompt, reader):
            sources, mask, placed = await asyncio.to_thread(self._compose, job, sources, mask, reader)
        elif (job.kind == JobKind.EDIT and mask is None and len(sources) == 1 and self.auto_edit_mask
              and sources[0].size == (width, height)):
            # "Make the circle green" changes the circle: everything else stays the input's own pixels, so
            # edit after edit does not drift. When the reader cannot tell the area, the edit is the plain one.
            mask = await asyncio.to_thread(reader.edit_region, sources[0], job.prompt)
            auto_mask = mask is not None
        if mask is not None and self.mask_blend_px:
            mask = blend_band(mask, self.mask_blend_px)
        task = {JobKind.GENERATE: "generate", JobKind.VARIATION: "variation"}.get(
            job.kind, "inpaint" if mask is not None else "edit")
        if task not in backend.capabilities.tasks:
            can_inpaint = task == "edit" and "inpaint" in backend.capabilities.tasks
            hint = " (send a mask to edit inside it)" if can_inpaint else ""
            raise InvalidRequest(f"The model '{model}' cannot do {task}{hint}; it can do: "
                                 f"{', '.join(sorted(backend.capabilities.tasks))}.", "model", "unsupported_task")
        if job.background == "transparent" and not backend.capabilities.transparent_background:
            raise InvalidRequest(f"The model '{model}' cannot make a transparent background.", "background",
                                 "unsupported_background")
        keeps_alpha = mask is not None and has_alpha(sources[0])
        transparent = job.output_format != "jpeg" and (job.background == "transparent" or keeps_alpha)
        plan = Plan(job, model, task, width, height, sources, mask, model_steps(job.quality, backend.capabilities),
                    "transparent" if transparent else "opaque", level, decisions, placed, auto_mask,
                    BadgeSettings.from_settings(settings))
        plan.times, plan.reader = times, reader
        self._plan_output(plan, backend.capabilities, guide)
        return plan

    @staticmethod
    def _plan_output(plan: Plan, capabilities: Capabilities, guide: markup.MarkupGuide | None) -> None:
        """Candidates and validator (complexity), the markup's prompt, and GIF motion, on a checked plan."""
        job, reader = plan.job, plan.reader
        plan.validator = validation.validator_for(reader, capabilities.validator)
        if job.complexity == "low" and job.candidates is None:  # no planning, no checking: the image as made
            plan.validator = validation.SkippedValidator()
        if guide is not None:
            plan.markup_guide, plan.engine_prompt = guide, guide.prompt
        if job.output_format == "gif":
            if type(reader).read is SceneReader.read:
                raise InvalidRequest(f"The model '{plan.model}' cannot make GIF output: its frames move an object "
                                     "that the model's scene reader finds, and it has none.", "output_format",
                                     "unsupported_output_format")
            if max(plan.width, plan.height) > animation.MAX_GIF_SIDE:
                raise InvalidRequest(f"GIF output is limited to {animation.MAX_GIF_SIDE} pixels a side.", "size",
                                     "invalid_size")
            plan.motion = animation.motion_of(plan.engine_prompt or job.prompt, reader)
            plan.engine_prompt = plan.motion.scene_prompt
        scorable = validation.can_score(plan.validator, plan.engine_prompt or job.prompt, plan.task)
        repairable = plan.validator is reader and reader.repairs
        plan.search = validation.search_for(job.complexity, job.candidates, plan.steps, capabilities.step_range,
                                            scorable, repairable)
        plan.candidates = plan.search.candidates

    @staticmethod
    def _compose(job: ImageJob, sources: list[Image.Image], mask: Image.Image | None,
                 reader: SceneReader) -> tuple[list[Image.Image], Image.Image, dict]:
        """Paste the reference (the second image) where the prompt or mask says; the seams become the mask.

        Hook for backends with native multi-image conditioning (none yet): such a backend would get the
        reference in `sources[1:]` untouched and the target box, instead of the pasted canvas and the ring.
        """
        placed = composition.compose(sources[0], sources[1], job.prompt, mask, reader)
        canvas = placed.canvas
        canvas.format = sources[0].format  # stands for the input (its lineage record keeps the input's own bytes)
        return [canvas, *sources[1:]], placed.ring, placed.to_dict()

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
        plan.reservation = await asyncio.to_thread(self.quotas.admit, principal.tenant_id, principal.key_id, n,
                                                   n * plan.steps, work, self.rate_limits.get("key"),
                                                   self.rate_limits.get("tenant"))

    async def _run(self, plan: Plan, principal: Principal, on_partial: Callable[[PartialImage], None] | None,
                   partial_images: int, encode_partials: bool) -> ImagesResult:
        job, width, height, sources = plan.job, plan.width, plan.height, plan.sources
        base_seed = job.seed if job.seed is not None else secrets.randbelow(2**31)
        worker = self.registry.worker(plan.model)
        previews = on_partial is not None and partial_images > 0

        async def make(requests: list[EngineRequest], first_round: bool,
                       cacheable: bool = True) -> tuple[list[EngineResult], list[str]]:
            callbacks = {}
            if previews and first_round:  # candidate 0 of each image streams its previews
                callbacks = {i: self._preview_sink(loop, i, partial_images, width,
                                                   height, job, on_partial, encode_partials)
                             for i in range(min(job.n, len(requests)))}
            return await self._made(plan, principal, worker, requests, callbacks, cacheable)

        loop = asyncio.get_running_loop()
        outcome = await self._search(plan, base_seed, make)
        results, extras = outcome.results, outcome.extras
        started = time.perf_counter()
        runs, steps_run = outcome.runs, outcome.steps_run
        if plan.motion is not None:
            plate_runs = await self._animate(plan, worker, results, extras)
            runs, steps_run = runs + plate_runs, steps_run + plate_runs * plan.steps
        validation_ms = outcome.scoring_ms + (time.perf_counter() - started) * 1000
        cache_states, model_seconds = outcome.cache_states, outcome.model_seconds
        times = plan.times
        times.add("model", model_seconds * 1000)
        times.add("validation", validation_ms)
        with times.step("policy"):
            outputs = await asyncio.to_thread(self._check_images, job, [r.image for r in results], plan.level,
                                              "output", principal)
        produced = await asyncio.to_thread(self._store, plan, principal, results, outputs, cache_states, extras)
        usage = self._usage(job, sources, width, height)
        self._spent(usage, plan, runs, steps_run, validation_ms, outcome.made)
        return ImagesResult(
            created=int(time.time()),
            images=produced,
            size=f"{width}x{height}",
            quality=plan.quality,
            background=plan.background,
            output_format=job.output_format,
            usage=usage,
            model_seconds=model_seconds,
            cache=None if cache_states is None else ("hit" if "miss" not in cache_states else "miss"),
            svg_usage=vector.usage(produced[0].artifact.data) if job.output_format == "svg" else None,
            steps_ms=dict(times.ms),
        )

    # ---- validation, candidates and animation (service/validation, service/animation) ----------

    async def _made(self, plan: Plan, principal: Principal, worker, requests: list[EngineRequest],
                    callbacks: dict[int, Callable], cacheable: bool = True) -> tuple[list[EngineResult], list[str]]:
        """Run `requests` on the model, the exact result cache first when the job has a seed. A hit streams no
        partial images (upstream too may send the final image before the partials it was asked for), so streamed
        requests and async jobs, whose progress comes from previews, still reuse outputs. Cache states "hit" /
        "miss" ("" when not cacheable). Repairs are not cacheable: their key would not say what they repainted."""
        keys = self._cache_keys(plan, principal, requests) if plan.job.seed is not None and cacheable else []
        cached = self._lookup(keys, requests) if keys else [None] * len(requests)
        futures = [asyncio.wrap_future(worker.submit(request, callbacks.get(index)))
                   for index, request in enumerate(requests) if cached[index] is None]
        try:
            made: list[EngineResult] = list(await asyncio.gather(*futures))
        except Exception as error:
            for future in futures:
                future.cancel()
            raise ModelFailure(f"The model failed: {error}", None, "model_error") from error
        if keys:
            self._remember(keys, cached, made, principal.tenant_id)
        results = [hit if hit is not None else made.pop(0) for hit in cached]
        states = ["hit" if hit is not None else "miss" for hit in cached] if keys else [""] * len(requests)
        return results, states

    async def _search(self, plan: Plan, base_seed: int, make: Callable) -> SearchOutcome:
        """Make and score the candidates of each returned image as `plan.search` says (service/validation), and keep
        the best. Candidate j of image i has seed base + i + j*n: candidate 0 is what a request without candidates
        returns. A budgeted search (complexity=high) makes one cheap candidate per open image per round and stops
        an image at its first pass; when none passed, repair a of image i (seed base + i + (candidates + a)*n)
        repaints the one wrong object of its best repairable candidate, and is returned only if it passes."""
        search = plan.search or validation.Search(plan.candidates, plan.steps, plan.steps, plan.candidates * plan.steps)
        n = plan.job.n
        prompt = plan.engine_prompt if plan.engine_prompt is not None else plan.job.prompt
        validator = plan.validator or validation.UnavailableValidator()
        outcome = SearchOutcome()
        made: list[list[_Candidate]] = [[] for _ in range(n)]
        spent = [0] * n

        async def run_round(wanted: list[tuple[int, EngineRequest]], first: bool,
                            sources: list[tuple[Image.Image, Image.Image]] | None = None) -> list[_Candidate]:
            """(image index, request) for each run: the results scored (repairs: kept to their mask first)."""
            requests = [request for _, request in wanted]
            results, states = await make(requests, first, sources is None)
            outcome.model_seconds = max([outcome.model_seconds, *(r.model_seconds for r in results)])
            for (image, request), state in zip(wanted, states):
                if state != "hit":
                    outcome.runs += 1
                    outcome.steps_run += request.steps or plan.steps
                    spent[image] += request.steps or plan.steps
            if sources is not None:
                for result, (source, mask) in zip(results, sources):
                    result.image = keep_outside_mask(result.image, source, mask)
            started = time.perf_counter()
            verdicts = await asyncio.to_thread(lambda: [validator.score(r.image, prompt, plan.task) for r in results])
            outcome.scoring_ms += (time.perf_counter() - started) * 1000
            return [_Candidate(r, v, request.steps or plan.steps, state)
                    for r, v, (_, request), state in zip(results, verdicts, wanted, states)]

        open_images, j = list(range(n)), 0
        while open_images and j < search.candidates:
            rounds = [j] if search.early_stop else list(range(j, search.candidates))
            wanted = [(i, replace(engine_request(plan, base_seed + i + jj * n), steps=search.candidate_steps))
                      for jj in rounds for i in open_images]
            for (i, _), candidate in zip(wanted, await run_round(wanted, j == 0)):
                made[i].append(candidate)
            j += len(rounds)
            if search.early_stop:
                open_images = [i for i in open_images if made[i][-1].verdict.status != "passed"]
        repaired, tried = await self._repairs(plan, base_seed, made, search, prompt, run_round)
        for i in range(n):
            candidates = made[i]
            best = validation.choose([c.verdict for c in candidates])
            chosen = candidates[best]
            verdict = chosen.verdict.to_dict(len(candidates), best)
            if i in repaired:
                best, chosen, repair = repaired[i]
                verdict = chosen.verdict.to_dict(len(candidates), best)
                verdict["repair"] = repair
            verdict["steps"] = chosen.steps
            if len(candidates) > 1 or search.budgeted:
                verdict["candidate_scores"] = [None if c.verdict.score is None else round(c.verdict.score, 4)
                                               for c in candidates]
            if search.budgeted:
                verdict["search"] = {**search.to_dict(), "steps_spent": spent[i], "repairs_tried": tried[i]}
            outcome.results.append(chosen.result)
            outcome.extras.append({"validation": verdict, "steps": chosen.steps})
            outcome.cache_states.append(chosen.cache)
            outcome.made = max(outcome.made, len(candidates))
        if "" in outcome.cache_states:
            outcome.cache_states = None
        return outcome

    async def _repairs(self, plan: Plan, base_seed: int, made: list[list[_Candidate]], search: validation.Search,
                       prompt: str, run_round: Callable) -> tuple[dict[int, tuple[int, _Candidate, dict]], list[int]]:
        """Per image that no candidate passed: (the candidate repaired, the passing repair, its record); and the
        repairs tried per image."""
        n = plan.job.n
        tried = [0] * n
        pending: dict[int, tuple[int, validation.Repair]] = {}
        for i in range(n if search.repairs else 0):
            if any(c.verdict.status == "passed" for c in made[i]):
                continue
            order = sorted(range(len(made[i])), key=lambda k: (-(made[i][k].verdict.score or 0.0), k))
            for k in order:
                fix = await asyncio.to_thread(plan.reader.propose_repair, made[i][k].result.image, prompt)
                if fix is not None:
                    pending[i] = (k, fix)
                    break
        repaired: dict[int, tuple[int, _Candidate, dict]] = {}
        for attempt in range(search.repairs):
            if not pending:
                break
            wanted, sources = [], []
            for i, (k, fix) in pending.items():
                source = made[i][k].result.image
                mask = fix.mask(source.size)
                seed = base_seed + i + (search.candidates + attempt) * n
                wanted.append((i, repair_request(plan, source, fix, seed, search.repair_steps)))
                sources.append((source, mask))
            for (i, request), fixed in zip(wanted, await run_round(wanted, False, sources)):
                tried[i] += 1
                if fixed.verdict.status != "passed":
                    continue
                k, fix = pending.pop(i)
                candidate = made[i][k]
                fixed.result.seed = candidate.result.seed  # remakes the candidate; the record says the rest
                fixed.steps = candidate.steps
                fixed.cache = candidate.cache if candidate.cache == "" else "miss"
                repaired[i] = (k, fixed, {**fix.to_dict(), "seed": request.seed, "steps": request.steps,
                                          "attempts": attempt + 1})
        return repaired, tried


    async def _animate(self, plan: Plan, worker, results: list[EngineResult], extras: list[dict]) -> int:
        """The GIF frames of each result (service/animation); returns how many model runs they took."""
        assert plan.motion is not None
        count = plan.job.frame_count or animation.FRAME_COUNT_DEFAULT
        runs = 0

        async def inpaint(image: Image.Image, mask: Image.Image, prompt: str, seed: int) -> Image.Image:
            request = EngineRequest(task="inpaint", prompt=prompt, width=image.width, height=image.height, seed=seed,
                                    images=[image], mask=mask, steps=plan.steps)
            try:
                made = await asyncio.wrap_future(worker.submit(request, None))
            except Exception as error:
                raise ModelFailure(f"The model failed: {error}", None, "model_error") from error
            return made.image

        for result, extra in zip(results, extras):
            made = await animation.animate(result.image, plan.motion, count, result.seed, inpaint, plan.reader)
            runs += made.model_calls
            extra["frames"] = made.frames
            verdict = extra["validation"]
            verdict["frames"] = made.to_dict()
            if not made.consistent:
                verdict["unmet"] = [*verdict["unmet"], *made.problems]
                if verdict["status"] == "passed":
                    verdict["status"] = "failed"
        return runs

    @staticmethod
    def _spent(usage: dict, plan: Plan, runs: int, steps_run: int, validation_ms: float, made: int) -> None:
        """What the request cost beyond its returned images, and how (`compute`). Compute is denoising steps actually
        run (result-cache hits run none): candidates not returned, refinements and GIF plates count in
        `output_tokens` in proportion to their steps (one image at the tier's steps = one image's tokens)."""
        per_image = image_tokens(plan.width, plan.height)
        extra = max(0, math.ceil(per_image * steps_run / plan.steps) - per_image * plan.job.n)
        usage["output_tokens"] += extra
        usage["total_tokens"] += extra
        usage["output_tokens_details"]["image_tokens"] += extra
        usage["compute"] = {"model_runs": runs, "steps_per_run": plan.steps, "denoising_steps": steps_run,
                            "candidates": made, "validation_ms": round(validation_ms, 1)}
        if plan.search is not None and plan.search.budgeted:
            usage["compute"]["search"] = plan.search.to_dict()

    # ---- the exact result cache (see service/result_cache) -------------------------------------

    def _cache_keys(self, plan: Plan, principal: Principal, requests: list[EngineRequest]) -> list[str]:
        if self.result_cache is None:
            return []
        backend = self.registry.worker(plan.model).backend
        params = plan.job.parameters()
        common = {"tenant": principal.tenant_id, "model": plan.model, "weights": backend.weights_hash,
                  "device": backend.device.split(":")[0], "kind": params["kind"], "task": plan.task,
                  "prompt": plan.job.prompt, "inputs": params["input_hashes"], "mask": params["mask_hash"],
                  "size": plan.size, "background": plan.job.background,
                  "blend": self.mask_blend_px, "auto_mask": self.auto_edit_mask}
        # The engine request's own inputs too: markup, composition and automatic edit masks derive the prompt, mask
        # and canvas the model sees from the job, so the job's fields alone would let two different edits collide.
        digests: dict[int, str] = {}  # the candidates of one request share their canvas and mask objects
        return [cache_key(**common, steps=request.steps or plan.steps, seed=request.seed,
                          **engine_inputs(request, digests)) for request in requests]

    def _lookup(self, keys: list[str], requests: list[EngineRequest]) -> list[EngineResult | None]:
        """The cached outputs as engine results (None for a miss); their model time is the lookup's own."""
        assert self.result_cache is not None
        found: list[EngineResult | None] = []
        for key, request in zip(keys, requests):
            started = time.perf_counter()
            hit = self.result_cache.get(key)
            found.append(None if hit is None else EngineResult(
                hit.image.copy(), request.seed, list(hit.unknown_words), hit.revised_prompt,
                model_seconds=time.perf_counter() - started))
        return found

    def _remember(self, keys: list[str], cached: list[EngineResult | None], made: list[EngineResult],
                  tenant_id: str) -> None:
        assert self.result_cache is not None
        misses = [key for key, hit in zip(keys, cached) if hit is None]
        for key, result in zip(misses, made):
            self.result_cache.put(key, CachedOutput(result.image.copy(), tuple(result.unknown_words),
                                                    result.revised_prompt, tenant_id))

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

    # ---- steps ---------------------------------------------------------------------------------

    def _check_text(self, job: ImageJob, level: str, principal: Principal | None) -> Decision:
        texts = {"prompt": job.prompt}
        decision = self.governance.policy.evaluate(texts, level, "input")
        if decision.blocked:
            self._refuse(job, decision, principal, texts)
        return decision

    def _check_images(self, job: ImageJob, images: list[Image.Image], level: str, stage: str,
                      principal: Principal | None) -> list[Decision]:
        """The image classifier's verdict on each input (or output) image; a block refuses the whole request."""
        decisions = [self.governance.policy.evaluate_image(image, level, stage) for image in images]
        for decision in decisions:
            if decision.blocked:
                self._refuse(job, decision, principal, {"prompt": job.prompt})
        return decisions

    def _refuse(self, job: ImageJob, decision: Decision, principal: Principal | None, texts: dict[str, str]):
        self.governance.refuse(decision, tenant=job.tenant_id, key_id=principal.key_id if principal else None,
                               user=job.user, kind=job.kind.value, texts=texts)
        raise ModerationBlocked(decision, self.governance.policy_version)

    def _model(self, job: ImageJob) -> str:
        return self.model_name(job.model)

    def model_name(self, model: str | None) -> str:
        """The served model a request's `model` names (the default for None); UnknownModel otherwise."""
        try:
            return self.registry.resolve(model)
        except ModelNotFound as error:
            raise UnknownModel(error.name) from None

    def scene_reader(self, model: str | None) -> SceneReader:
        """The scene reader of the model a request names (engine/scene): how its texts and images are read."""
        return reader_of(self.registry.worker(self.model_name(model)).backend)

    def _inputs(self, job: ImageJob) -> tuple[int, int, list[Image.Image], Image.Image | None]:
        width, height = resolve_size(job.size)
        sources = [open_image(data, "image") for data in job.images]
        mask = editable_area(job.mask, sources[0].size) if job.mask is not None else None
        if sources and (job.size == "auto" or mask is not None):
            # Made at the (first) input's own size: for 'auto', and always under a hard mask, which keeps the
            # input's own pixels. The same bounds as an explicit size hold (they bound the model's work too).
            width, height = sources[0].size
            _check_bounds(width, height, f"The image is {width}x{height}, and the result is made at its size", "image",
                          "invalid_image_dimensions")
        return width, height, sources, mask

    def _preview_sink(self, loop: asyncio.AbstractEventLoop, index: int, partial_images: int,
                      width: int, height: int, job: ImageJob, on_partial: Callable[[PartialImage], None],
                      encode_partials: bool = True):
        counter = iter(range(partial_images))

        def on_step(step: int, total: int, preview: Image.Image | None) -> None:
            # Spread over the steps the model actually runs (`total`), which may be fewer than asked for: the
            # embedded model decodes at most one round per undecided token.
            wanted = {max(0, round(total * (k + 1) / (partial_images + 1)) - 1) for k in range(partial_images)}
            if step in wanted and step < total - 1:
                data = b""
                if encode_partials:
                    data = encode(preview.resize((width, height), Image.Resampling.BILINEAR), job.output_format,
                                  min(job.output_compression, 80))
                loop.call_soon_threadsafe(on_partial, PartialImage(index, next(counter), data))

        on_step.wants_previews = encode_partials  # type: ignore[attr-defined]
        return on_step

    def _store(self, plan: Plan, principal: Principal, results: list[EngineResult],
               output_checks: list[Decision] | None = None,
               cache_states: list[str] | None = None, extras: list[dict] | None = None) -> list[ProducedImage]:
        """Sign, store every blob, then every record and audit entry in one transaction: all or nothing.

        Audit indexes are reserved first because each C2PA manifest names its entry; a failure after that
        closes the reservations with a `failed` entry. Uploaded inputs become image records (unless they are
        the tenant's own earlier images, which then become the parents), so an edit's lineage names its parents.
        A failure part-way leaves at most unreferenced blobs (content-addressed, so harmless), never a record.
        """
        receipt = self.governance.receipt(len(results))
        try:
            produced = self._store_signed(plan, principal, results, receipt, output_checks or [], cache_states, extras)
        except BaseException as error:
            receipt.fail(error)
            raise
        self.governance.audit.maybe_checkpoint()
        return produced

    def _store_signed(self, plan: Plan, principal: Principal, results: list[EngineResult], receipt: Receipt,
                      output_checks: list[Decision], cache_states: list[str] | None = None,
                      extras: list[dict] | None = None) -> list[ProducedImage]:
        job, model, sources, times = plan.job, plan.model, plan.sources, plan.times
        if plan.mask is not None:
            # The hard mask, whatever the backend did: outside the editable area the input's own pixels
            # (alpha included), also after a transparent background was made.
            with times.step("mask"):
                for result in results:
                    result.image = keep_outside_mask(result.image, sources[0], plan.mask)
        parents, uploads = [], []
        for data, image in zip(job.images, sources):
            known = self.database.find_image(principal.tenant_id, sha256_hex(data))
            if known is None:
                upload = Artifact(id=new_image_id(), data=data, format=ACCEPTED_FORMATS[image.format],
                                  width=image.width, height=image.height, tenant_id=principal.tenant_id)
                uploads.append(upload)
                parents.append(Parent(data, upload.format, upload.id))
            else:
                parents.append(Parent(data, known.format, known.id))
        parent_ids = tuple(parent.title for parent in parents)
        params = {**job.parameters(), "job_id": receipt.job_id}
        if plan.composition is not None:
            params["composition"] = {**plan.composition, "reference_image_id": parent_ids[1]}
        if plan.auto_mask:
            params["auto_mask"] = True
        if job.kind == JobKind.EDIT:  # the settings that shaped the edit's mask, so that replay can use them
            params.update(mask_blend_px=self.mask_blend_px, auto_edit_mask=self.auto_edit_mask)
        backend = self.registry.worker(model).backend
        badge = plan.badge
        produced = []
        for position, result in enumerate(results):
            artifact_id = new_image_id()
            extra = extras[position] if extras else {}
            with times.step("mark"):  # the badge, then the watermark
                final, marks = self._marked(result.image, plan, badge, artifact_id)
            with times.step("encode"):
                encoded = self._encoded(final, plan, extra.get("frames"), badge)
            with times.step("sign"):
                data = receipt.sign(position, artifact_id, encoded, job.output_format, prompt=job.prompt, model=model,
                                    weights_hash=backend.weights_hash, seed=result.seed, parents=parents,
                                    actions=[*self._repair_actions(extra), *marks.actions],
                                    assertions=marks.assertions)
            artifact = Artifact(id=artifact_id, data=data, format=job.output_format, width=result.image.width,
                                height=result.image.height, model=model, seed=result.seed, parents=parent_ids,
                                tenant_id=principal.tenant_id, audit_index=receipt.indexes[position])
            unsalted = {k: v for k, v in params.items() if k != "prompt"}
            checks = plan.decisions + output_checks[position:position + 1]
            receipt.record(position, artifact, prompt=job.prompt, decisions=checks, fields={
                "key_id": principal.key_id, "user": job.user, "kind": job.kind.value, "task": plan.task,
                "parameters": {**unsalted, "seed": result.seed, "steps": extra.get("steps", plan.steps),
                               "size": plan.size},
                "parents": list(parent_ids), "weights_hash": backend.weights_hash,
                "pixels_hash": pixels_hash(result.image), "device": backend.device.split(":")[0],
                "cpu_threads": current_cpu_threads(),
                "batch_invariant": backend.batch_invariant, "badge": badge.to_dict() if badge else None,
                "watermark": marks.watermark, **({"cache": cache_states[position]} if cache_states else {}),
                **self._newer_audit(plan, marks, extra)})
            produced.append(ProducedImage(artifact, result.seed, result.revised_prompt, result.unknown_words,
                                          extra.get("validation")))
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
        return produced

    @staticmethod
    def _repair_actions(extra: dict) -> list[dict]:
        """A complexity=high repair is an edit of the generated candidate: the manifest says so."""
        repair = (extra.get("validation") or {}).get("repair")
        if not repair:
            return []
        return [{"action": "c2pa.edited", "description": f"validator-guided repair: {repair['prompt']} repainted in "
                                                       f"box {repair['box']} ({repair['wrong']})"}]

    @staticmethod
    def _encoded(final: Image.Image, plan: Plan, frames: list[Image.Image] | None,
                 badge: BadgeSettings | None) -> bytes:
        """The output's bytes: raster formats as always, SVG traced from the marked image, GIF from its frames."""
        job = plan.job
        if job.output_format == "svg":
            return vector.svg_bytes(final)
        if job.output_format == "gif" and frames:
            marked = [apply_badge(frame, badge) if badge is not None else frame for frame in frames]
            return animation.gif_bytes(marked, animation.frame_duration(job.frame_duration_ms))
        return encode(final, job.output_format, job.output_compression)

    @staticmethod
    def _newer_audit(plan: Plan, marks: Marks, extra: dict) -> dict:
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

    @staticmethod
    def _marked(image: Image.Image, plan: Plan, badge: BadgeSettings | None,
                artifact_id: str) -> tuple[Image.Image, Marks]:
        """The governance marks, in order: the tenant's badge, then the invisible watermark naming the artifact.

        Under a hard mask the watermark stays inside the editable area, so the input's own pixels outside
        the mask are still returned byte for byte (the badge excepted: a tenant that asks for it gets it).
        Images under the watermark's minimum size go unmarked, and the audit entry says so.
        """
        marks = Marks()
        badged = image
        if badge is not None:
            badged = apply_badge(image, badge)
            marks.actions.append(badge.action())
        marked = badged
        if plan.job.output_format in UNMARKABLE:
            marks.watermark_reason = UNMARKABLE[plan.job.output_format]
        elif min(image.size) >= watermark.MIN_SIDE:
            payload = watermark.payload_for(artifact_id)
            marked = watermark.embed(badged, payload)
            marks.actions.append({"action": "c2pa.watermarked", "description": "invisible watermark naming the image"})
            marks.assertions.append(watermark.soft_binding(payload))
            marks.watermark = {"alg": watermark.SOFT_BINDING_ALG, "payload": f"{payload:012x}"}
        if plan.mask is not None:
            marked = keep_outside_mask(marked, badged, plan.mask)
        return marked, marks

    def _usage(self, job: ImageJob, sources: list[Image.Image], width: int, height: int) -> dict:
        text = text_tokens(job.prompt)
        inputs = sum(image_tokens(*s.size) for s in sources)
        output = image_tokens(width, height) * job.n
        return {"input_tokens": text + inputs, "output_tokens": output, "total_tokens": text + inputs + output,
                "input_tokens_details": {"text_tokens": text, "image_tokens": inputs},
                "output_tokens_details": {"image_tokens": output, "text_tokens": 0}}

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


def model_steps(quality: str, capabilities: Capabilities) -> int:
    """The quality tier's steps on the model's own scale: `medium` is its default (11 for the embedded model,
    4 for a turbo model, 30 for SDXL), within its step range."""
    medium = STEPS_BY_QUALITY["medium"]
    steps = round(STEPS_BY_QUALITY[quality] * capabilities.default_steps / medium)
    low, high = capabilities.step_range
    return min(high, max(low, steps))


def engine_request(plan: Plan, seed: int) -> EngineRequest:
    prompt = plan.engine_prompt if plan.engine_prompt is not None else plan.job.prompt
    return EngineRequest(task=plan.task, prompt=prompt, width=plan.width, height=plan.height, seed=seed,
                         images=plan.sources, mask=plan.mask, steps=plan.steps,
                         transparent=plan.job.background == "transparent")


def repair_request(plan: Plan, source: Image.Image, fix: validation.Repair, seed: int, steps: int) -> EngineRequest:
    """The inpainting run of a complexity=high repair (service/validation): `fix`'s box of `source`, repainted."""
    return EngineRequest(task="inpaint", prompt=fix.prompt, width=plan.width, height=plan.height, seed=seed,
                         images=[source], mask=fix.mask(source.size), steps=steps,
                         transparent=plan.job.background == "transparent")


def has_alpha(image: Image.Image) -> bool:
    return "A" in image.getbands() or "transparency" in image.info


def blend_band(editable: Image.Image, width: int) -> Image.Image:
    """The editable area with a soft band `width` pixels deep inside its edge (0 = the hard edge as it was).

    A pixel at distance d (1 = next to a kept pixel) from the kept area gets weight d / (width + 1): the band
    feathers the model's output into the original; deeper pixels stay 255 (pure output), kept pixels 0.
    """
    inside = np.asarray(editable.convert("L")) > 0
    if width <= 0 or inside.all():
        return editable
    from scipy import ndimage

    distance = ndimage.distance_transform_edt(inside)
    weight = np.clip(np.ceil(distance) / (width + 1), 0.0, 1.0)
    weight[distance > width] = 1.0
    soft = np.where(inside, np.maximum(1, np.round(weight * 255)), 0)
    return Image.fromarray(soft.astype(np.uint8), "L")


def keep_outside_mask(made: Image.Image, source: Image.Image, editable: Image.Image) -> Image.Image:
    """`made` inside the editable area (non-zero in `editable`), `source` byte for byte everywhere else.

    Values between 0 and 255 (the blend band, see `blend_band`) mix the two in proportion; 255 is `made` as is.
    The result has an alpha channel when either image has one, so an input's transparency survives
    an edit and a transparent background stays transparent inside the edited area only.
    """
    mode = "RGBA" if made.mode == "RGBA" or has_alpha(source) else "RGB"
    if made.size != source.size:
        made = made.resize(source.size, Image.Resampling.LANCZOS)
    level = np.asarray(editable.convert("L"))
    inside = level > 0
    made_px, source_px = np.asarray(made.convert(mode)), np.asarray(source.convert(mode))
    if ((level > 0) & (level < 255)).any():
        weight = (level.astype(np.float32) / 255.0)[..., None]
        mixed = np.round(weight * made_px + (1.0 - weight) * source_px)
        made_px = np.where((level == 255)[..., None], made_px, mixed)
    out = np.where(inside[..., None], made_px, source_px)
    return Image.fromarray(out.astype(np.uint8), mode)
