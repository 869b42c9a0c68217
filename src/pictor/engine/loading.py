"""Load a diffusers-format model folder: the embedded model and operators' own models alike.

The folder's `model_index.json` names the pipeline class; Pictor's own pipelines are resolved
here, anything else is left to diffusers. Loading is always local and offline unless the
operator passes a hub id and the machine is online.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from diffusers.utils import logging as diffusers_logging

from pictor.embedded.pipeline import PictorEmbeddedPipeline

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
