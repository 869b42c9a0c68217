"""Which kind of diffusers model a folder holds, and what Pictor can do with it.

The family comes from `model_index.json`'s `_class_name` (plus two facts the class does not tell:
a FLUX transformer with a guidance embedding is a dev-style model, and a UNet with 9 input
channels is a dedicated inpainting model); turbo models share their base's class, so they are
recognised by name or named by the operator (the models file's `family`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

# Pictor task -> diffusers pipeline class, per architecture. Derived pipelines are made with
# `from_pipe`, so every task of one model shares its weights.
_SD = {"generate": "StableDiffusionPipeline", "variation": "StableDiffusionImg2ImgPipeline",
       "inpaint": "StableDiffusionInpaintPipeline"}
_SDXL = {"generate": "StableDiffusionXLPipeline", "variation": "StableDiffusionXLImg2ImgPipeline",
         "inpaint": "StableDiffusionXLInpaintPipeline"}
_FLUX = {"generate": "FluxPipeline", "variation": "FluxImg2ImgPipeline", "inpaint": "FluxInpaintPipeline"}


@dataclass(frozen=True)
class Family:
    name: str
    architecture: str  # "sd", "sdxl" or "flux": how prompts are encoded and latents laid out
    pipelines: dict[str, str]  # task -> diffusers pipeline class name
    default_steps: int
    step_range: tuple[int, int]
    guidance: float  # the default guidance scale (0: the model is distilled to run without it)
    native_resolution: int
    # Classifier-free guidance doubles the batch (cond and uncond in one forward); distilled models skip it.
    cfg: bool = True
    image_guidance: float | None = None  # InstructPix2Pix's image guidance scale
    max_sequence_length: int | None = None  # T5 tokens (FLUX)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("sd", "sd", _SD, 30, (1, 100), 7.5, 512),
    Family("sd-turbo", "sd", _SD, 1, (1, 4), 0.0, 512, cfg=False),
    Family("sd-inpaint", "sd", {"inpaint": _SD["inpaint"]}, 30, (1, 100), 7.5, 512),
    Family("sdxl", "sdxl", _SDXL, 30, (1, 100), 5.0, 1024),
    Family("sdxl-turbo", "sdxl", _SDXL, 4, (1, 4), 0.0, 512, cfg=False),
    Family("sdxl-inpaint", "sdxl", {"inpaint": _SDXL["inpaint"]}, 30, (1, 100), 8.0, 1024),
    Family("instruct-pix2pix", "sd", {"edit": "StableDiffusionInstructPix2PixPipeline"}, 20, (1, 100), 7.5, 512,
           image_guidance=1.5),
    Family("flux-schnell", "flux", _FLUX, 4, (1, 8), 0.0, 1024, cfg=False, max_sequence_length=256),
    # FLUX dev's guidance is an input of the distilled transformer, not a second forward pass.
    Family("flux-dev", "flux", _FLUX, 28, (1, 100), 3.5, 1024, cfg=False, max_sequence_length=512),
    Family("flux-kontext", "flux", {"edit": "FluxKontextPipeline", "generate": "FluxKontextPipeline",
                                          "inpaint": "FluxKontextInpaintPipeline"}, 28,
           (1, 100), 2.5, 1024, cfg=False, max_sequence_length=512),
)}


class UnsupportedModel(ValueError):
    """A folder whose pipeline Pictor does not serve (says which ones it does)."""


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def detect_family(folder: str | Path, class_name: str, hint: str = "") -> str:
    """The family of a diffusers folder whose index names `class_name`; `hint` (its name or path) spots turbo."""
    folder = Path(folder)
    turbo = "turbo" in hint.lower() or "turbo" in str(_json(folder / "model_index.json").get("_name_or_path", ""))
    unet_inputs = _json(folder / "unet" / "config.json").get("in_channels", 4)
    if class_name in ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"):
        return "sd-turbo" if turbo else "sd"
    if class_name == "StableDiffusionInpaintPipeline":
        return "sd-inpaint" if unet_inputs == 9 else ("sd-turbo" if turbo else "sd")
    if class_name in ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline"):
        return "sdxl-turbo" if turbo else "sdxl"
    if class_name == "StableDiffusionXLInpaintPipeline":
        return "sdxl-inpaint" if unet_inputs == 9 else ("sdxl-turbo" if turbo else "sdxl")
    if class_name == "StableDiffusionInstructPix2PixPipeline":
        return "instruct-pix2pix"
    if class_name in ("FluxPipeline", "FluxImg2ImgPipeline", "FluxInpaintPipeline"):
        guided = _json(folder / "transformer" / "config.json").get("guidance_embeds", False)
        return "flux-dev" if guided else "flux-schnell"
    if class_name == "FluxKontextPipeline":
        return "flux-kontext"
    raise UnsupportedModel(f"{folder}: pipeline {class_name} is not one Pictor serves; families: "
                           f"{', '.join(FAMILIES)}")


def tasks_of(family: Family, edit_by_img2img: bool = False) -> frozenset[str]:
    """What a model of this family serves; an unmasked edit by img2img only where the operator asks for it."""
    tasks = set(family.pipelines)
    if edit_by_img2img and "variation" in tasks:
        tasks.add("edit")
    return frozenset(tasks)


def family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise UnsupportedModel(f"unknown model family {name!r}; one of {', '.join(FAMILIES)}") from None


def index_class_name(folder: str | Path) -> str:
    """The pipeline class a diffusers folder's model_index.json names (JSON only: no torch import)."""
    name = _json(Path(folder) / "model_index.json").get("_class_name")
    if not name:
        raise UnsupportedModel(f"{folder}: no readable model_index.json with a _class_name")
    return name


def describe(name: str, path: str, family_name: str | None = None) -> tuple[str, str]:
    """(family, pipeline class) of a model without loading it; '?' where only loading would tell."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        return family_name or "?", "single file" if folder.is_file() else "hub id"
    class_name = index_class_name(folder)
    return family_name or detect_family(folder, class_name, f"{name} {path}"), class_name
