"""The embedded model as a diffusers pipeline: text-to-image, edit by instruction, inpainting.

Sampling is rectified flow with diffusers' FlowMatchEulerDiscreteScheduler. Classifier-free
guidance uses one scale for text and, for edits, a second one for the source image
(InstructPix2Pix style). Each item's noise comes from its own seed, so a result does not depend
on what else shared its batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler
from PIL import Image

from pictor.embedded.data import TASK_IDS
from pictor.embedded.grammar import parse_instruction, parse_prompt
from pictor.embedded.network import EmbeddedTextEncoder, EmbeddedUNet
from pictor.embedded.prompt_cache import PromptCache
from pictor.embedded.tokenizer import WorldTokenizer

TOKENIZER_FILE = Path("tokenizer") / "tokenizer.json"
StepCallback = Callable[[int, int, torch.Tensor], None]


@dataclass
class Denoising:
    """One call's sampling state between steps. Several advance together in one forward pass (step-level batching:
    a request that arrives while others are half way joins them at its own first step)."""

    n: int
    task: str
    branches: int  # guidance branches stacked per item: 2 (text / none), 3 for edits (+ image / none)
    x: torch.Tensor  # (n, 3, H, W) the current noisy sample
    timesteps: torch.Tensor
    sigmas: torch.Tensor  # len(timesteps) + 1, ending at 0
    train_steps: int
    guidance_scale: float
    image_guidance_scale: float
    states: torch.Tensor  # the branches' inputs, stacked (branches * n, ...)
    pooled: torch.Tensor
    keep: torch.Tensor
    image: torch.Tensor
    mask: torch.Tensor
    task_ids: torch.Tensor
    out_size: tuple[int, int]
    images: list[Image.Image] | None
    masks: list[Image.Image] | None
    seeds: list[int]
    unknown_words: list[list[str]]
    callback: StepCallback | None = None
    index: int = 0

    @property
    def done(self) -> bool:
        return self.index >= len(self.timesteps)

    @property
    def key(self) -> tuple[int, int]:
        """Runs with the same key can share a forward pass: the working size (prompts are padded alike)."""
        return tuple(self.x.shape[-2:])


@dataclass
class EmbeddedOutput:
    images: list[Image.Image]
    seeds: list[int]
    unknown_words: list[list[str]]


def _pil_to_unit(image: Image.Image, width: int, height: int) -> torch.Tensor:
    resized = image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
    array = np.asarray(resized, dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1).div(127.5).sub(1.0)


def tensor_to_pil(x: torch.Tensor) -> Image.Image:
    array = x.float().clamp(-1, 1).add(1).mul(127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array, "RGB")


def working_size(width: int, height: int, native: int, multiple: int) -> tuple[int, int]:
    """The model's resolution for an output of width x height: short side native, same aspect."""
    scale = native / min(width, height)
    return (max(multiple, round(width * scale / multiple) * multiple),
            max(multiple, round(height * scale / multiple) * multiple))


class PictorEmbeddedPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->unet"

    def __init__(self, unet: EmbeddedUNet, text_encoder: EmbeddedTextEncoder,
                 scheduler: FlowMatchEulerDiscreteScheduler):
        super().__init__()
        self.register_modules(unet=unet, text_encoder=text_encoder, scheduler=scheduler)
        self.tokenizer: WorldTokenizer | None = None
        self.prompt_cache = PromptCache()  # the text encoder's outputs by token ids (max_items 0 = off)

    # The word-level tokenizer is a `tokenizers` file, not a diffusers component: carried beside.
    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs) -> PictorEmbeddedPipeline:
        pipe = super().from_pretrained(path, **kwargs)
        pipe.tokenizer = WorldTokenizer.from_file(Path(path) / TOKENIZER_FILE)
        return pipe

    def save_pretrained(self, path: str | Path, **kwargs) -> None:
        super().save_pretrained(path, safe_serialization=True, **kwargs)
        self.tokenizer.save(Path(path) / TOKENIZER_FILE)

    @property
    def native_resolution(self) -> int:
        return int(self.unet.config.sample_size)

    @property
    def size_multiple(self) -> int:
        return int(self.unet.config.patch) * 2 ** (len(self.unet.config.channels) - 1)

    def _encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids = self.tokenizer.encode(texts)
        key = (str(self.device), str(self.text_encoder.dtype), tuple(tuple(row) for row in ids))
        found = self.prompt_cache.get(key)
        if found is None:
            found = self.text_encoder(torch.tensor(ids, device=self.device))
            self.prompt_cache.put(key, found)
        return found

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        image: Image.Image | list[Image.Image] | None = None,
        mask: Image.Image | list[Image.Image] | None = None,
        width: int | None = None,
        height: int | None = None,
        num_inference_steps: int = 12,
        guidance_scale: float = 4.0,
        image_guidance_scale: float = 1.5,
        seed: int | list[int] = 0,
        callback_on_step_end: StepCallback | None = None,
    ) -> EmbeddedOutput:
        """Generate (no image), edit (image), or inpaint (image + mask: white = fill in)."""
        run = self.begin(prompt, image, mask, width, height, num_inference_steps, guidance_scale,
                         image_guidance_scale, seed, callback_on_step_end)
        while not run.done:
            self.advance([run])
        return self.finish(run)

    @torch.no_grad()
    def begin(
        self,
        prompt: str | list[str],
        image: Image.Image | list[Image.Image] | None = None,
        mask: Image.Image | list[Image.Image] | None = None,
        width: int | None = None,
        height: int | None = None,
        num_inference_steps: int = 12,
        guidance_scale: float = 4.0,
        image_guidance_scale: float = 1.5,
        seed: int | list[int] = 0,
        callback_on_step_end: StepCallback | None = None,
    ) -> Denoising:
        """Everything a call needs before its first step: noise, encoded prompts, conditions, its schedule."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        n = len(prompts)
        images = None if image is None else ([image] * n if isinstance(image, Image.Image) else list(image))
        masks = None if mask is None else ([mask] * n if isinstance(mask, Image.Image) else list(mask))
        seeds = [seed + i for i in range(n)] if isinstance(seed, int) else list(seed)
        if masks is not None and images is None:
            raise ValueError("a mask needs an image to inpaint")
        task = "generate" if images is None else ("inpaint" if masks is not None else "edit")
        if masks is not None:
            out_w, out_h = images[0].size  # the composite keeps the input's own pixels
        elif images is not None:
            out_w, out_h = width or images[0].width, height or images[0].height
        else:
            out_w, out_h = width or self.native_resolution, height or self.native_resolution
        work_w, work_h = working_size(out_w, out_h, self.native_resolution, self.size_multiple)
        device, dtype = self.device, self.unet.dtype

        understood = [(parse_instruction(p) if task == "edit" else parse_prompt(p)).unknown_words
                      for p in prompts]
        condition = torch.zeros(n, 3, work_h, work_w)
        mask_t = torch.zeros(n, 1, work_h, work_w)
        if images is not None:
            condition = torch.stack([_pil_to_unit(im, work_w, work_h) for im in images])
        if masks is not None:
            mask_t = torch.stack([self._mask_tensor(m, work_w, work_h) for m in masks])
            condition = condition * (1 - mask_t)  # masked area is mid-gray, as in training
        condition, mask_t = condition.to(device, dtype), mask_t.to(device, dtype)

        noise = torch.stack([torch.randn(3, work_h, work_w, generator=torch.Generator().manual_seed(s))
                             for s in seeds]).to(device, dtype)
        text_states, pooled, keep = self._encode(prompts + [""] * n)
        # Guidance branches, stacked in one batch: (text, image), (no text, image), (no text, no image).
        branches = 3 if task == "edit" else 2
        cond_states = [text_states[:n], text_states[n:], text_states[n:]][:branches]
        cond_pooled = [pooled[:n], pooled[n:], pooled[n:]][:branches]
        cond_keep = [keep[:n], keep[n:], keep[n:]][:branches]
        images_in = [condition, condition, torch.zeros_like(condition)][:branches]
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        return Denoising(
            n=n, task=task, branches=branches, x=noise, timesteps=self.scheduler.timesteps.clone(),
            sigmas=self.scheduler.sigmas.clone(), train_steps=self.scheduler.config.num_train_timesteps,
            guidance_scale=guidance_scale, image_guidance_scale=image_guidance_scale,
            states=torch.cat(cond_states), pooled=torch.cat(cond_pooled), keep=torch.cat(cond_keep),
            image=torch.cat(images_in), mask=mask_t.repeat(branches, 1, 1, 1),
            task_ids=torch.full((branches * n,), TASK_IDS[task], device=device, dtype=torch.long),
            out_size=(out_w, out_h), images=images, masks=masks, seeds=seeds, unknown_words=understood,
            callback=callback_on_step_end)

    @torch.no_grad()
    def advance(self, runs: list[Denoising]) -> None:
        """One denoising step for every run, in one forward pass: runs at different steps, of different tasks and
        sizes of batch, share it (step-level batching) as long as their working sizes match (see Denoising.key)."""
        if len({run.key for run in runs}) > 1:
            raise ValueError("runs of different working sizes cannot share a forward pass")
        dtype = self.unet.dtype
        sigmas = [(run.timesteps[run.index] / run.train_steps).expand(run.branches * run.n).to(dtype) for run in runs]
        out = self.unet(torch.cat([run.x.repeat(run.branches, 1, 1, 1) for run in runs]), torch.cat(sigmas),
                        torch.cat([run.image for run in runs]), torch.cat([run.mask for run in runs]),
                        torch.cat([run.task_ids for run in runs]), torch.cat([run.states for run in runs]),
                        torch.cat([run.pooled for run in runs]), torch.cat([run.keep for run in runs]))
        for run, sigma, predicted in zip(runs, sigmas, out.split([run.branches * run.n for run in runs])):
            p = predicted.chunk(run.branches)
            # Guidance on the clean-image estimates (linear, so the same as on velocities).
            if run.task == "edit":
                full, image_only, neither = p
                clean = (neither + run.image_guidance_scale * (image_only - neither)
                         + run.guidance_scale * (full - image_only))
            else:
                clean = p[1] + run.guidance_scale * (p[0] - p[1])
            if run.callback is not None:
                run.callback(run.index, len(run.timesteps), clean)
            # x_t = (1 - s) x0 + s noise, so the velocity noise - x0 is (x_t - x0) / s.
            velocity = (run.x - clean) / sigma[:run.n, None, None, None]
            # The Euler step of FlowMatchEulerDiscreteScheduler, done here per run so runs can be at any step.
            step = run.sigmas[run.index + 1] - run.sigmas[run.index]
            run.x = (run.x.to(torch.float32) + step * velocity).to(velocity.dtype)
            run.index += 1

    def finish(self, run: Denoising) -> EmbeddedOutput:
        """The images of a run whose steps are done: resized to the output size, masked areas composited."""
        out_w, out_h = run.out_size
        results = [tensor_to_pil(run.x[i]) for i in range(run.n)]
        results = [r if r.size == (out_w, out_h)
                   else r.resize((out_w, out_h), Image.Resampling.LANCZOS) for r in results]
        if run.masks is not None:
            results = [self._composite(r, im, m) for r, im, m in zip(results, run.images, run.masks)]
        return EmbeddedOutput(results, run.seeds, run.unknown_words)

    @staticmethod
    def _mask_tensor(mask: Image.Image, width: int, height: int) -> torch.Tensor:
        # Any partly masked working pixel is regenerated: the composite keeps the rest exact.
        array = np.asarray(mask.convert("L").resize((width, height), Image.Resampling.BOX), dtype=np.float32)
        return torch.from_numpy((array > 0).astype(np.float32))[None]

    @staticmethod
    def _composite(result: Image.Image, original: Image.Image, mask: Image.Image) -> Image.Image:
        """Pixels outside the mask are the input's own, byte for byte."""
        original_rgb = np.asarray(original.convert("RGB"))
        inside = np.asarray(mask.convert("L").resize(original.size, Image.Resampling.NEAREST)) > 0
        out = np.where(inside[..., None], np.asarray(result.convert("RGB")), original_rgb)
        return Image.fromarray(out.astype(np.uint8), "RGB")
