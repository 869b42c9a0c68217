"""The Images use cases: generate, edit, variation, with or without streamed previews.

One path for all three: resolve the model and the parameters, decode the inputs, run the engine,
encode, store the bytes and the record, answer. Nothing is stored before the model has succeeded,
so a refused or failed request leaves no state behind.
"""

from __future__ import annotations

import asyncio
import math
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from PIL import Image

from pictor.core import Artifact, ImageJob, JobKind, new_image_id
from pictor.engine.protocol import EngineRequest, EngineResult
from pictor.engine.registry import ModelNotFound, ModelRegistry
from pictor.service.encoding import encode
from pictor.service.errors import InvalidRequest, ModelFailure, UnknownModel
from pictor.service.inputs import editable_area, open_image
from pictor.storage import Database, LocalBlobStore, Principal

DEFAULT_SIZE = (1024, 1024)
MIN_SIDE, MAX_SIDE, MAX_RATIO = 16, 4096, 3.0
MAX_PROMPT_CHARS = 32000
MAX_INPUT_IMAGES = 16
# Denoising steps per quality tier (legacy `standard` / `hd` arrive mapped to medium / high).
STEPS_BY_QUALITY = {"low": 6, "medium": 12, "high": 20, "auto": 12}
RESOLVED_QUALITY = {"auto": "medium"}
_SIZE = re.compile(r"^(\d+)x(\d+)$")


@dataclass
class ProducedImage:
    artifact: Artifact
    seed: int
    revised_prompt: str | None
    unknown_words: list[str]


@dataclass
class ImagesResult:
    created: int
    images: list[ProducedImage]
    size: str
    quality: str
    background: str
    output_format: str
    usage: dict = field(default_factory=dict)


@dataclass
class PartialImage:
    image_index: int
    partial_index: int
    data: bytes


def resolve_size(size: str) -> tuple[int, int]:
    if size == "auto":
        return DEFAULT_SIZE
    match = _SIZE.match(size)
    if not match:
        raise InvalidRequest(f"Invalid size '{size}': use 'auto' or WIDTHxHEIGHT.", "size", "invalid_size")
    width, height = int(match[1]), int(match[2])
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise InvalidRequest(f"Invalid size '{size}': each side must be within {MIN_SIDE}..{MAX_SIDE}.", "size",
                             "invalid_size")
    if width % 16 or height % 16:
        raise InvalidRequest(f"Invalid size '{size}': each side must be a multiple of 16.", "size", "invalid_size")
    if max(width, height) / min(width, height) > MAX_RATIO:
        raise InvalidRequest(f"Invalid size '{size}': the long side may be at most 3 times the short side.",
                             "size", "invalid_size")
    return width, height


def text_tokens(prompt: str) -> int:
    return len(re.findall(r"\w+", prompt))


def image_tokens(width: int, height: int) -> int:
    """One token per 32x32 tile: an estimate in the units upstream reports, documented as such."""
    return math.ceil(width / 32) * math.ceil(height / 32)


