"""The first step of the request path: a job checked, its inputs decoded and its parameters resolved into a `Plan`.

Every refusal happens here, before any model work: sizes and limits first (a refusal costs nothing), then the
content policy on the text and the input images, then what the model's scene reader makes of the request (a markup
overlay's area, a composition's placement, an automatic edit mask), then whether the model can do the resulting
task, and how its candidates will be searched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from pictor.core import Decision, ImageJob, JobKind, parse_size
from pictor.engine.protocol import Backend, Capabilities
from pictor.engine.registry import ModelNotFound, ModelRegistry
from pictor.engine.scene import NO_UNDERSTANDING, SceneReader, reader_of
from pictor.governance.badge import BadgeSettings
from pictor.service import animation, composition, markup, validation
from pictor.service.content_checks import ContentChecks
from pictor.service.cpu_pool import run_on_cores
from pictor.service.errors import InvalidRequest, UnknownModel
from pictor.service.inputs import editable_area, open_image
from pictor.service.masks import blend_band, has_alpha
from pictor.service.timings import StepTimes
from pictor.storage import Database, Principal

DEFAULT_SIZE = (1024, 1024)
MIN_SIDE, MAX_SIDE, MAX_RATIO = 16, 4096, 3.0
MAX_PROMPT_CHARS = 32000
MAX_INPUT_IMAGES = 16
# Denoising steps per quality tier (legacy `standard` / `hd` arrive mapped to medium / high).
# xhigh and max (gpt-image-2.5) go on with more steps; `complexity` adds candidates instead (service/validation).
STEPS_BY_QUALITY = {"low": 6, "medium": 12, "high": 20, "xhigh": 28, "max": 40, "auto": 12}
RESOLVED_QUALITY = {"auto": "medium"}


@dataclass
class Plan:
    """A checked job with its inputs decoded and its parameters resolved: ready for the model."""

    job: ImageJob
    model: str
    task: str  # generate / edit / inpaint / variation
    width: int
    height: int
    sources: list[Image.Image]
    mask: Image.Image | None  # L, white where the image may change
    steps: int
    background: str  # resolved: transparent / opaque
    level: str = "standard"  # the content policy's level for this request
    decisions: list[Decision] = field(default_factory=list)  # the policy's input checks (all allowed)
    # A composition ("put this logo on the blue square"): sources[0] is then the input with the reference
    # (sources[1]) pasted in, and the mask the seam ring; this says where it went (see service/composition).
    composition: dict | None = None
    auto_mask: bool = False  # an unmasked instruction edit confined to the object it names
    badge: BadgeSettings | None = None  # the tenant's visible badge, read with its other settings in prepare()
    candidates: int = 1  # at most this many made per returned image; the validator keeps the best
    validator: validation.Validator | None = None
    search: validation.Search | None = None  # how the candidates are made (complexity / `candidates`)
    engine_prompt: str | None = None  # what the model is given, when not the job's prompt (markup, GIF motion)
    markup_guide: markup.MarkupGuide | None = None
    motion: animation.Motion | None = None  # GIF output
    reservation: tuple[str, int, int] | None = None  # what admit() counted against the daily quotas
    times: StepTimes = field(default_factory=StepTimes)  # the request's steps so far (Server-Timing)
    backend: Backend | None = None  # the model that makes it, looked up once
    reader: SceneReader = NO_UNDERSTANDING  # the model's scene reader (engine/scene)
    # The service settings that shaped an edit's mask, recorded with the image so that replay can use them.
    settings: dict = field(default_factory=dict)

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def quality(self) -> str:
        return RESOLVED_QUALITY.get(self.job.quality, self.job.quality)

    @property
    def model_prompt(self) -> str:
        """What the model is asked for: the derived prompt where there is one (an empty one included)."""
        return self.engine_prompt if self.engine_prompt is not None else self.job.prompt


def check_limits(job: ImageJob) -> None:
    """The request's sizes, checked before any work that grows with them."""
    if len(job.prompt) > MAX_PROMPT_CHARS:
        raise InvalidRequest(f"The prompt is {len(job.prompt)} characters; the limit is {MAX_PROMPT_CHARS}.",
                             "prompt", "string_above_max_length")
    if len(job.images) > MAX_INPUT_IMAGES:
        raise InvalidRequest(f"At most {MAX_INPUT_IMAGES} images per edit.", "image", "too_many_images")


def check_bounds(width: int, height: int, what: str, param: str, code: str) -> None:
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise InvalidRequest(f"{what}: each side must be within {MIN_SIDE}..{MAX_SIDE}.", param, code)
    if max(width, height) / min(width, height) > MAX_RATIO:
        raise InvalidRequest(f"{what}: the long side may be at most 3 times the short side.", param, code)


