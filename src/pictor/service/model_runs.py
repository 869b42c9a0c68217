"""The model calls of one request: engine requests submitted to the model's worker, the exact result cache first,
previews streamed for the first round, and failures reported as the model's."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from pictor.engine.protocol import EngineRequest, EngineResult, StepObserver
from pictor.engine.worker import ModelWorker
from pictor.service.cpu_pool import run_on_cores
from pictor.service.encoding import encode
from pictor.service.errors import ModelFailure
from pictor.service.planning import Plan
from pictor.service.result_cache import ResultCache


@dataclass
class PartialImage:
    image_index: int
    partial_index: int
    data: bytes


@dataclass(frozen=True)
class CacheSettings:
    """The result cache and the service settings its keys name."""

    cache: ResultCache | None
    mask_blend_px: int
    auto_edit_mask: bool


def preview_observer(loop: asyncio.AbstractEventLoop, index: int, partial_images: int, plan: Plan,
                     on_partial: Callable[[PartialImage], None], encode_partials: bool = True) -> StepObserver:
    """The step callback of image `index`'s first candidate: `partial_images` previews, spread over the steps the
    model actually runs, handed to `on_partial` on the event loop (without their pixels when `encode_partials` is
    false: the model then makes no preview images at all)."""
    counter = itertools.count()
    job = plan.job

    def on_step(step: int, total: int, preview: Image.Image | None) -> None:
        # Spread over the steps the model actually runs (`total`), which may be fewer than asked for: the
        # embedded model decodes at most one round per undecided token.
        wanted = {max(0, round(total * (k + 1) / (partial_images + 1)) - 1) for k in range(partial_images)}
        if step in wanted and step < total - 1:
            data = b""
            if encode_partials and preview is not None:
                data = encode(preview.resize((plan.width, plan.height), Image.Resampling.BILINEAR), job.output_format,
                              min(job.output_compression, 80))
            loop.call_soon_threadsafe(on_partial, PartialImage(index, next(counter), data))

    return StepObserver(on_step, encode_partials)


class ModelRuns:
    """Runs a plan's engine requests on its model (see the module's docstring)."""

    def __init__(self, plan: Plan, tenant_id: str, worker: ModelWorker, cache: CacheSettings,
                 previews: dict[int, StepObserver] | None = None):
        self.plan, self.tenant_id, self.worker, self.cache = plan, tenant_id, worker, cache
        self.previews = previews or {}

    async def make(self, requests: list[EngineRequest], first_round: bool = False,
                   cacheable: bool = True) -> tuple[list[EngineResult], list[str]]:
        """Run `requests`, the exact result cache first when the job has a seed. A hit streams no partial images
        (upstream too may send the final image before the partials it was asked for), so streamed requests and
        async jobs, whose progress comes from previews, still reuse outputs. Cache states "hit" / "miss" ("" when
        not cacheable). Repairs are not cacheable: their key would not say what they repainted."""
        store = self.cache.cache
        keys: list[str] = []
        cached: list[EngineResult | None] = [None] * len(requests)
        if store is not None and self.plan.job.seed is not None and cacheable:
            # Off the event loop: keys hash the canvas's pixels, a hit decompresses them.
            with self.plan.times.step("cache"):
                keys, cached = await run_on_cores(self._look_up, store, requests)
        callbacks = self.previews if first_round else {}
        futures = [asyncio.wrap_future(self.worker.submit(request, callbacks.get(index)))
                   for index, request in enumerate(requests) if cached[index] is None]
        started = time.perf_counter()
        try:
            made: list[EngineResult] = list(await asyncio.gather(*futures))
        except Exception as error:
            for future in futures:
                future.cancel()
            raise ModelFailure(f"The model failed: {error}", None, "model_error") from error
        if made:  # queue wait: the time the calls took beyond the longest one's own run
            waited = time.perf_counter() - started - max(result.model_seconds for result in made)
            self.plan.times.add("queue", max(0.0, waited) * 1000)
        if store is not None and keys:
            with self.plan.times.step("cache"):
                await run_on_cores(store.remember, keys, cached, made, self.tenant_id)
        results = [hit if hit is not None else made.pop(0) for hit in cached]
        states = ["hit" if hit is not None else "miss" for hit in cached] if keys else [""] * len(requests)
        return results, states

    def _look_up(self, store: ResultCache, requests: list[EngineRequest]
                  ) -> tuple[list[str], list[EngineResult | None]]:
        keys = store.keys_for(self.plan, self.tenant_id, requests, self.cache.mask_blend_px, self.cache.auto_edit_mask)
        return keys, store.lookup(keys, requests)

    async def inpaint(self, image: Image.Image, mask: Image.Image, prompt: str, seed: int) -> Image.Image:
        """One inpainting run at the plan's steps (a GIF's background plate), not cached."""
        request = EngineRequest(task="inpaint", prompt=prompt, width=image.width, height=image.height, seed=seed,
                                images=[image], mask=mask, steps=self.plan.steps)
        results, _ = await self.make([request], cacheable=False)
        return results[0].image