class ImageService:
    def __init__(self, registry: ModelRegistry, database: Database, blobs: LocalBlobStore):
        self.registry = registry
        self.database = database
        self.blobs = blobs

    # ---- the three use cases -------------------------------------------------------------------

    async def run(self, job: ImageJob, principal: Principal,
                  on_partial: Callable[[PartialImage], None] | None = None, partial_images: int = 0) -> ImagesResult:
        """Make, store and describe the job's images; previews go to `on_partial` if asked for."""
        model = self._model(job)
        width, height, sources, mask = self._inputs(job)
        steps = STEPS_BY_QUALITY[job.quality]
        base_seed = job.seed if job.seed is not None else secrets.randbelow(2**31)
        task = {JobKind.GENERATE: "generate", JobKind.VARIATION: "variation"}.get(
            job.kind, "inpaint" if mask is not None else "edit")
        worker = self.registry.worker(model)
        if task not in worker.backend.capabilities.tasks:
            raise InvalidRequest(f"The model '{model}' cannot do {task}.", "model", "unsupported_task")
        requests = [EngineRequest(task=task, prompt=job.prompt, width=width, height=height, seed=base_seed + i,
                                  images=sources, mask=mask, steps=steps,
                                  transparent=job.background == "transparent") for i in range(job.n)]
        loop = asyncio.get_running_loop()
        futures = []
        for index, request in enumerate(requests):
            callback = None
            if on_partial is not None and partial_images > 0:
                callback = self._preview_sink(loop, index, steps, partial_images, width, height, job, on_partial)
            futures.append(asyncio.wrap_future(worker.submit(request, callback)))
        try:
            results: list[EngineResult] = await asyncio.gather(*futures)
        except Exception as error:
            for future in futures:
                future.cancel()
            raise ModelFailure(f"The model failed: {error}", None, "model_error") from error
        parents = await asyncio.to_thread(self._store_inputs, job, principal, sources)
        produced = await asyncio.to_thread(self._store_outputs, job, principal, model, results, parents)
        return ImagesResult(
            created=int(time.time()),
            images=produced,
            size=f"{width}x{height}",
            quality=RESOLVED_QUALITY.get(job.quality, job.quality),
            background="transparent" if job.background == "transparent" else "opaque",
            output_format=job.output_format,
            usage=self._usage(job, sources, width, height),
        )

    async def stream(self, job: ImageJob, principal: Principal, partial_images: int) -> AsyncIterator:
        """Yield PartialImage events as previews arrive, then the ImagesResult."""
        events: asyncio.Queue = asyncio.Queue()
        task = asyncio.create_task(self.run(job, principal, on_partial=events.put_nowait,
                                            partial_images=partial_images))
        task.add_done_callback(lambda _: events.put_nowait(None))
        try:
            while (event := await events.get()) is not None:
                yield event
            yield task.result()
        finally:
            task.cancel()

    # ---- steps ---------------------------------------------------------------------------------

    def _model(self, job: ImageJob) -> str:
        try:
            return self.registry.resolve(job.model)
        except ModelNotFound as error:
            raise UnknownModel(error.name) from None

    def _inputs(self, job: ImageJob) -> tuple[int, int, list[Image.Image], Image.Image | None]:
        if len(job.prompt) > MAX_PROMPT_CHARS:
            raise InvalidRequest(f"The prompt is {len(job.prompt)} characters; the limit is {MAX_PROMPT_CHARS}.",
                                 "prompt", "string_above_max_length")
        if len(job.images) > MAX_INPUT_IMAGES:
            raise InvalidRequest(f"At most {MAX_INPUT_IMAGES} images per edit.", "image", "too_many_images")
        sources = [open_image(data, "image") for data in job.images]
        mask = editable_area(job.mask, sources[0].size) if job.mask is not None else None
        if job.size == "auto" and sources:
            width, height = sources[0].size
        else:
            width, height = resolve_size(job.size)
        if mask is not None and (width, height) != sources[0].size:
            # The hard mask keeps the input's own pixels, so the edit is made at the input's size.
            width, height = sources[0].size
        return width, height, sources, mask

    def _preview_sink(self, loop: asyncio.AbstractEventLoop, index: int, steps: int, partial_images: int,
                      width: int, height: int, job: ImageJob, on_partial: Callable[[PartialImage], None]):
        wanted = sorted({max(0, round(steps * (k + 1) / (partial_images + 1)) - 1) for k in range(partial_images)})
        counter = iter(range(partial_images))

        def on_step(step: int, total: int, preview: Image.Image) -> None:
            if step in wanted and step < total - 1:
                data = encode(preview.resize((width, height), Image.Resampling.BILINEAR), job.output_format,
                              min(job.output_compression, 80))
                loop.call_soon_threadsafe(on_partial, PartialImage(index, next(counter), data))

        return on_step

    def _store_inputs(self, job: ImageJob, principal: Principal, sources: list[Image.Image]) -> tuple[str, ...]:
        """Uploaded inputs become image records too, so an edit's lineage names its parents."""
        parents = []
        for data, image in zip(job.images, sources):
            artifact = Artifact(id=new_image_id(), data=data, format=_format_of(image), width=image.width,
                                height=image.height, tenant_id=principal.tenant_id)
            self.blobs.put(artifact.data)
            self.database.record_image(artifact, params={"kind": "upload"}, key_id=principal.key_id, user=job.user)
            parents.append(artifact.id)
        return tuple(parents)

    def _store_outputs(self, job: ImageJob, principal: Principal, model: str, results: list[EngineResult],
                       parents: tuple[str, ...]) -> list[ProducedImage]:
        produced = []
        params = job.parameters()
        for result in results:
            data = encode(result.image, job.output_format, job.output_compression)
            artifact = Artifact(id=new_image_id(), data=data, format=job.output_format, width=result.image.width,
                                height=result.image.height, model=model, seed=result.seed, parents=parents,
                                tenant_id=principal.tenant_id)
            self.blobs.put(data)
            self.database.record_image(artifact, params={**params, "seed": result.seed}, key_id=principal.key_id,
                                       user=job.user)
            produced.append(ProducedImage(artifact, result.seed, result.revised_prompt, result.unknown_words))
        return produced

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
        record = self.database.get_image(principal.tenant_id, image_id)
        return self.blobs.get(record.content_hash), record.format


def _format_of(image: Image.Image) -> str:
    return {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp"}[image.format]
