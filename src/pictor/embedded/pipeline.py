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
        states, pooled_all, keep_all = torch.cat(cond_states), torch.cat(cond_pooled), torch.cat(cond_keep)
        image_all, mask_all = torch.cat(images_in), mask_t.repeat(branches, 1, 1, 1)
        task_all = torch.full((branches * n,), TASK_IDS[task], device=device, dtype=torch.long)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        x = noise
        for i, t in enumerate(self.scheduler.timesteps):
            sigma = (t / self.scheduler.config.num_train_timesteps).expand(branches * n).to(dtype)
            p = self.unet(x.repeat(branches, 1, 1, 1), sigma, image_all, mask_all, task_all,
                          states, pooled_all, keep_all).chunk(branches)
            # Guidance on the clean-image estimates (linear, so the same as on velocities).
            if task == "edit":
                full, image_only, neither = p
                clean = (neither + image_guidance_scale * (image_only - neither)
                         + guidance_scale * (full - image_only))
            else:
                clean = p[1] + guidance_scale * (p[0] - p[1])
            if callback_on_step_end is not None:
                callback_on_step_end(i, num_inference_steps, clean)
            # x_t = (1 - s) x0 + s noise, so the velocity noise - x0 is (x_t - x0) / s.
            velocity = (x - clean) / sigma[:n, None, None, None]
            x = self.scheduler.step(velocity, t, x).prev_sample
        results = [tensor_to_pil(x[i]) for i in range(n)]
        results = [r if r.size == (out_w, out_h)
                   else r.resize((out_w, out_h), Image.Resampling.LANCZOS) for r in results]
        if masks is not None:
            results = [self._composite(r, im, m) for r, im, m in zip(results, images, masks)]
        return EmbeddedOutput(results, seeds, understood)

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
