"""Output validation: score each candidate image against its request before it is returned.

A `Validator` reads an image back and says how much of the prompt it shows. For the embedded model the world's
judge does it (`EmbeddedJudgeValidator`: shapes, colours, counts, cells, relations, background, read from the
pixels by the classical detector that also scores the benchmark); for operators' models no scorer ships
(`UnavailableValidator`), and the answer says so explicitly instead of pretending a pass. Operators plug in their own
(e.g. a VQA model) by meeting the protocol and naming it in the models file (`validator = "package.module:attr"`,
see `load_validator`). complexity=low skips the check (`SkippedValidator`, status `skipped`): the image as made.

With several candidates (complexity=high, or Pictor's `candidates`), `choose` keeps the best: highest score, then
the judge's confidence, then the earliest seed (so the choice is deterministic).

How the candidates are made is a `Search`:
- Pictor's `candidates` k: k candidates at the tier's steps, all made, the best returned (best of k).
- complexity=high, when the validator can score the request: a budgeted search. The budget is
  `HIGH_BUDGET` x the tier's steps per returned image (what one candidate at the tier's steps costs, times 3).
  Candidates are made one after another at `HIGH_CANDIDATE_FRACTION` of the tier's steps (4 of 12 for the embedded
  model, which is nearly as good at 4 steps as at 12 on each object, and passes multi-object prompts about twice as
  often per denoising step); the search stops at the first one the validator passes, or when the next would not fit
  in the budget, and keeps the best. Compute is counted as spent: denoising steps actually run. (Remaking a passing
  cheap seed at the tier's steps was measured and dropped: the same seed at 12 steps passed again 1 time in 8, see
  bench/results/validation-cpu-2core.md.) When no candidate passed, the rest of the budget goes to repairs: the
  best-scoring candidate whose objects are all there but one of them is wrong (its shape, colour or size) gets that
  object's box repainted by the model's own inpainting, prompted with the object asked for (`repair_for`), at the
  candidates' steps, until a repair passes or the budget is spent. A repair is returned only if it passes.
- When the validator cannot score the request (edits, operators' models without a scorer), more candidates cannot be
  told apart: complexity=high makes the one image at the tier's steps.
"""

from __future__ import annotations

import functools
import itertools
import logging
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
from PIL import Image

from pictor.embedded.grammar import ObjectSpec, SceneSpec, parse_prompt
from pictor.embedded.judge import DetectedObject, background_colours, detect
from pictor.embedded.world import CELL_NAMES
from pictor.service.errors import ModelFailure

log = logging.getLogger(__name__)

Status = Literal["passed", "failed", "unavailable", "skipped"]
# Pictor's `candidates` (best of k at the tier's steps) is at most MAX_CANDIDATES; complexity=high is the budgeted
# search (see `Search`); low and medium make one image.
MAX_CANDIDATES = 8
HIGH_BUDGET = 3  # complexity=high spends at most this many times one image at the tier's steps
HIGH_CANDIDATE_FRACTION = 1 / 3  # of the tier's steps, per search candidate (and per repair)
HIGH_REPAIRS = 3  # of the budget's runs, this many are kept for repairs (used only when no candidate passed)
REPAIR_PAD = 2  # pixels (at 64 px, scaled with the image) around a wrong object's box that its repair repaints


@dataclass
class Verdict:
    """What a validator made of one image: `score` in [0, 1] (share of the prompt's requirements met)."""

    status: Status
    score: float | None = None
    unmet: list[str] = field(default_factory=list)
    confidence: float = 0.0  # the scorer's own certainty, for tie-breaks between candidates
    reason: str | None = None  # why a scorer is unavailable
    validator: str | None = None

    def to_dict(self, candidates: int = 1, chosen: int = 0) -> dict:
        """The documented extension field `validation` of a returned image (and of its audit entry)."""
        body: dict = {"status": self.status, "score": None if self.score is None else round(self.score, 4),
                      "unmet": list(self.unmet), "candidates": candidates, "chosen": chosen,
                      "validator": self.validator}
        if self.reason:
            body["reason"] = self.reason
        return body


class Validator(Protocol):
    """An output scorer. It may also define `can_score(prompt, task) -> bool` (see `can_score`): complexity=high
    searches over candidates only for requests its validator can score."""

    name: str

    def score(self, image: Image.Image, prompt: str, task: str) -> Verdict:
        """Read `image` back and compare it with `prompt` (a generation prompt, or an edit's instruction)."""
        ...


