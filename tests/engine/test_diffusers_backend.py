"""The diffusers backend on tiny random-weight pipelines of every family: tasks, sizes, seeds, previews, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_pipelines import VARIANTS

from pictor.engine.diffusers_backend import DiffusersBackend
from pictor.engine.families import FAMILIES
from pictor.engine.models_file import ModelSpec
from pictor.engine.protocol import EngineRequest

EXPECTED_TASKS = {
    "sd": {"generate", "variation", "inpaint"},
    "sd2": {"generate", "variation", "inpaint"},  # SD 2.x: v-prediction, linear projections (family sd)
    "sd-turbo": {"generate", "variation", "inpaint"},
    "sd-inpaint": {"inpaint"},
    "sdxl": {"generate", "variation", "inpaint"},
    "sdxl-turbo": {"generate", "variation", "inpaint"},
    "sdxl-inpaint": {"inpaint"},
    "instruct-pix2pix": {"edit"},
    "flux-schnell": {"generate", "variation", "inpaint"},
    "flux-dev": {"generate", "variation", "inpaint"},
    "flux-kontext": {"generate", "edit", "inpaint"},
}
# Not a multiple of any latent grid: the backend makes the nearest size it can and returns the one asked for.
WIDTH, HEIGHT = 40, 28


def source() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8), "RGB")


def hole() -> Image.Image:
    mask = Image.new("L", (WIDTH, HEIGHT), 0)
    mask.paste(255, (8, 6, 28, 20))
    return mask


def request(task: str, seed: int, prompt: str = "a red cat on a blue background",
            steps: int | None = 2) -> EngineRequest:
    return EngineRequest(task, prompt, WIDTH, HEIGHT, seed, images=[source()] if task != "generate" else [],
                         mask=hole() if task == "inpaint" else None, steps=steps)


def array(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.fixture(scope="module")
def backends(tiny_models) -> dict[str, DiffusersBackend]:
    return {name: DiffusersBackend(ModelSpec(name=f"tiny-{name}", path=str(path)))
            for name, path in tiny_models.items()}


@pytest.mark.parametrize("family", list(EXPECTED_TASKS))
def test_each_family_does_its_tasks_reproducibly(backends, family):
    backend = backends[family]
    assert backend.family.name == VARIANTS.get(family, family) and backend.capabilities.tasks == EXPECTED_TASKS[family]
    assert backend.device == "cpu" and backend.dtype == torch.float32 and len(backend.weights_hash) == 64
    for task in sorted(EXPECTED_TASKS[family]):
        first, other = backend.run([request(task, 7), request(task, 8)])
        again = backend.run([request(task, 7)])[0]
        assert first.image.size == (WIDTH, HEIGHT) and first.image.mode == "RGB" and first.seed == 7
        assert np.array_equal(array(first.image), array(again.image)), f"{family} {task}: a seed must reproduce"
        assert not np.array_equal(array(first.image), array(other.image)), f"{family} {task}: seeds must matter"


@pytest.mark.parametrize("family", ["sd", "sd2", "sdxl", "sdxl-turbo", "flux-dev"])
def test_images_equal_the_plain_diffusers_pipeline_for_the_same_seed(backends, family):
    """Cached per-prompt embeddings, the negative prompt and the generator on the device change nothing."""
    backend = backends[family]
    made = backend.run([request("generate", 5, steps=3)])[0].image
    # The backend made 40x28 at the nearest size on the latent grid, then resized: do the same here.
    width, height = backend._work_size(WIDTH, HEIGHT)
    plain = backend.pipe(prompt="a red cat on a blue background", width=width, height=height, num_inference_steps=3,
                         guidance_scale=backend.family.guidance, generator=torch.Generator("cpu").manual_seed(5),
                         **({"max_sequence_length": backend.family.max_sequence_length}
                            if backend.family.max_sequence_length else {})).images[0]
    plain = plain.resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS)
    assert np.abs(array(made) - array(plain)).max() <= 1


def test_prompt_embeddings_are_cached_per_prompt(backends):
    backend = backends["sdxl"]
    before = backend.prompt_cache.hits
    first = backend.run([request("generate", 1, prompt="a green square")])[0]
    misses = backend.prompt_cache.misses
    again = backend.run([request("generate", 2, prompt="a green square"),
                         request("generate", 1, prompt="a green square")])
    assert backend.prompt_cache.misses == misses  # the prompt and the empty negative were both cached
    assert backend.prompt_cache.hits >= before + 4 and backend.prompt_cache.bytes > 0
    assert np.array_equal(array(first.image), array(again[1].image))


@pytest.mark.parametrize("family", ["sd", "flux-schnell"])
def test_previews_come_every_step_at_latent_resolution(backends, family):
    backend = backends[family]
    seen: list[tuple[int, int, int, tuple[int, int]]] = []
    backend.run([request("generate", 3, steps=3)], lambda i, step, total, image: seen.append((i, step, total,
                                                                                             image.size)))
    width, height = backend._work_size(WIDTH, HEIGHT)
    latent = (width // backend.vae_scale_factor, height // backend.vae_scale_factor)
    assert seen == [(0, step, 3, latent) for step in range(3)]
    # img2img starts part-way down the schedule: its steps are numbered in the whole schedule
    seen.clear()
    backend.run([request("variation", 3, steps=5)], lambda i, step, total, image: seen.append((i, step, total,
                                                                                               image.size)))
    assert seen and seen[-1][1:3] == (4, 5) and len(seen) < 5


def test_batched_requests_run_as_one_call_and_keep_their_seeds(tiny_models):
    batching = DiffusersBackend(ModelSpec(name="b", path=str(tiny_models["sd"])), batch_invariant=False)
    order: list[tuple[int, int]] = []
    requests = [request("generate", 11, prompt="a red cat"), request("generate", 12, prompt="a blue dog")]
    together = batching.run(requests, lambda i, step, total, image: order.append((i, step)))
    assert order == [(0, 0), (1, 0), (0, 1), (1, 1)]  # one pipeline call: both rows at every step
    order.clear()
    batching.batch_invariant = True
    alone = batching.run(requests, lambda i, step, total, image: order.append((i, step)))
    assert order == [(0, 0), (0, 1), (1, 0), (1, 1)]  # one call per request
    for joint, single in zip(together, alone):
        assert joint.seed == single.seed
        assert np.abs(array(joint.image) - array(single.image)).max() <= 2  # batching may move the last bits


def test_turbo_family_override_and_operator_defaults(tiny_models):
    turbo = DiffusersBackend(ModelSpec(name="t", path=str(tiny_models["sd"]), family="sd-turbo"))
    assert turbo.capabilities.default_steps == 1 and turbo.capabilities.step_range == (1, 4)
    steps: list[int] = []
    turbo.run([request("generate", 1, steps=9)], lambda i, step, total, image: steps.append(total))
    assert set(steps) == {4}  # clamped to the family's range
    # A 1-step model still makes a variation: img2img needs at least one step after the strength cut.
    assert turbo.run([request("variation", 1, steps=1)])[0].image.size == (WIDTH, HEIGHT)
    tuned = DiffusersBackend(ModelSpec(name="s", path=str(tiny_models["sd"]), steps=7, guidance=3.0,
                                       edit_by_img2img=True))
    assert tuned.capabilities.default_steps == 7 and "edit" in tuned.capabilities.tasks
    assert tuned.run([request("edit", 2)])[0].image.size == (WIDTH, HEIGHT)


def test_a_task_outside_the_family_is_refused(backends):
    with pytest.raises(ValueError, match="cannot do generate"):
        backends["instruct-pix2pix"].run([request("generate", 1)])


def test_every_family_in_the_table_has_a_tiny_builder():
    from tiny_pipelines import FAMILIES as BUILT

    assert set(FAMILIES) == set(BUILT) == set(EXPECTED_TASKS) - set(VARIANTS)
    assert set(VARIANTS.values()) <= set(FAMILIES)


def test_turbo_models_run_their_distilled_defaults(backends):
    """SDXL-Turbo: 4 steps at most, no classifier-free guidance (no negative embeddings are even made), 512 px."""
    backend = backends["sdxl-turbo"]
    caps = backend.capabilities
    assert (caps.default_steps, caps.step_range, caps.native_resolution) == (4, (1, 4), 512)
    assert backend._steps_and_guidance(request("generate", 1, steps=None)) == (4, 0.0)
    assert type(backend.pipe.scheduler).__name__ == "EulerAncestralDiscreteScheduler"
    totals: list[int] = []
    backend.run([request("generate", 1, prompt="a small dog", steps=9)],
                lambda i, step, total, image: totals.append(total))
    assert set(totals) == {4}
    assert backend.prompt_cache.get((None, None)) is None  # the empty negative prompt was never encoded
    assert backends["sd-turbo"].capabilities.default_steps == 1


def test_sd2_predicts_v_with_linear_projections(backends):
    backend = backends["sd2"]
    assert backend.pipe.scheduler.config.prediction_type == "v_prediction"
    assert backend.pipe.unet.config.use_linear_projection and backend.pipe.unet.config.upcast_attention
    assert backend.pipe.text_encoder.config.hidden_act == "gelu"
