"""The exact result cache: a seeded request made again answers from memory instead of the model.

What is cached is the model's own output (the image before badge, watermark and signature, with the
words it did not know and its revised prompt), never a served file: every hit still goes through the
store path, so it gets its own artifact id, watermark, C2PA manifest and audit entry.

The key names everything the model's output depends on: the tenant (a cache is never shared across
tenants), the model and its weights, the device type, the normalised parameters (kind, task, prompt,
input and mask content hashes, size, steps, background, the seed of this one image), plus the service
settings that shape the model's inputs, and what the engine is actually handed (the derived prompt,
canvas and mask). Only requests with an explicit seed are cached: without one the
seed is random, so a repeat could never match. LRU, bounded by the bytes it holds.

Pixels are held as bytes, deflated (ISA-L, level 1: about 0.5 ms for a flat 1024 px image, where zlib's fastest
level took 7 to 12) when a sample of them compresses well: a flat 1024 px output of the embedded model is 21 KB
instead of 3 MB, and a server that kept its 128 MB of PIL images (4 bytes a pixel, between the model's
temporaries) peaked near 1 GB. Pixels that do not compress are kept raw.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from isal import isal_zlib
from PIL import Image

from pictor.engine.protocol import EngineRequest, EngineResult
from pictor.service.governance import pixels_hash
from pictor.service.planning import Plan

# Compress when the first 64 KB of pixels shrink at least this much (photographs rarely do; flat renders do).
SAMPLE_BYTES = 64 * 1024
WORTH_COMPRESSING = 4.0


@dataclass(frozen=True)
class CachedOutput:
    pixels: bytes  # the image's raw bytes, deflated (zlib format) when `compressed`
    compressed: bool
    mode: str
    size: tuple[int, int]
    unknown_words: tuple[str, ...]
    revised_prompt: str | None
    tenant_id: str = ""

    @classmethod
    def of(cls, image: Image.Image, unknown_words: tuple[str, ...], revised_prompt: str | None,
           tenant_id: str = "") -> CachedOutput:
        raw = image.tobytes()
        sample = raw[:SAMPLE_BYTES]
        compressed = len(sample) >= WORTH_COMPRESSING * len(isal_zlib.compress(sample, 1))
        return cls(isal_zlib.compress(raw, 1) if compressed else raw, compressed, image.mode, image.size,
                   unknown_words, revised_prompt, tenant_id)

    def image(self) -> Image.Image:
        """A new image of the cached pixels (the caller may change it)."""
        raw = isal_zlib.decompress(self.pixels) if self.compressed else self.pixels
        return Image.frombytes(self.mode, self.size, raw)

    @property
    def nbytes(self) -> int:
        return len(self.pixels) + 256


def cache_key(**fields: object) -> str:
    """A stable digest of the key fields (JSON, sorted): order and spelling of the call do not matter."""
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def engine_inputs(request: EngineRequest, digests: dict[int, str] | None = None) -> dict[str, object]:
    """The key fields of what the engine is handed, beyond the job's own: the prompt, canvas and mask the service
    derived (markup, composition, automatic edit masks, a GIF's scene without its motion) and the sampling knobs.
    `digests` (by image object) spares hashing the same canvas again for every candidate of one request."""
    known = {} if digests is None else digests

    def digest(image: Image.Image | None) -> str | None:
        if image is None:
            return None
        if id(image) not in known:
            known[id(image)] = pixels_hash(image)
        return known[id(image)]

    return {"engine_task": request.task, "engine_prompt": request.prompt, "width": request.width,
            "height": request.height, "guidance": request.guidance, "transparent": request.transparent,
            "engine_images": [digest(image) for image in request.images], "engine_mask": digest(request.mask)}


class ResultCache:
    """A thread-safe LRU of model outputs, holding at most `max_bytes` (0 = off: nothing is kept)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max(0, max_bytes)
        self._items: OrderedDict[str, CachedOutput] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._items)

    def keys_for(self, plan: Plan, tenant_id: str, requests: list[EngineRequest], mask_blend_px: int,
                 auto_edit_mask: bool) -> list[str]:
        """The key of each engine request of a plan (see the module's docstring for what it names)."""
        backend, params = plan.backend, plan.job.parameters()
        assert backend is not None
        common = {"tenant": tenant_id, "model": plan.model, "weights": backend.weights_hash,
                  "device": backend.device.split(":")[0], "kind": params["kind"], "task": plan.task,
                  "prompt": plan.job.prompt, "inputs": params["input_hashes"], "mask": params["mask_hash"],
                  "size": plan.size, "background": plan.job.background, "blend": mask_blend_px,
                  "auto_mask": auto_edit_mask}
        # The engine request's own inputs too: markup, composition and automatic edit masks derive the prompt, mask
        # and canvas the model sees from the job, so the job's fields alone would let two different edits collide.
        digests: dict[int, str] = {}  # the candidates of one request share their canvas and mask objects
        return [cache_key(**common, steps=request.steps or plan.steps, seed=request.seed,
                          **engine_inputs(request, digests)) for request in requests]

    def lookup(self, keys: list[str], requests: list[EngineRequest]) -> list[EngineResult | None]:
        """The cached outputs as engine results (None for a miss); their model time is the lookup's own."""
        found: list[EngineResult | None] = []
        for key, request in zip(keys, requests):
            started = time.perf_counter()
            hit = self.get(key)
            found.append(None if hit is None else EngineResult(
                hit.image(), request.seed, list(hit.unknown_words), hit.revised_prompt,
                model_seconds=time.perf_counter() - started))
        return found

    def remember(self, keys: list[str], cached: list[EngineResult | None], made: list[EngineResult],
                 tenant_id: str) -> None:
        """Keep the outputs just made (`made`, in the order of the misses in `cached`)."""
        misses = [key for key, hit in zip(keys, cached) if hit is None]
        for key, result in zip(misses, made):
            self.put(key, CachedOutput.of(result.image, tuple(result.unknown_words), result.revised_prompt, tenant_id))

    def get(self, key: str) -> CachedOutput | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return found

    def forget_tenant(self, tenant_id: str) -> int:
        """Drop every output cached for a tenant (an erased prompt may be among them); returns how many."""
        with self._lock:
            keys = [key for key, output in self._items.items() if output.tenant_id == tenant_id]
            for key in keys:
                self.bytes -= self._items.pop(key).nbytes
            return len(keys)

    def put(self, key: str, output: CachedOutput) -> None:
        size = output.nbytes
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= old.nbytes
            self._items[key] = output
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self.bytes -= evicted.nbytes
