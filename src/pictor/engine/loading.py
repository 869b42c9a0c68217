"""Load a diffusers-format model folder: the embedded model and operators' own models alike.

The folder's `model_index.json` names the pipeline class; Pictor's own pipelines are resolved
here, anything else is left to diffusers. Loading is always local and offline unless the
operator passes a hub id and the machine is online.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from diffusers.utils import logging as diffusers_logging

from pictor.embedded.pipeline import PictorEmbeddedPipeline
from pictor.engine.models_file import looks_like_hub_id

PICTOR_PIPELINES: dict[str, type[DiffusionPipeline]] = {
    PictorEmbeddedPipeline.__name__: PictorEmbeddedPipeline,
}


class ModelFolderError(ValueError):
    """The folder is not a loadable model: says what is missing."""


def pipeline_class_name(path: str | Path) -> str:
    index = Path(path) / "model_index.json"
    if not index.is_file():
        raise ModelFolderError(f"{path} has no model_index.json: not a diffusers model folder")
    try:
        return json.loads(index.read_text())["_class_name"]
    except (json.JSONDecodeError, KeyError) as error:
        raise ModelFolderError(f"{index} is not a valid model index: {error}") from error


def load_model_folder(path: str | Path, device: str | torch.device = "cpu",
                      dtype: torch.dtype = torch.float32) -> DiffusionPipeline:
    """Load the pipeline stored in `path`, resident on `device`, in eval mode."""
    diffusers_logging.disable_progress_bar()
    name = pipeline_class_name(path)
    cls = PICTOR_PIPELINES.get(name, DiffusionPipeline)
    pipe = cls.from_pretrained(str(path), dtype=dtype, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def hub_offline() -> bool:
    from huggingface_hub import constants

    return constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def resolve_source(source: str | Path, relative_to: str | Path | None = None) -> Path:
    """A local folder or file as is; a hub id fetched to the local cache (or found there when HF_HUB_OFFLINE).

    `relative_to` is the models file's folder for a value that was kept as a hub id because no such path exists
    there (see models_file): a failure then names that local path as well as the hub.
    """
    path = Path(source).expanduser()
    if path.exists():
        return path
    local = Path(relative_to) / path if relative_to is not None else path.absolute()
    if not looks_like_hub_id(str(source)):
        where = "" if str(local) == str(source) else f" ({local})"
        raise ModelFolderError(f"{source}: no such folder or file{where}")
    offline = hub_offline()
    try:  # the pipeline's own download: only the files from_pretrained will read
        return Path(DiffusionPipeline.download(str(source), local_files_only=offline))
    except Exception as error:
        hub = "not in the hub cache (HF_HUB_OFFLINE is set)" if offline else "the hub download failed"
        what = "the models file" if relative_to is not None else "the current folder"
        raise ModelFolderError(f"{source}: no such folder or file relative to {what} ({local}), and as a hub id "
                               f"{hub}: {error}") from error


def load_single_file(path: str | Path, pipeline_class: str, config: str | Path | None = None,
                     device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> DiffusionPipeline:
    """A single-file checkpoint (.safetensors / .ckpt) through diffusers' own converter.

    The converter needs the pipeline's configs: `config` (a local diffusers folder of the same architecture)
    or, online only, the hub repository diffusers infers from the checkpoint's keys.
    """
    import diffusers

    diffusers_logging.disable_progress_bar()
    cls = getattr(diffusers, pipeline_class)
    options = {"config": str(config)} if config else {}
    pipe = cls.from_single_file(str(path), dtype=dtype, local_files_only=hub_offline() or bool(config), **options)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)
