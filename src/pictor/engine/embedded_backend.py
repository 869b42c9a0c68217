"""The embedded model behind the backend protocol.

What the world knows makes two things real here: a variation is the same scene (read back by the
judge) redrawn from another seed, and a transparent background is the judge's background model
turned into alpha.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pictor.embedded import WEIGHTS_DIR
from pictor.embedded.judge import background_colours, detect
from pictor.embedded.pipeline import Denoising, EmbeddedOutput, PictorEmbeddedPipeline, tensor_to_pil
from pictor.embedded.world import CELL_NAMES
from pictor.engine.embedded_scene import EmbeddedSceneReader
from pictor.engine.loading import load_model_folder
from pictor.engine.protocol import Capabilities, EngineRequest, EngineResult, StepCallback, wants_previews

# How far (RGB distance) from the background a pixel must be to be fully opaque.
ALPHA_RAMP = (12.0, 48.0)


def weights_hash(folder: str | Path) -> str:
    """sha256 over every weight file, so provenance can name exactly which weights made an image."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*.safetensors")):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def describe_detected(image: Image.Image) -> str:
    """A prompt for what the judge sees in an image of the world (used for variations)."""
    detection = detect(image)
    parts = [f"a {o.size} {o.colour} {o.shape} in the {CELL_NAMES[o.cell]}" for o in detection.objects]
    colours = tuple(dict.fromkeys(background_colours(detection)))  # a "gradient" of one colour is plain
    background = (f"on a {colours[0]} background" if len(colours) == 1
                  else f"on a gradient background from {colours[0]} to {colours[1]}")
    return (" and ".join(parts) + " " + background).strip()