class SkippedValidator:
    """complexity=low: the one image is returned without being read back (`skipped`: no scoring time spent)."""

    name = "none"
    reason = "complexity=low: the image is not checked against the prompt"

    def can_score(self, prompt: str, task: str) -> bool:
        return False

    def score(self, image: Image.Image, prompt: str, task: str) -> Verdict:
        return Verdict("skipped", reason=self.reason, validator=self.name)


class UnavailableValidator:
    """For models with no scorer: every verdict is `unavailable`, with the reason."""

    name = "none"

    def __init__(self, reason: str = "no output scorer is configured for this model"):
        self.reason = reason

    def can_score(self, prompt: str, task: str) -> bool:
        return False

    def score(self, image: Image.Image, prompt: str, task: str) -> Verdict:
        return Verdict("unavailable", reason=self.reason, validator=self.name)


def _phrase(spec: ObjectSpec) -> str:
    words = [w for w in (spec.size, spec.colour, spec.shape) if w]
    text = "a " + " ".join(words)
    return text + (f" in the {CELL_NAMES[spec.cell]}" if spec.cell is not None else "")


def _points(spec: ObjectSpec, found: DetectedObject | None) -> tuple[int, int, list[str]]:
    """(attributes met, attributes asked, what is wrong) for one asked object against one detected object."""
    asked = [("shape", spec.shape), ("colour", spec.colour), ("size", spec.size), ("cell", spec.cell)]
    asked = [(name, value) for name, value in asked if value is not None]
    if found is None:
        return 0, len(asked), [f"{_phrase(spec)}: not found"]
    wrong = []
    for name, value in asked:
        got = getattr(found, name)
        if got != value:
            shown = CELL_NAMES[got] if name == "cell" else got
            wanted = CELL_NAMES[value] if name == "cell" else value
            wrong.append(f"{_phrase(spec)}: {name} is {shown}, not {wanted}")
    return len(asked) - len(wrong), len(asked), wrong


def _relation_holds(a: DetectedObject, relation: str, b: DetectedObject) -> bool:
    (ax, ay), (bx, by) = a.centroid, b.centroid
    return {"left of": ax < bx, "right of": ax > bx, "above": ay < by, "below": ay > by}[relation]


def score_scene(spec: SceneSpec, objects: list[DetectedObject], background: tuple[str, ...] | None) -> Verdict:
    """The judge's reading against a parsed prompt: each asked object (best assignment), the count, the relation
    and the background are requirements; the score is the share met, `passed` only when all are."""
    best: tuple[int, list[str], list[DetectedObject | None]] | None = None
    total = sum(1 + sum(v is not None for v in (o.colour, o.size, o.cell)) for o in spec.objects)
    slots: list[DetectedObject | None] = list(objects) + [None] * len(spec.objects)
    for chosen in itertools.permutations(range(len(slots)), len(spec.objects)):
        picked = [slots[i] for i in chosen]
        met, wrong = 0, []
        for asked, found in zip(spec.objects, picked):
            got, _, problems = _points(asked, found)
            met += got
            wrong += problems
        if best is None or met > best[0]:
            best = (met, wrong, picked)
        if met == total:
            break
    met, unmet, picked = best if best is not None else (0, [], [])
    total_req = total
    if spec.objects:
        total_req += 1
        if len(objects) == len(spec.objects):
            met += 1
        else:
            unmet.append(f"{len(spec.objects)} object(s) asked for, {len(objects)} found")
    if spec.relation is not None:
        total_req += 1
        a, b = picked[spec.relation.subject], picked[spec.relation.reference]
        if a is not None and b is not None and _relation_holds(a, spec.relation.relation, b):
            met += 1
        else:
            unmet.append(f"{_phrase(spec.objects[spec.relation.subject])} is not {spec.relation.relation} "
                         f"{_phrase(spec.objects[spec.relation.reference])}")
    if spec.background is not None:
        total_req += 1
        if background == spec.background.colours:
            met += 1
        else:
            unmet.append(f"background is {' to '.join(background or ('unknown',))}, not "
                         f"{' to '.join(spec.background.colours)}")
    score = met / total_req if total_req else 1.0
    return Verdict("passed" if not unmet else "failed", score, unmet)


