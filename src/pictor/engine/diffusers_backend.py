"""Operators' own diffusers models behind the backend protocol.

One resident base pipeline per model (loaded from its folder, a single-file checkpoint or a hub id);
the pipelines of its other tasks are made from it with `from_pipe`, so they share its weights.
Requests that share a batch key run as one pipeline call with lists of prompt embeddings, images and
per-request generators (one call each when `batch_invariant`). Prompt embeddings are cached per prompt;
previews are a linear projection of the latents (see previews.py). On CUDA the model runs in bf16 with
SDPA attention, channels_last, torch.compile (regional for DiTs, CUDA graphs for small UNets), warmed
before the first request.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import math
from pathlib import Path

import torch
from diffusers.utils import logging as diffusers_logging
from PIL import Image

from pictor.engine.families import Family, detect_family, family, tasks_of
from pictor.engine.loading import load_model_folder, load_single_file, pipeline_class_name, resolve_source
from pictor.engine.models_file import ModelsFileError, ModelSpec, import_reference, make_scene_reader
from pictor.engine.previews import fit_latent_rgb, latents_to_previews
from pictor.engine.protocol import Capabilities, EngineRequest, EngineResult, StepCallback, wants_previews
from pictor.engine.scene import NO_UNDERSTANDING
from pictor.prompt_cache import PromptCache

log = logging.getLogger(__name__)

VARIATION_STRENGTH = 0.6  # how far a variation departs from its input (1 = ignore it)
EDIT_STRENGTH = 0.75  # an unmasked edit by img2img (only where the operator enables edit_by_img2img)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".gguf")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# UNets at or below this native side are launch-bound at batch 1: CUDA graphs pay for them.
CUDA_GRAPH_MAX_SIDE = 512


def weights_sha256(source: str | Path) -> str:
    """sha256 over every weight file (streamed), so provenance names exactly which weights made an image."""
    source = Path(source)
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*")
                                                      if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    digest = hashlib.sha256()
    for path in files:
        digest.update((path.name if source.is_file() else path.relative_to(source).as_posix()).encode())
        with open(path, "rb") as data:
            while chunk := data.read(8 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def resolve_dtype(name: str, device: str) -> torch.dtype:
    if name == "auto":  # bf16 where the hardware runs it natively; CPUs get fp32 (bf16 there is slow and lossy)
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return DTYPES[name]


class DiffusersBackend:
    def __init__(self, spec: ModelSpec, device: str = "cpu", batch_invariant: bool = True, warm: bool = True):
        self.name = spec.name
        self.spec = spec
        diffusers_logging.set_verbosity_error()  # per-call notices (dtype casts of shared modules) are not news
        self.device = spec.device or device
        self.dtype = resolve_dtype(spec.dtype, self.device)
        # Batched images differ from the same seeds run alone in the last bits of matrix kernels, so a seed
        # reproduces its image byte for byte only with one pipeline call per request.
        self.batch_invariant = batch_invariant
        if spec.validator:  # imported now, so a wrong reference stops the server at start (the service makes it)
            try:
                import_reference(spec.validator)
            except ModelsFileError as error:
                raise ModelsFileError(f"model {spec.name}: {error}") from error
        try:  # made now, so a wrong reference stops the server at start
            self.scene = make_scene_reader(spec.scene_reader) if spec.scene_reader else NO_UNDERSTANDING
        except ModelsFileError as error:
            raise ModelsFileError(f"model {spec.name}: {error}") from error
        source = resolve_source(spec.path, spec.relative_to)
        if source.is_file():
            if not spec.family:
                raise ValueError(f"model {spec.name}: a single-file checkpoint needs `family` in the models file")
            self.family: Family = family(spec.family)
            base = next(iter(self.family.pipelines.values()))
            self.pipe = load_single_file(source, base, spec.config, self.device, self.dtype)
        else:
            class_name = pipeline_class_name(source)
            self.family = family(spec.family or detect_family(source, class_name, f"{spec.name} {spec.path}"))
            self.pipe = load_model_folder(source, self.device, self.dtype)
        self.weights_hash = weights_sha256(source)
        self._pipes = {type(self.pipe).__name__: self.pipe}
        self._cuda_graphs = False  # set where the denoiser is compiled with CUDA graphs
        self.vae_scale_factor: int = self.pipe.vae_scale_factor
        self.prompt_cache = PromptCache(max_items=512)  # per prompt, so batch-invariant; read by /metrics
        self.projection = fit_latent_rgb(self.pipe.vae, self.vae_scale_factor)
        native = self._native_resolution()
        self.capabilities = Capabilities(
            tasks=tasks_of(self.family, spec.edit_by_img2img), native_resolution=native, max_side=2 * native,
            default_steps=spec.steps or self.family.default_steps, step_range=self.family.step_range,
            previews=True, transparent_background=False, validator=spec.validator)
        if self.device.startswith("cuda"):
            self._optimise_for_cuda()
            if warm:
                self.warm_up()

    # ---- loading --------------------------------------------------------------------------------

    def _native_resolution(self) -> int:
        if self.family.name.endswith("turbo"):  # trained at 512 whatever the base's config says
            return self.family.native_resolution
        unet = getattr(self.pipe, "unet", None)
        side = unet.config.sample_size if unet is not None else getattr(self.pipe, "default_sample_size", 128)
        return int(side) * self.vae_scale_factor

    def _pipeline(self, task: str):
        """The task's pipeline, sharing the base's modules (made once)."""
        class_name = self.family.pipelines.get(task) or self.family.pipelines["variation"]  # edit by img2img
        if class_name not in self._pipes:
            import diffusers

            # from_pipe casts to fp32 unless told the dtype, which would convert the shared modules in place
            derived = getattr(diffusers, class_name).from_pipe(self.pipe, dtype=self.dtype)
            derived.set_progress_bar_config(disable=True)
            self._pipes[class_name] = derived
        return self._pipes[class_name]

    def _optimise_for_cuda(self) -> None:
        """bf16 + SDPA come from loading (diffusers' default attention is SDPA); the rest is here."""
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        pipe = self.pipe
        if hasattr(pipe, "fuse_qkv_projections"):
            pipe.fuse_qkv_projections()  # one matmul for Q, K and V
        unet = getattr(pipe, "unet", None)
        if unet is not None:
            unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
        if self.spec.compile == "off":
            return
        if unet is None:  # a DiT: compile the repeated block once, reuse it for every layer
            pipe.transformer.compile_repeated_blocks(fullgraph=True)
        else:
            self._cuda_graphs = self.capabilities.native_resolution <= CUDA_GRAPH_MAX_SIDE
            unet.compile(fullgraph=True, mode="reduce-overhead" if self._cuda_graphs else "max-autotune-no-cudagraphs")
        pipe.vae.decoder.compile(fullgraph=True)

    def warm_up(self) -> None:
        """One request of each shape served first (batch 1 at the native side), so compiling happens now."""
        side = self.capabilities.native_resolution
        task = "generate" if "generate" in self.capabilities.tasks else sorted(self.capabilities.tasks)[0]
        grey = Image.new("RGB", (side, side), (128, 128, 128))
        request = EngineRequest(task, "warm-up", side, side, 0, images=[grey],
                                mask=Image.new("L", (side, side), 255) if task == "inpaint" else None)
        for _ in range(2):  # the second run records CUDA graphs where they are used
            self.run([request])

    # ---- running --------------------------------------------------------------------------------

    def run(self, requests: list[EngineRequest], on_step: StepCallback | None = None) -> list[EngineResult]:
        """Requests that share a batch key run as one pipeline call (one call each when batch_invariant)."""
        groups: dict[tuple, list[int]] = {}
        for index, request in enumerate(requests):
            key = (index,) if self.batch_invariant else request.batch_key()
            groups.setdefault(key, []).append(index)
        results: dict[int, EngineResult] = {}
        for indexes in groups.values():
            made = self._run_group([requests[i] for i in indexes], indexes, on_step)
            results.update(zip(indexes, made))
        return [results[i] for i in range(len(requests))]

    def _work_size(self, width: int, height: int) -> tuple[int, int]:
        """The size the model makes: within its max side, a multiple of its latent (and patch) grid."""
        scale = min(1.0, self.capabilities.max_side / max(width, height))
        multiple = max(8, 2 * self.vae_scale_factor)  # FLUX packs 2x2 latents; SD pipelines check for 8
        return (max(multiple, round(width * scale / multiple) * multiple),
                max(multiple, round(height * scale / multiple) * multiple))

    def _steps_and_guidance(self, request: EngineRequest) -> tuple[int, float]:
        low, high = self.capabilities.step_range
        steps = min(high, max(low, request.steps or self.capabilities.default_steps))
        if request.guidance is not None:
            return steps, request.guidance
        return steps, self.spec.guidance if self.spec.guidance is not None else self.family.guidance

    def _run_group(self, group: list[EngineRequest], indexes: list[int],
                   on_step: StepCallback | None) -> list[EngineResult]:
        first = group[0]
        if first.task not in self.capabilities.tasks:
            raise ValueError(f"model {self.name} ({self.family.name}) cannot do {first.task}")
        pipe = self._pipeline(first.task)
        steps, guidance = self._steps_and_guidance(first)
        width, height = self._work_size(first.width, first.height)
        kwargs: dict = {"num_inference_steps": steps, "guidance_scale": guidance,
                        "generator": [torch.Generator(self.device).manual_seed(r.seed) for r in group],
                        "width": width, "height": height, "max_sequence_length": self.family.max_sequence_length}
        kwargs.update(self._embeddings(pipe, [r.prompt for r in group], guidance))
        if first.task != "generate":
            kwargs["image"] = [r.images[0].convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
                               for r in group]
        native_edit = first.task == "edit" and "edit" in self.family.pipelines
        if first.task == "variation" or (first.task == "edit" and not native_edit):
            strength = VARIATION_STRENGTH if first.task == "variation" else EDIT_STRENGTH
            kwargs.update(strength=strength, num_inference_steps=max(steps, math.ceil(1 / strength)))
        elif first.task == "inpaint":
            kwargs.update(strength=1.0, mask_image=[r.mask.convert("L").resize((width, height)) for r in group])
        if native_edit and self.family.image_guidance is not None:
            kwargs["image_guidance_scale"] = self.family.image_guidance
        if self.family.name == "flux-kontext":
            # Kontext sizes its output by area (1 MP unless told); the input is already at the output's size,
            # so it is not resized to Kontext's training sizes either.
            kwargs.update(max_area=width * height, _auto_resize=False)
        if on_step is not None or self._cuda_graphs:
            kwargs.update(callback_on_step_end=self._step_callback(indexes, on_step, width, height,
                                                                   kwargs["num_inference_steps"]),
                          callback_on_step_end_tensor_inputs=["latents"])
        accepted = inspect.signature(pipe.__call__).parameters
        out = pipe(**{k: v for k, v in kwargs.items() if k in accepted and v is not None})
        results = []
        for request, image in zip(group, out.images):
            if image.size != (request.width, request.height):
                image = image.resize((request.width, request.height), Image.Resampling.LANCZOS)
            results.append(EngineResult(image.convert("RGB"), request.seed))
        return results

    def _step_callback(self, indexes: list[int], on_step: StepCallback | None, width: int, height: int, steps: int):
        flux = self.family.architecture == "flux"
        wanted = wants_previews(on_step)

        def callback(pipe, step: int, timestep, tensors: dict) -> dict:
            if self._cuda_graphs:  # the step's graph outputs are consumed: the next replay may reuse their memory
                torch.compiler.cudagraph_mark_step_begin()
            if on_step is None:
                return tensors
            # img2img starts part-way down the schedule: report the step's place in the whole of it
            done = step + steps - getattr(pipe, "_num_timesteps", steps)
            if not wanted:  # the worker only listens for cancellation: no device-to-host copy
                for index in indexes:
                    on_step(index, done, steps, None)
                return tensors
            latents = tensors["latents"]
            if flux:  # packed 2x2 patches -> (batch, channels, h, w)
                latents = type(pipe)._unpack_latents(latents, height, width, self.vae_scale_factor)
            for index, preview in zip(indexes, latents_to_previews(latents, self.projection)):
                on_step(index, done, steps, preview)
            return tensors

        return callback

    # ---- prompt embeddings (cached per prompt) ----------------------------------------------------

    def _embeddings(self, pipe, prompts: list[str], guidance: float) -> dict[str, torch.Tensor]:
        """The call's embedding arguments: each prompt encoded alone (cached), then stacked."""
        names, rows = None, []
        for prompt in prompts:
            names, encoded = self._encode_prompt(pipe, prompt)
            rows.append(encoded)
        out = {name: torch.cat([row[i] for row in rows]) for i, name in enumerate(names)}
        if self.family.cfg and guidance > 1:
            negative_names, negative = self._encode_prompt(pipe, None)
            out.update({name: tensor.expand(len(prompts), *tensor.shape[1:])
                        for name, tensor in zip(negative_names, negative)})
        return out

    def _encode_prompt(self, pipe, prompt: str | None) -> tuple[tuple[str, ...], tuple[torch.Tensor, ...]]:
        architecture = self.family.architecture
        names = {("sd", False): ("prompt_embeds",), ("sd", True): ("negative_prompt_embeds",),
                 ("sdxl", False): ("prompt_embeds", "pooled_prompt_embeds"),
                 ("sdxl", True): ("negative_prompt_embeds", "negative_pooled_prompt_embeds"),
                 ("flux", False): ("prompt_embeds", "pooled_prompt_embeds")}[(architecture, prompt is None)]
        key = (prompt, self.family.max_sequence_length)
        found = self.prompt_cache.get(key)
        if found is not None:
            return names, found
        with torch.no_grad():
            encoded = self._encode(pipe, prompt)
        self.prompt_cache.put(key, encoded)
        return names, encoded

    def _encode(self, pipe, prompt: str | None) -> tuple[torch.Tensor, ...]:
        device, architecture = self.pipe.device, self.family.architecture
        if architecture == "sd":
            # The negative is the empty prompt, which is what the pipelines encode when given none.
            if hasattr(pipe, "encode_prompt"):
                return (pipe.encode_prompt(prompt or "", device, 1, False)[0],)
            return (pipe._encode_prompt(prompt or "", device, 1, False),)  # InstructPix2Pix
        if architecture == "sdxl":
            if prompt is None:  # zeros or the empty prompt, as the model's config says
                _, negative, _, negative_pooled = pipe.encode_prompt("", device=device, num_images_per_prompt=1,
                                                                     do_classifier_free_guidance=True)
                return negative, negative_pooled
            embeds, _, pooled, _ = pipe.encode_prompt(prompt, device=device, num_images_per_prompt=1,
                                                      do_classifier_free_guidance=False)
            return embeds, pooled
        embeds, pooled, _ = pipe.encode_prompt(prompt=prompt, prompt_2=None, device=device, num_images_per_prompt=1,
                                               max_sequence_length=self.family.max_sequence_length or 512)
        return embeds, pooled
