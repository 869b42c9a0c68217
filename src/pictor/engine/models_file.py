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
validator = "mypkg.scoring:ClipScorer"  # optional: the output scorer of this model's images (see below)
scene_reader = "mypkg.vision:Reader"    # optional: what the service understands of its images (see below)
```

Paths (`path`, `config`): absolute paths are taken as given. A relative value that exists relative to the models
file's folder is that local file or folder. Otherwise it is a hub id when it has the shape of one (`owner/name`:
exactly one `/`, no leading `.`, `..` or `~`, no weight-file suffix such as `.safetensors`); anything else is a
local path relative to the models file's folder (so a missing one is reported with the full path looked for).
`weights/sd` is ambiguous: if `<models file folder>/weights/sd` does not exist it is tried as the hub id
`weights/sd`, and when that fails too the error names both (the local path looked for, and the hub cache or
download). Write `./weights/sd` to mean a local folder only. `--model NAME=PATH` values are used as given
(relative to the current folder).

`validator`: an import reference `package.module:attr` (the module must be importable by the server, e.g. on
PYTHONPATH), where `attr` is a class or a zero-argument factory returning an object with `name` (str) and
`score(image, prompt, task) -> pictor.service.validation.Verdict`, and optionally `can_score(prompt, task) -> bool`.
The module and attribute are imported when the model is loaded (server start), so a wrong reference stops the
server with an error naming it; the object is made once, on the first request that needs it. Models without a
validator answer `validation.status = "unavailable"` with the reason, and complexity=high makes one image for them.

`scene_reader`: an import reference to a subclass of `pictor.engine.scene.SceneReader` (or a zero-argument factory
of one, or an instance), made when the model loads. It gives the service what it understands of this model's
images: objects found for compositions by object, markup targets and GIF motion; instructions read for automatic
edit masks; scoring and repairs for `complexity=high` (a `validator` still wins for scoring).
"""

from __future__ import annotations

import importlib
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from pictor.engine.scene import SceneReader

DTYPES = ("auto", "bf16", "fp16", "fp32")
COMPILE = ("auto", "off")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # owner/name
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".bin", ".pt", ".pth", ".gguf")
_NAME = r"[A-Za-z_]\w*"
REFERENCE = re.compile(rf"^{_NAME}(\.{_NAME})*:{_NAME}(\.{_NAME})*$")  # package.module:attr
INTERNAL_FIELDS = ("relative_to",)  # set by the loader, not keys of the file


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
    validator: str | None = None  # an import reference "package.module:attr" (see the module's docstring)
    scene_reader: str | None = None  # an import reference to a SceneReader (see the module's docstring)
    # The models file's folder when `path` was kept as a hub id: where the local path was looked for first.
    relative_to: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name.strip() != self.name:
            raise ModelsFileError(f"model name {self.name!r}: use a plain name without '/' or spaces")
        if self.dtype not in DTYPES:
            raise ModelsFileError(f"model {self.name}: dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.compile not in COMPILE:
            raise ModelsFileError(f"model {self.name}: compile {self.compile!r} is not one of {', '.join(COMPILE)}")
        if self.steps is not None and self.steps < 1:
            raise ModelsFileError(f"model {self.name}: steps must be at least 1")
        for what in ("validator", "scene_reader"):
            value = getattr(self, what)
            if value is not None and not (isinstance(value, str) and REFERENCE.match(value)):
                raise ModelsFileError(f"model {self.name}: {what} {value!r} is not an import reference "
                                      "like 'package.module:attr'")


def parse_model_arg(text: str) -> ModelSpec:
    """`NAME=PATH` (from `pictor serve --model`)."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise ModelsFileError(f"--model {text!r}: expected NAME=PATH")
    return ModelSpec(name=name.strip(), path=path.strip())


def looks_like_hub_id(value: str) -> bool:
    """`owner/name`: exactly one slash, no leading `.`/`~`, not a weight file's name."""
    return (bool(HUB_ID.match(value)) and not value.startswith((".", "~"))
            and not value.lower().endswith(WEIGHT_SUFFIXES))


def _resolve(value: str, base: Path) -> tuple[str, bool]:
    """(the value to load, whether it is a hub id): see the module's docstring for the rule."""
    candidate = Path(value).expanduser()
    if candidate.is_absolute():
        return str(candidate), False
    relative = base / candidate
    if relative.exists() or not looks_like_hub_id(value):
        return str(relative), False
    return value, True


def import_reference(reference: str, what: str = "validator") -> object:
    """The object an import reference `package.module:attr` names; a ModelsFileError that says what failed."""
    if not REFERENCE.match(reference):
        raise ModelsFileError(f"{what} {reference!r} is not an import reference like 'package.module:attr'")
    module_name, _, attribute = reference.partition(":")
    try:
        target: object = importlib.import_module(module_name)
    except Exception as error:  # ImportError, or whatever the module raised while importing
        raise ModelsFileError(f"{what} {reference!r}: cannot import module {module_name!r} "
                              f"({type(error).__name__}: {error}); is it on PYTHONPATH?") from error
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as error:
            raise ModelsFileError(f"{what} {reference!r}: module {module_name!r} has no attribute "
                                  f"{attribute!r}") from error
    return target


def make_scene_reader(reference: str) -> SceneReader:
    """The SceneReader an import reference names: a subclass or factory (called) or an instance (used)."""
    target = import_reference(reference, "scene_reader")
    try:
        reader = target() if isinstance(target, type) or (callable(target) and not isinstance(target, SceneReader)) \
            else target
    except Exception as error:
        raise ModelsFileError(f"scene_reader {reference!r} could not be made: {type(error).__name__}: {error}") \
            from error
    if not isinstance(reader, SceneReader):
        raise ModelsFileError(f"scene_reader {reference!r} made a {type(reader).__name__}, not a "
                              "pictor.engine.scene.SceneReader")
    return reader


def load_models_file(path: str | Path) -> list[ModelSpec]:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ModelsFileError(f"models file {path}: {error}") from error
    entries = data.get("model", [])
    if not isinstance(entries, list) or set(data) - {"model"}:
        raise ModelsFileError(f"models file {path}: expected only [[model]] tables")
    known = {f.name for f in fields(ModelSpec)} - set(INTERNAL_FIELDS)
    specs = []
    for number, entry in enumerate(entries, 1):
        unknown = set(entry) - known
        if unknown:
            raise ModelsFileError(f"models file {path}, model {number}: unknown keys {', '.join(sorted(unknown))}")
        if "name" not in entry or "path" not in entry:
            raise ModelsFileError(f"models file {path}, model {number}: needs name and path")
        values = dict(entry)
        values["path"], hub = _resolve(str(values["path"]), path.parent)
        if hub:
            values["relative_to"] = str(path.parent)
        if values.get("config"):
            values["config"] = _resolve(str(values["config"]), path.parent)[0]
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