class EmbeddedJudgeValidator:
    """The embedded world's judge as a validator: generation prompts are parsed by the world's grammar and the image
    is read back by the classical detector; both are deterministic and need no weights."""

    name = "embedded-judge"

    def can_score(self, prompt: str, task: str) -> bool:
        """Generation (and variation) prompts that name something the judge can check; `score` says why not."""
        if task not in ("generate", "variation"):
            return False
        understood = parse_prompt(prompt).spec
        return isinstance(understood, SceneSpec) and bool(understood.objects or understood.background)

    def score(self, image: Image.Image, prompt: str, task: str) -> Verdict:
        if task not in ("generate", "variation"):
            return Verdict("unavailable", reason="edit instructions are not scored (only generation prompts)",
                           validator=self.name)
        understood = parse_prompt(prompt).spec
        if not isinstance(understood, SceneSpec) or not (understood.objects or understood.background):
            return Verdict("unavailable", reason="the prompt names nothing the judge can check", validator=self.name)
        detection = detect(np.asarray(image.convert("RGB")))
        background = background_colours(detection) if understood.background is not None else None
        verdict = score_scene(understood, detection.objects, background)
        verdict.validator = self.name
        verdict.confidence = float(np.mean([o.confidence for o in detection.objects])) if detection.objects else 0.0
        return verdict


def choose(verdicts: list[Verdict]) -> int:
    """Index of the best candidate: highest score, then confidence, then the earliest (deterministic)."""
    def rank(index: int) -> tuple[float, float, int]:
        verdict = verdicts[index]
        return (verdict.score if verdict.score is not None else -1.0, verdict.confidence, -index)

    return max(range(len(verdicts)), key=rank)


def candidates_for(explicit: int) -> int:
    """Pictor's `candidates`, within 1..MAX_CANDIDATES."""
    return max(1, min(MAX_CANDIDATES, explicit))


@dataclass(frozen=True)
class Search:
    """How the candidates of one returned image are made (see the module's docstring)."""

    candidates: int  # at most this many
    candidate_steps: int  # denoising steps of each candidate
    full_steps: int  # the quality tier's steps (on the model's scale)
    budget_steps: int  # at most this many denoising steps per returned image, refinement included
    early_stop: bool = False  # stop at the first candidate the validator passes (candidates made one at a time)
    repairs: int = 0  # then, when none passed, at most this many repairs (inpainting one wrong object), each ...
    repair_steps: int = 0  # ... at this many steps

    @property
    def budgeted(self) -> bool:
        return self.early_stop or self.candidate_steps != self.full_steps

    def to_dict(self) -> dict:
        return {"candidate_steps": self.candidate_steps, "budget_steps": self.budget_steps,
                "early_stop": self.early_stop, "repairs": self.repairs, "repair_steps": self.repair_steps}


def search_for(complexity: str | None, explicit: int | None, steps: int, step_range: tuple[int, int] = (1, 1000),
               can_score: bool = True, can_repair: bool = True) -> Search:
    """The search for a request: Pictor's `candidates` (best of k at the tier's steps) if given; complexity=high's
    budgeted search when the validator can score the request (with repairs only where `repair_for` can read the
    image, i.e. the embedded judge's world: otherwise the whole budget goes to candidates); otherwise one image at
    the tier's steps."""
    if explicit is not None:
        k = candidates_for(explicit)
        return Search(k, steps, steps, k * steps)
    if complexity != "high":
        return Search(1, steps, steps, steps)
    if not can_score:
        return Search(1, steps, steps, steps)
    low, high = step_range
    cheap = min(high, max(low, round(steps * HIGH_CANDIDATE_FRACTION)))
    budget = HIGH_BUDGET * steps
    runs = max(1, budget // cheap)
    repairs = min(HIGH_REPAIRS, runs - 1) if can_repair else 0
    return Search(runs - repairs, cheap, steps, budget, early_stop=True, repairs=repairs, repair_steps=cheap)


@dataclass(frozen=True)
class Repair:
    """A masked repaint that would fix a candidate: one object found with a wrong attribute, the rest right."""

    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) repainted, exclusive, REPAIR_PAD around the object's box
    prompt: str  # the object asked for ("a large red star"): what the inpainting is prompted with
    wrong: str  # what the judge found wrong with it

    def mask(self, size: tuple[int, int]) -> Image.Image:
        """The editable area (L, 255 inside the box) for an image of `size`."""
        area = np.zeros((size[1], size[0]), dtype=np.uint8)
        x0, y0, x1, y1 = self.box
        area[y0:y1, x0:x1] = 255
        return Image.fromarray(area, "L")

    def to_dict(self) -> dict:
        return {"box": list(self.box), "prompt": self.prompt, "wrong": self.wrong}