def resolve_size(size: str) -> tuple[int, int]:
    """(width, height) of a request's `size`: 'auto' or WIDTHxHEIGHT, each side a multiple of 16 within bounds."""
    dimensions = parse_size(size)  # core's reading of WIDTHxHEIGHT (an InvalidJob for anything else)
    if dimensions is None:
        return DEFAULT_SIZE
    width, height = dimensions
    check_bounds(width, height, f"Invalid size '{size}'", "size", "invalid_size")
    if width % 16 or height % 16:
        raise InvalidRequest(f"Invalid size '{size}': each side must be a multiple of 16.", "size", "invalid_size")
    return width, height


def model_steps(quality: str, capabilities: Capabilities) -> int:
    """The quality tier's steps on the model's own scale: `medium` is its default (11 for the embedded model,
    4 for a turbo model, 30 for SDXL), within its step range."""
    medium = STEPS_BY_QUALITY["medium"]
    steps = round(STEPS_BY_QUALITY[quality] * capabilities.default_steps / medium)
    low, high = capabilities.step_range
    return min(high, max(low, steps))


def decode_inputs(job: ImageJob) -> tuple[int, int, list[Image.Image], Image.Image | None]:
    """(width, height, input images, editable area) of a job, its files opened and checked."""
    width, height = resolve_size(job.size)
    sources = [open_image(data, "image") for data in job.images]
    mask = editable_area(job.mask, sources[0].size) if job.mask is not None else None
    if sources and (job.size == "auto" or mask is not None):
        # Made at the (first) input's own size: for 'auto', and always under a hard mask, which keeps the
        # input's own pixels. The same bounds as an explicit size hold (they bound the model's work too).
        width, height = sources[0].size
        check_bounds(width, height, f"The image is {width}x{height}, and the result is made at its size", "image",
                     "invalid_image_dimensions")
    return width, height, sources, mask