def with_transparent_background(image: Image.Image) -> Image.Image:
    """RGBA: alpha from the distance to the fitted background, colours un-mixed at the edges."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    background = detect(rgb.astype(np.uint8)).background.astype(np.float32)
    distance = np.linalg.norm(rgb - background, axis=-1)
    low, high = ALPHA_RAMP
    alpha = np.clip((distance - low) / (high - low), 0.0, 1.0)
    safe = np.maximum(alpha, 1e-3)[..., None]
    colour = np.clip((rgb - (1 - alpha[..., None]) * background) / safe, 0, 255)
    rgba = np.concatenate([colour, alpha[..., None] * 255], axis=-1)
    return Image.fromarray(np.rint(rgba).astype(np.uint8), "RGBA")


class EmbeddedBackend:
    def __init__(self, folder: str | Path = WEIGHTS_DIR, device: str = "cpu", name: str = "pictor-embedded",
                 batch_invariant: bool = True):
        self.name = name
        # Matrix kernels pick their blocking by batch shape, so an image made in a batch differs (by a level
        # here and there) from the same seed made alone. With batch_invariant, each image gets its own
        # pipeline call: a seed reproduces its image byte for byte whatever else the server was doing, at
        # the cost of the throughput that batching gives under load.
        self.batch_invariant = batch_invariant
        self.device = device
        self.folder = Path(folder)
        self.pipe: PictorEmbeddedPipeline = load_model_folder(folder, device=device)
        self.weights_hash = weights_hash(folder)
        self.prompt_cache = self.pipe.prompt_cache  # for /metrics (see pictor/prompt_cache)
        self.capabilities = Capabilities(
            tasks=frozenset({"generate", "edit", "inpaint", "variation"}),
            native_resolution=self.pipe.native_resolution,
            max_side=4096,
            default_steps=11,  # every token decided in a round of its own
            # Every tier, and complexity=high's candidates, decide one token a round: in fewer rounds a round decides
            # several cells at once, each sampled without the others, and scenes get objects too many or crossed
            # (GenEval-style 0.26 at 4 rounds, 0.46 at 6, 0.99 at 11). A round costs a few milliseconds.
            step_range=(11, 11),
            previews=True,
            transparent_background=True,
        )
        self.scene = EmbeddedSceneReader()

    def run(self, requests: list[EngineRequest], on_step: StepCallback | None = None) -> list[EngineResult]:
        """Requests that share a batch key run as one pipeline call (one call each when batch_invariant)."""
        results: dict[int, EngineResult] = {}
        groups: dict[tuple, list[int]] = {}
        for index, request in enumerate(requests):
            key = (index,) if self.batch_invariant else request.batch_key()
            groups.setdefault(key, []).append(index)
        for indexes in groups.values():
            for index, result in zip(indexes, self._run_group([requests[i] for i in indexes], indexes, on_step)):
                results[index] = result
        return [results[i] for i in range(len(requests))]

    def _arguments(self, group: list[EngineRequest], indexes: list[int],
                   on_step: StepCallback | None) -> tuple[list[str], dict, list[str | None]]:
        """The pipeline's prompts and keyword arguments for requests that share a batch key."""
        first = group[0]
        prompts = [r.prompt for r in group]
        revised: list[str | None] = [None] * len(group)
        kwargs: dict = {"seed": [r.seed for r in group],
                        "num_inference_steps": first.steps or self.capabilities.default_steps}
        if first.guidance is not None:
            kwargs["guidance_scale"] = first.guidance
        if first.task == "generate":
            kwargs.update(width=first.width, height=first.height)
        elif first.task == "variation":
            prompts = revised = [describe_detected(r.images[0]) for r in group]
            kwargs.update(width=first.width, height=first.height)
        else:
            kwargs["image"] = [r.images[0].convert("RGB").resize((r.width, r.height), Image.Resampling.LANCZOS)
                               if r.images[0].size != (r.width, r.height) and r.mask is None
                               else r.images[0].convert("RGB") for r in group]
            if first.task == "inpaint":
                kwargs["mask"] = [r.mask for r in group]
        if on_step is not None:
            # The pipeline draws its current guess each round only for a callback that shows it.
            kwargs["previews"] = wants_previews(on_step)

            def preview(step: int, total: int, estimate: torch.Tensor | None) -> None:
                for row, index in enumerate(indexes):
                    on_step(index, step, total, None if estimate is None else tensor_to_pil(estimate[row]))
            kwargs["callback_on_step_end"] = preview
        return prompts, kwargs, revised

    @staticmethod
    def _results(group: list[EngineRequest], out: EmbeddedOutput, revised: list[str | None]) -> list[EngineResult]:
        results = []
        for request, image, seed, unknown, text in zip(group, out.images, out.seeds, out.unknown_words, revised):
            if request.transparent:
                image = with_transparent_background(image)
            results.append(EngineResult(image, seed, unknown, text))
        return results

    def _run_group(self, group: list[EngineRequest], indexes: list[int],
                   on_step: StepCallback | None) -> list[EngineResult]:
        prompts, kwargs, revised = self._arguments(group, indexes, on_step)
        return self._results(group, self.pipe(prompts, **kwargs), revised)

    # Step-level batching (see ModelWorker): each request's run begins on its own, advances one denoising step at
    # a time in a forward pass shared with every other run of its working size, whatever their steps, and ends.
    def begin(self, request: EngineRequest, on_step: StepCallback | None = None) -> StepRun:
        prompts, kwargs, revised = self._arguments([request], [0], on_step)
        return StepRun(request, self.pipe.begin(prompts, **kwargs), revised)

    def advance(self, runs: list[StepRun]) -> None:
        groups: dict[tuple, list[StepRun]] = {}
        for run in runs:
            groups.setdefault(run.denoising.key, []).append(run)
        for group in groups.values():
            self.pipe.advance([run.denoising for run in group])

    def finish(self, run: StepRun) -> EngineResult:
        return self._results([run.request], self.pipe.finish(run.denoising), run.revised)[0]


@dataclass
class StepRun:
    """A request between denoising steps (step-level batching)."""

    request: EngineRequest
    denoising: Denoising
    revised: list[str | None]

    @property
    def done(self) -> bool:
        return self.denoising.done
