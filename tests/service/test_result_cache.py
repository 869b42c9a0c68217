"""The result cache keeps what the model made, byte for byte, within its budget of held bytes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pictor.engine.protocol import EngineRequest, EngineResult
from pictor.service.result_cache import ResultCache


def flat_image(mode: str = "RGB") -> Image.Image:
    image = Image.new(mode, (512, 512), "white")
    image.paste("red", (100, 100, 300, 260))
    return image


def noise_image(mode: str = "RGB") -> Image.Image:
    bands = len(mode)
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (512, 512, bands), dtype=np.uint8), mode)


def request(seed: int) -> EngineRequest:
    return EngineRequest(task="generate", prompt="p", width=512, height=512, seed=seed)


@pytest.mark.parametrize("make", [flat_image, noise_image])
@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_a_hit_gives_back_the_exact_pixels(make, mode):
    cache = ResultCache(64 * 1024 * 1024)
    made = make(mode)
    cache.remember(["k"], [None], [EngineResult(made, 7, ["glorp"], "revised")], "tenant")
    (hit,) = cache.lookup(["k"], [request(7)])
    assert hit is not None and hit.image.mode == mode and hit.image.tobytes() == made.tobytes()
    assert hit.unknown_words == ["glorp"] and hit.revised_prompt == "revised" and hit.seed == 7
    hit.image.paste("black", (0, 0, 512, 512))  # a caller's change stays its own
    (again,) = cache.lookup(["k"], [request(7)])
    assert again is not None and again.image.tobytes() == made.tobytes()


def test_flat_outputs_are_held_compressed_and_the_budget_counts_held_bytes():
    flat, noise = ResultCache(1 << 30), ResultCache(1 << 30)
    flat.remember(["a"], [None], [EngineResult(flat_image(), 1)], "t")
    noise.remember(["a"], [None], [EngineResult(noise_image(), 1)], "t")
    assert flat.bytes < 512 * 512 // 20  # a flat render compresses many times over
    assert noise.bytes >= 512 * 512 * 3  # noise is kept raw: compressing it would cost time and save nothing
    small = ResultCache(2 * 512 * 512 * 3 + 1024)  # room for two raw images, not three
    for i in range(3):
        small.remember([f"k{i}"], [None], [EngineResult(noise_image(), i)], "t")
    assert len(small) == 2 and small.bytes <= small.max_bytes
    assert small.lookup(["k0"], [request(0)]) == [None]  # the oldest went first
