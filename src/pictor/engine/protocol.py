"""The contract every model backend meets, so the service never special-cases a model family."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image

from pictor.engine.scene import SceneReader

# Tasks a backend may offer. `inpaint` is an edit inside a mask; `variation` remakes an image.
TASKS = ("generate", "edit", "inpaint", "variation")

# (request index in the batch, step, total steps, preview image or None) -> None. Backends call it after every
# step (a worker stops a cancelled call by raising from it), with a preview only when `wants_previews` says so.
StepCallback = Callable[[int, int, int, Image.Image | None], None]


@dataclass(frozen=True)
class StepObserver:
    """A step callback that says whether it wants preview images: one that only counts steps (progress) or watches
    for cancellation says no, so the backend skips making them (a device-to-host copy per step). Called as the
    function it wraps: (index in the batch, step, total, preview) for a backend's batch, (step, total, preview)
    for one request submitted to a worker."""

    function: Callable[..., None]
    wants_previews: bool = True

    def __call__(self, *arguments: object) -> None:
        self.function(*arguments)


def wants_previews(on_step: Callable[..., None] | None) -> bool:
    """Whether a step callback wants preview images (a plain function does; a StepObserver says)."""
    return on_step is not None and getattr(on_step, "wants_previews", True)


@dataclass(frozen=True)
class Capabilities:
    tasks: frozenset[str]
    native_resolution: int  # short side the model works at
    max_side: int  # largest output side it will return
    default_steps: int
    step_range: tuple[int, int]
    previews: bool  # whether run() reports intermediate images
    transparent_background: bool  # whether it can return real alpha
    # The operator's output scorer, an import reference "package.module:attr" (models file `validator`): the service
    # scores this model's images with it (service/validation.validator_for). None: the scene reader's own scoring,
    # if it has one.
    validator: str | None = None


@dataclass
class EngineRequest:
    """One image to make. Masks are white where the image may change."""

    task: str
    prompt: str
    width: int
    height: int
    seed: int
    images: list[Image.Image] = field(default_factory=list)
    mask: Image.Image | None = None
    steps: int | None = None
    guidance: float | None = None
    transparent: bool = False

    def batch_key(self) -> tuple:
        """Requests with the same key can share one forward pass."""
        return (self.task, self.width, self.height, self.steps, self.guidance, self.transparent)


@dataclass
class EngineResult:
    image: Image.Image  # RGB, or RGBA when a transparent background was asked for
    seed: int
    unknown_words: list[str] = field(default_factory=list)
    revised_prompt: str | None = None
    model_seconds: float = 0.0  # wall time of the model call that made it (set by the worker)


class Backend(Protocol):
    name: str
    capabilities: Capabilities
    # What the backend understands of its images and texts (engine/scene.py); `scene.NO_UNDERSTANDING` if nothing.
    scene: SceneReader
    weights_hash: str
    device: str  # "cpu", "cuda", "cuda:1": results are reproducible on the same device type
    batch_invariant: bool  # a seed gives the same image whatever shared its batch

    def run(self, requests: list[EngineRequest], on_step: StepCallback | None = None) -> list[EngineResult]:
        """Make one image per request; deterministic for a seed on a given device."""
        ...
