"""Operators' models: `--model NAME=PATH` on the command line and the models file (TOML).

```toml
[[model]]
name = "sdxl"                # the `model` field of requests
path = "/models/sdxl-base"   # a diffusers folder, a single-file checkpoint, or a hub id (online only)
family = "sdxl"              # optional: detected from model_index.json (needed for single files and turbo)
steps = 30                   # optional: the family's default otherwise
guidance = 5.0
dtype = "auto"               # auto (bf16 on CUDA, fp32 on CPU) / bf16 / fp16 / fp32
device = "cuda:0"            # optional: the server's device otherwise
default = false              # true: requests without a model (and upstream ids like gpt-image-1) go here
compile = "auto"             # auto / off (torch.compile on CUDA only)
edit_by_img2img = false      # true: an unmasked edit on a model without instruction editing runs img2img
config = "/models/sd15"      # single-file checkpoints only: a diffusers folder with the configs
```
Relative paths are relative to the models file.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

DTYPES = ("auto", "bf16", "fp16", "fp32")
COMPILE = ("auto", "off")


class ModelsFileError(ValueError):
    """The models file or a --model value is malformed: says where."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: str  # a folder or file on this machine, or a hub id
    family: str | None = None
    steps: int | None = None
    guidance: float | None = None
    dtype: str = "auto"
    device: str | None = None
    default: bool = False
    compile: str = "auto"
    edit_by_img2img: bool = False
    config: str | None = None

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name.strip() != self.name:
            raise ModelsFileError(f"model name {self.name!r}: use a plain name without '/' or spaces")
        if self.dtype not in DTYPES:
            raise ModelsFileError(f"model {self.name}: dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.compile not in COMPILE:
            raise ModelsFileError(f"model {self.name}: compile {self.compile!r} is not one of {', '.join(COMPILE)}")
        if self.steps is not None and self.steps < 1:
            raise ModelsFileError(f"model {self.name}: steps must be at least 1")


def parse_model_arg(text: str) -> ModelSpec:
    """`NAME=PATH` (from `pictor serve --model`)."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise ModelsFileError(f"--model {text!r}: expected NAME=PATH")
    return ModelSpec(name=name.strip(), path=path.strip())


def _resolve(value: str, base: Path) -> str:
    """A relative path against the file's folder; absolute paths and hub ids as given."""
    candidate = Path(value).expanduser()
    if candidate.is_absolute():
        return str(candidate)
    relative = base / candidate
    return str(relative) if relative.exists() or value.startswith(".") else value


def load_models_file(path: str | Path) -> list[ModelSpec]:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ModelsFileError(f"models file {path}: {error}") from error
    entries = data.get("model", [])
    if not isinstance(entries, list) or set(data) - {"model"}:
        raise ModelsFileError(f"models file {path}: expected only [[model]] tables")
    known = {f.name for f in fields(ModelSpec)}
    specs = []
    for number, entry in enumerate(entries, 1):
        unknown = set(entry) - known
        if unknown:
            raise ModelsFileError(f"models file {path}, model {number}: unknown keys {', '.join(sorted(unknown))}")
        if "name" not in entry or "path" not in entry:
            raise ModelsFileError(f"models file {path}, model {number}: needs name and path")
        values = dict(entry)
        values["path"] = _resolve(str(values["path"]), path.parent)
        if values.get("config"):
            values["config"] = _resolve(str(values["config"]), path.parent)
        specs.append(ModelSpec(**values))
    return specs


def model_specs(models: list[str], models_file: str | Path | None) -> list[ModelSpec]:
    """Every operator model: the file's, then the command line's (a name given twice is an error)."""
    specs = (load_models_file(models_file) if models_file else []) + [parse_model_arg(m) for m in models]
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise ModelsFileError(f"model {spec.name!r} is named twice")
        seen.add(spec.name)
    return specs