class Planner:
    """Turns jobs into plans (see the module's docstring)."""

    def __init__(self, registry: ModelRegistry, database: Database, checks: ContentChecks, mask_blend_px: int = 0,
                 auto_edit_mask: bool = True):
        self.registry = registry
        self.database = database
        self.checks = checks
        self.mask_blend_px = max(0, mask_blend_px)  # Settings.mask_blend_px: the blend band inside a mask's edge
        self.auto_edit_mask = auto_edit_mask  # Settings.auto_edit_mask

    def model_name(self, model: str | None) -> str:
        """The served model a request's `model` names (the default for None); UnknownModel otherwise."""
        try:
            return self.registry.resolve(model)
        except ModelNotFound as error:
            raise UnknownModel(error.name) from None

    def scene_reader(self, model: str | None) -> SceneReader:
        """The scene reader of the model a request names (engine/scene): how its texts and images are read."""
        return reader_of(self.registry.worker(self.model_name(model)).backend)

    async def prepare(self, job: ImageJob, principal: Principal | None = None, moderate: bool = True) -> Plan:
        """Check and decode everything a job needs, before any work: every refusal happens here.

        `moderate=False` only for replaying an audited request, which the policy of its day already allowed.
        """
        check_limits(job)  # before anything reads the prompt or the images: a refusal costs nothing
        model = self.model_name(job.model)
        settings = self.database.tenant_settings(job.tenant_id) if job.tenant_id else {}
        level = self.checks.level(job.moderation, settings)
        # Off the event loop: the policy's work grows with the text, and other requests must not wait on it.
        times = StepTimes()
        with times.step("policy"):
            decisions = [await run_on_cores(self.checks.check_text, job, level, principal)] if moderate else []
        with times.step("decode"):
            width, height, sources, mask = await run_on_cores(decode_inputs, job)
        if moderate:
            with times.step("policy"):
                decisions += await run_on_cores(self.checks.check_images, job, sources, level, "input",
                                                principal)
        backend = self.registry.worker(model).backend
        reader = reader_of(backend)
        placed, auto_mask, guide = None, False, None
        if job.markup is not None:
            # The overlay's strokes (and the objects under them) are the editable area: a masked edit from here on.
            guide = await run_on_cores(markup.guide, job.markup, sources[0], job.prompt, reader)
            mask, (width, height) = guide.mask, sources[0].size
            check_bounds(width, height, f"The image is {width}x{height}, and the result is made at its size", "image",
                         "invalid_image_dimensions")
        elif job.kind == JobKind.EDIT and len(sources) >= 2 and composition.wants_composition(job.prompt, reader):
            sources, mask, placed = await run_on_cores(self._compose, job, sources, mask, reader)
        elif (job.kind == JobKind.EDIT and mask is None and len(sources) == 1 and self.auto_edit_mask
              and sources[0].size == (width, height)):
            # "Make the circle green" changes the circle: everything else stays the input's own pixels, so
            # edit after edit does not drift. When the reader cannot tell the area, the edit is the plain one.
            mask = await run_on_cores(reader.edit_region, sources[0], job.prompt)
            auto_mask = mask is not None
        if mask is not None and self.mask_blend_px:
            mask = blend_band(mask, self.mask_blend_px)
        task = {JobKind.GENERATE: "generate", JobKind.VARIATION: "variation"}.get(
            job.kind, "inpaint" if mask is not None else "edit")
        self._check_model_can(model, backend.capabilities, task, job.background)
        keeps_alpha = mask is not None and has_alpha(sources[0])
        transparent = job.output_format != "jpeg" and (job.background == "transparent" or keeps_alpha)
        plan = Plan(job, model, task, width, height, sources, mask, model_steps(job.quality, backend.capabilities),
                    "transparent" if transparent else "opaque", level, decisions, placed, auto_mask,
                    BadgeSettings.from_settings(settings), times=times, backend=backend, reader=reader)
        if job.kind == JobKind.EDIT:
            plan.settings = {"mask_blend_px": self.mask_blend_px, "auto_edit_mask": self.auto_edit_mask}
        self._plan_output(plan, backend.capabilities, guide)
        return plan

    @staticmethod
    def _check_model_can(model: str, capabilities: Capabilities, task: str, background: str) -> None:
        if task not in capabilities.tasks:
            can_inpaint = task == "edit" and "inpaint" in capabilities.tasks
            hint = " (send a mask to edit inside it)" if can_inpaint else ""
            raise InvalidRequest(f"The model '{model}' cannot do {task}{hint}; it can do: "
                                 f"{', '.join(sorted(capabilities.tasks))}.", "model", "unsupported_task")
        if background == "transparent" and not capabilities.transparent_background:
            raise InvalidRequest(f"The model '{model}' cannot make a transparent background.", "background",
                                 "unsupported_background")

    @staticmethod
    def _plan_output(plan: Plan, capabilities: Capabilities, guide: markup.MarkupGuide | None) -> None:
        """Candidates and validator (complexity), the markup's prompt, and GIF motion, on a checked plan."""
        job, reader = plan.job, plan.reader
        plan.validator = validation.validator_for(reader, capabilities.validator)
        if job.complexity == "low" and job.candidates is None:  # no planning, no checking: the image as made
            plan.validator = validation.SkippedValidator()
        if guide is not None:
            plan.markup_guide, plan.engine_prompt = guide, guide.prompt
        if job.output_format == "gif":
            if not reader.reads:
                raise InvalidRequest(f"The model '{plan.model}' cannot make GIF output: its frames move an object "
                                     "that the model's scene reader finds, and it has none.", "output_format",
                                     "unsupported_output_format")
            if max(plan.width, plan.height) > animation.MAX_GIF_SIDE:
                raise InvalidRequest(f"GIF output is limited to {animation.MAX_GIF_SIDE} pixels a side.", "size",
                                     "invalid_size")
            plan.motion = animation.motion_of(plan.model_prompt, reader)
            plan.engine_prompt = plan.motion.scene_prompt
        scorable = validation.can_score(plan.validator, plan.model_prompt, plan.task)
        repairable = plan.validator is reader and reader.repairs
        plan.search = validation.search_for(job.complexity, job.candidates, plan.steps, capabilities.step_range,
                                            scorable, repairable)
        plan.candidates = plan.search.candidates

    @staticmethod
    def _compose(job: ImageJob, sources: list[Image.Image], mask: Image.Image | None,
                 reader: SceneReader) -> tuple[list[Image.Image], Image.Image, dict]:
        """Paste the reference (the second image) where the prompt or mask says; the seams become the mask.

        Hook for backends with native multi-image conditioning (none yet): such a backend would get the
        reference in `sources[1:]` untouched and the target box, instead of the pasted canvas and the ring.
        """
        placed = composition.compose(sources[0], sources[1], job.prompt, mask, reader)
        canvas = placed.canvas
        canvas.format = sources[0].format  # stands for the input (its lineage record keeps the input's own bytes)
        return [canvas, *sources[1:]], placed.ring, placed.to_dict()
