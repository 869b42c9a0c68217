"""The embedded model as a diffusers pipeline: text-to-image, edit by instruction, inpainting.

An image is 11 tokens: one per cell of the world's grid (its object's colour and form, or nothing) and two for
the background, which the scene autoencoder reads from an image and draws back (see autoencoder.py).
The token transformer decides them over a few rounds (MaskGIT's parallel decoding): each round it predicts
every undecided token, samples them, and keeps the most confident, the number kept following a cosine
schedule; a "step" here is one such round. Classifier-free guidance mixes the logits with and without the
text. Edits give the source image's tokens beside; inpainting starts with the tokens outside the mask decided.
The autoencoder then draws the tokens at the output's own size, so edges stay one pixel wide at any size.
Each item's sampling noise comes from its own seed, so a result does not depend on what else shared its batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import DiffusionPipeline
from PIL import Image

from pictor.embedded.autoencoder import GRID, SceneAutoencoder, compose, image_to_field
from pictor.embedded.data import TASK_IDS
from pictor.embedded.grammar import parse_instruction, parse_prompt
from pictor.embedded.layers import autoencoder_codes, scene_tokens
from pictor.embedded.network import EmbeddedTextEncoder, EmbeddedTransformer
from pictor.embedded.tokenizer import WorldTokenizer
from pictor.prompt_cache import PromptCache

TOKENIZER_FILE = Path("tokenizer") / "tokenizer.json"
StepCallback = Callable[[int, int, torch.Tensor | None], None]

# A cell is filled in when the mask covers at least this share of it; the background when it covers this
# share of the image. Whatever the model draws, pixels outside the mask are the input's own.
CELL_FILL_SHARE = 0.1
BACKGROUND_FILL_SHARE = 0.5
# Token sampling: the logits' temperature, and the noise on the confidences that pick which tokens to keep
# (annealed to none by the last round), as MaskGIT does.
TEMPERATURE = 1.0
CHOICE_NOISE = 1.0


@dataclass
class Denoising:
    """One call's decoding state between rounds. Several advance together in one forward pass (step-level
    batching: a request that arrives while others are half way joins them at its own first round)."""

    n: int
    task: str
    tokens: torch.Tensor  # (n, 11) decided codes, -1 where undecided
    source: torch.Tensor  # (n, 11) the edit source's codes, -1 for none
    task_ids: torch.Tensor  # (n,)
    states: torch.Tensor  # (2n, L, W) text states: with the text, then without
    keep: torch.Tensor  # (2n, L)
    schedule: list[list[int]]  # per item: tokens to decide in each round
    guidance_scale: float
    generators: list[torch.Generator]
    out_size: tuple[int, int]
    images: list[Image.Image] | None
    masks: list[Image.Image] | None
    seeds: list[int]
    unknown_words: list[list[str]]
    callback: StepCallback | None = None
    previews: bool = True
    index: int = 0

    @property
    def rounds(self) -> int:
        return len(self.schedule[0]) if self.schedule else 0

    @property
    def done(self) -> bool:
        return self.index >= self.rounds

    @property
    def key(self) -> tuple:
        """Runs with the same key can share a forward pass: every run has 11 tokens, whatever its output size."""
        return ()


@dataclass
class EmbeddedOutput:
    images: list[Image.Image]
    seeds: list[int]
    unknown_words: list[list[str]]


def tensor_to_pil(x: torch.Tensor) -> Image.Image:
    # In place after one copy: a 1024 px image is 12 MB of floats a pass, and this runs for every output.
    scaled = x.float() if x.dtype != torch.float32 else x.clone()
    array = scaled.clamp_(-1, 1).add_(1).mul_(127.5).round_().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array, "RGB")


def decoding_schedule(undecided: int, rounds: int) -> list[int]:
    """How many of `undecided` tokens each of `rounds` rounds decides: MaskGIT's cosine schedule (few first, when
    the model knows least), all decided by the last round; at least one a round while tokens last, so a run with
    fewer tokens than rounds decides one a round and then none."""
    if undecided <= rounds:
        return [1] * undecided + [0] * (rounds - undecided)
    counts, before = [], undecided
    for r in range(rounds):
        left = math.floor(undecided * math.cos(0.5 * math.pi * (r + 1) / rounds))
        left = min(before - 1, max(left, rounds - r - 1))  # one at least now, and one for each later round
        counts.append(before - left)
        before = left
    return counts


def _gumbel(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    u = torch.rand(shape, generator=generator).clamp(1e-9, 1 - 1e-9)
    return -torch.log(-torch.log(u))


class PictorEmbeddedPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->transformer->autoencoder"

    def __init__(self, autoencoder: SceneAutoencoder, transformer: EmbeddedTransformer,
                 text_encoder: EmbeddedTextEncoder):
        super().__init__()
        self.register_modules(autoencoder=autoencoder, transformer=transformer, text_encoder=text_encoder)
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
    def device(self) -> torch.device:
        """Where the networks are. diffusers' own property asks every module of every component (and its offload
        hooks) on each call: a few milliseconds, paid on every decoding round."""
        return next(self.transformer.parameters()).device

    @property
    def native_resolution(self) -> int:
        """The side the autoencoder reads images at; outputs are drawn at any size."""
        return int(self.autoencoder.config.field)

    def _encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids = self.tokenizer.encode(texts)
        length = max(1, max(sum(1 for i in row if i != self.tokenizer.pad_id) for row in ids))
        ids = [row[:length] for row in ids]
        key = (str(self.device), str(self.text_encoder.dtype), tuple(tuple(row) for row in ids))
        found = self.prompt_cache.get(key)
        if found is None:
            found = self.text_encoder(torch.tensor(ids, device=self.device))
            self.prompt_cache.put(key, found)
        return found

    @torch.no_grad()
    def tokens_of(self, images: list[Image.Image]) -> torch.Tensor:
        """(n, 11) tokens of images (any size; read by the autoencoder at its field)."""
        side = self.native_resolution
        batch = torch.stack([image_to_field(im, side) for im in images]).to(self.device, self.autoencoder.dtype)
        return scene_tokens(self.autoencoder.tokens(batch))

    @torch.no_grad()
    def draw(self, tokens: torch.Tensor, width: int, height: int) -> torch.Tensor:
        """(n, 11) tokens -> (n, 3, height, width) in [-1, 1], drawn at that size."""
        layers = self.autoencoder.decode_tokens(autoencoder_codes(tokens).to(self.device))
        return compose({k: v.float() for k, v in layers.items()}, width, height)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        image: Image.Image | list[Image.Image] | None = None,
        mask: Image.Image | list[Image.Image] | None = None,
        width: int | None = None,
        height: int | None = None,
        num_inference_steps: int = 12,
        guidance_scale: float = 2.0,
        seed: int | list[int] = 0,
        callback_on_step_end: StepCallback | None = None,
        previews: bool = True,
    ) -> EmbeddedOutput:
        """Generate (no image), edit (image), or inpaint (image + mask: white = fill in)."""
        run = self.begin(prompt, image, mask, width, height, num_inference_steps, guidance_scale, seed,
                         callback_on_step_end, previews)
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
        guidance_scale: float = 2.0,
        seed: int | list[int] = 0,
        callback_on_step_end: StepCallback | None = None,
        previews: bool = True,
    ) -> Denoising:
        """Everything a call needs before its first round: encoded prompts, the tokens given, its schedule."""
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
        understood = [(parse_instruction(p) if task == "edit" else parse_prompt(p)).unknown_words
                      for p in prompts]

        count = self.transformer.tokens
        tokens = torch.full((n, count), -1, dtype=torch.long)
        source = torch.full((n, count), -1, dtype=torch.long)
        if task == "edit":
            source = self.tokens_of(images).cpu()
        elif task == "inpaint":
            tokens = self.tokens_of(images).cpu()
            for row, m in enumerate(masks):
                tokens[row, self._fill_positions(m)] = -1
        undecided = [int((row < 0).sum()) for row in tokens]
        rounds = min(num_inference_steps, max(undecided))  # never more rounds than tokens to decide
        text_states, _, keep = self._encode(prompts + [""] * n)
        return Denoising(
            n=n, task=task, tokens=tokens, source=source,
            task_ids=torch.full((n,), TASK_IDS[task], dtype=torch.long), states=text_states, keep=keep,
            schedule=[decoding_schedule(u, rounds) for u in undecided], guidance_scale=guidance_scale,
            generators=[torch.Generator().manual_seed(s) for s in seeds], out_size=(out_w, out_h), images=images,
            masks=masks, seeds=seeds, unknown_words=understood, callback=callback_on_step_end, previews=previews)

    def _fill_positions(self, mask: Image.Image) -> list[int]:
        """The token positions a mask asks to fill: cells it covers enough of, and the background when it covers
        most of the image."""
        side = self.native_resolution
        covered = np.asarray(mask.convert("L").resize((side, side), Image.Resampling.BOX), dtype=np.float32) / 255
        cell = side // GRID
        shares = covered.reshape(GRID, cell, GRID, cell).mean(axis=(1, 3)).flatten()
        positions = [index for index, share in enumerate(shares) if share >= CELL_FILL_SHARE]
        if covered.mean() >= BACKGROUND_FILL_SHARE:
            positions += list(range(GRID * GRID, self.transformer.tokens))
        return positions

    @torch.no_grad()
    def advance(self, runs: list[Denoising]) -> None:
        """One decoding round for every run, in one forward pass: runs at different rounds, of different tasks,
        sizes of batch and output sizes share it (step-level batching). Runs with nothing left to decide (an
        inpainting mask too small to ask for a token) are passed over."""
        runs = [run for run in runs if not run.done]
        if not runs:
            return
        length = max(run.states.shape[1] for run in runs)
        states = torch.cat([_pad(run.states, length) for run in runs])
        keep = torch.cat([_pad(run.keep, length) for run in runs])
        tokens = torch.cat([run.tokens.repeat(2, 1) for run in runs]).to(self.device)
        source = torch.cat([run.source.repeat(2, 1) for run in runs]).to(self.device)
        task = torch.cat([run.task_ids.repeat(2) for run in runs]).to(self.device)
        logits_all = self.transformer(states, keep, task, source, tokens).float()
        # A background token is one of the autoencoder's codes: the rest of the vocabulary is never sampled there
        # (a finite floor, so that guidance's difference of two log-probabilities stays a number).
        logits_all[:, GRID * GRID:, self.autoencoder.codes:] = -1e9
        logits_all = logits_all.log_softmax(-1).cpu()
        for run, logits in zip(runs, logits_all.split([2 * run.n for run in runs])):
            with_text, without = logits[:run.n], logits[run.n:]
            self._decide(run, without + run.guidance_scale * (with_text - without))

    def _decide(self, run: Denoising, logits: torch.Tensor) -> None:
        """Sample every undecided token of each item (its own generator), keep the most confident few."""
        rounds = run.rounds
        noise_scale = CHOICE_NOISE * (1 - (run.index + 1) / rounds)
        best = run.tokens.clone()
        for row in range(run.n):
            log_probs = logits[row].log_softmax(-1)
            sampled = (log_probs / TEMPERATURE + _gumbel(tuple(log_probs.shape), run.generators[row])).argmax(-1)
            confidence = log_probs.gather(-1, sampled[:, None])[:, 0]
            confidence = confidence + noise_scale * _gumbel(tuple(confidence.shape), run.generators[row])
            open_positions = run.tokens[row] < 0
            confidence = confidence.masked_fill(~open_positions, -math.inf)
            chosen = confidence.topk(run.schedule[row][run.index]).indices
            run.tokens[row, chosen] = sampled[chosen]
            best[row] = torch.where(open_positions, log_probs.argmax(-1), run.tokens[row])
        if run.callback is not None:
            estimate = self.draw(best, *self._preview_size(run)) if run.previews else None
            run.callback(run.index, rounds, estimate)
        run.index += 1

    def _preview_size(self, run: Denoising) -> tuple[int, int]:
        out_w, out_h = run.out_size
        scale = self.native_resolution / min(out_w, out_h)
        return max(1, round(out_w * scale)), max(1, round(out_h * scale))

    def finish(self, run: Denoising) -> EmbeddedOutput:
        """The images of a run whose rounds are done, drawn at the output size, masked areas composited."""
        out_w, out_h = run.out_size
        # One image at a time: drawing holds about 14 floats a pixel (57 MB at 1024x1024), so a batch drawn at once
        # would hold that for every image together (bench: 8 images at 1024 px took the process from 530 to 990 MB).
        results = [tensor_to_pil(self.draw(run.tokens[i:i + 1], out_w, out_h)[0]) for i in range(run.n)]
        if run.masks is not None:
            results = [self._composite(r, im, m) for r, im, m in zip(results, run.images, run.masks)]
        return EmbeddedOutput(results, run.seeds, run.unknown_words)

    @staticmethod
    def _composite(result: Image.Image, original: Image.Image, mask: Image.Image) -> Image.Image:
        """Pixels outside the mask are the input's own, byte for byte."""
        original_rgb = np.asarray(original.convert("RGB"))
        inside = np.asarray(mask.convert("L").resize(original.size, Image.Resampling.NEAREST)) > 0
        out = np.where(inside[..., None], np.asarray(result.convert("RGB")), original_rgb)
        return Image.fromarray(out.astype(np.uint8), "RGB")


def _pad(x: torch.Tensor, length: int) -> torch.Tensor:
    """Pad a (B, L, ...) tensor with zeros (False) to `length` along L."""
    if x.shape[1] == length:
        return x
    shape = (x.shape[0], length - x.shape[1], *x.shape[2:])
    return torch.cat([x, torch.zeros(shape, dtype=x.dtype, device=x.device)], 1)