def repair_for(image: Image.Image, prompt: str) -> Repair | None:
    """The repair the embedded judge would try on `image` (a generation of `prompt`), or None: only when exactly the
    objects asked for are there and, in their best assignment, exactly one of them has a wrong attribute.
    Deterministic (the judge's reading of the pixels), so replay derives the same repair from the same candidate."""
    spec = parse_prompt(prompt).spec
    if not isinstance(spec, SceneSpec) or not spec.objects:
        return None
    found = detect(np.asarray(image.convert("RGB"))).objects
    if len(found) != len(spec.objects):
        return None
    best: list[tuple[ObjectSpec, DetectedObject, list[str]]] | None = None
    for chosen in itertools.permutations(range(len(found)), len(spec.objects)):
        wrong = [(asked, found[i], _points(asked, found[i])[2]) for asked, i in zip(spec.objects, chosen)]
        wrong = [item for item in wrong if item[2]]
        if best is None or len(wrong) < len(best):
            best = wrong
    if best is None or len(best) != 1:
        return None
    asked, obj, problems = best[0]
    x0, y0, x1, y1 = obj.box
    width, height = image.size
    pad = max(REPAIR_PAD, round(REPAIR_PAD * min(width, height) / 64))  # the model works at 64 px
    box = (max(0, x0 - pad), max(0, y0 - pad), min(width, x1 + pad), min(height, y1 + pad))
    words = [w for w in (asked.size or obj.size, asked.colour or obj.colour, asked.shape) if w]
    return Repair(box, "a " + " ".join(words), "; ".join(problems))


def can_score(validator: Validator, prompt: str, task: str) -> bool:
    """Whether `validator` would score this request at all (validators without `can_score` are assumed to)."""
    check = getattr(validator, "can_score", None)
    return True if check is None else bool(check(prompt, task))


class OperatorValidator:
    """An operator's scorer (the models file's `validator`) behind the protocol: its verdicts carry its name, and a
    scorer that raises or answers something other than a Verdict gives an explicit `unavailable` verdict that says
    so (the image was made; the request does not fail because its scorer did)."""

    def __init__(self, scorer, reference: str):
        self.scorer, self.reference = scorer, reference
        self.name = str(scorer.name)

    def can_score(self, prompt: str, task: str) -> bool:
        return can_score(self.scorer, prompt, task)

    def score(self, image: Image.Image, prompt: str, task: str) -> Verdict:
        try:
            verdict = self.scorer.score(image, prompt, task)
        except Exception as error:  # noqa: BLE001 - an operator's code: report it, do not fail the request
            log.warning("validator %s (%s) failed: %s: %s", self.name, self.reference, type(error).__name__, error)
            return Verdict("unavailable", reason=f"the validator failed: {type(error).__name__}: {error}",
                           validator=self.name)
        if not isinstance(verdict, Verdict):
            return Verdict("unavailable", reason=f"the validator returned {type(verdict).__name__}, not a Verdict",
                           validator=self.name)
        if verdict.validator is None:
            verdict.validator = self.name
        return verdict


class ValidatorLoadError(ModelFailure):
    """An operator's validator reference could not be made into a validator: says which and why (a 500 with the
    code `validator_error`: the server's configuration, not the request, is at fault)."""

    def __init__(self, message: str):
        super().__init__(message, None, "validator_error")


@functools.cache
def load_validator(reference: str) -> OperatorValidator:
    """The validator an import reference names ("package.module:attr", a class or zero-argument factory), made once
    per reference. The backend imports the reference when the model loads (so a typo stops the server at start);
    making the object happens here, on the first request that needs it."""
    from pictor.engine.models_file import import_reference

    try:
        target = import_reference(reference)
        # A class or a factory is called; an object that already scores (a module-level instance) is used as is.
        scorer = target() if isinstance(target, type) or not hasattr(target, "score") else target
    except Exception as error:
        raise ValidatorLoadError(f"validator {reference!r} could not be made: {error}") from error
    if not isinstance(getattr(scorer, "name", None), str) or not callable(getattr(scorer, "score", None)):
        raise ValidatorLoadError(f"validator {reference!r} made a {type(scorer).__name__}, which has no `name` "
                                 "(str) and `score(image, prompt, task)`")
    return OperatorValidator(scorer, reference)


def validator_for(world_scenes: bool, reference: str | None = None) -> Validator:
    """The operator's validator where the model names one (`reference`, see `load_validator`); else the judge for
    backends whose images are world scenes; otherwise the explicit unavailable state."""
    if reference:
        return load_validator(reference)
    return EmbeddedJudgeValidator() if world_scenes else UnavailableValidator()
