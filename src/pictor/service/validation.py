"""Output validation: score each candidate image against its request before it is returned.

A `Validator` reads an image back and says how much of the prompt it shows. A model's scene reader is its validator
when it scores images (the embedded model's: shapes, colours, counts, cells, relations, background, read from the
pixels by the classical detector that also scores the benchmark, see engine/embedded_scene.py); for operators'
models without one the answer says so explicitly (`UnavailableValidator`) instead of pretending a pass. Operators
plug in a scorer of their own (e.g. a VQA model) by meeting the protocol and naming it in the models file
(`validator = "package.module:attr"`, see `load_validator`), or a whole scene reader (`scene_reader`).
complexity=low skips the check (`SkippedValidator`, status `skipped`): the image as made.

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
import logging
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from pictor.engine.scene import NO_UNDERSTANDING, Repair, SceneReader, Status, Verdict
from pictor.service.errors import ModelFailure

__all__ = ["Repair", "Status", "Verdict"]  # operators' scorers import Verdict from here (engine/models_file.py)

log = logging.getLogger(__name__)
# Pictor's `candidates` (best of k at the tier's steps) is at most MAX_CANDIDATES; complexity=high is the budgeted
# search (see `Search`); low and medium make one image.
MAX_CANDIDATES = 8
HIGH_BUDGET = 3  # complexity=high spends at most this many times one image at the tier's steps
HIGH_CANDIDATE_FRACTION = 1 / 3  # of the tier's steps, per search candidate (and per repair)
HIGH_REPAIRS = 3  # of the budget's runs, this many are kept for repairs (used only when no candidate passed)


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
    budgeted search when the validator can score the request (with repairs only where the model's reader proposes
    them: otherwise the whole budget goes to candidates); otherwise one image at the tier's steps."""
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


def validator_for(reader: SceneReader = NO_UNDERSTANDING, reference: str | None = None) -> Validator:
    """The operator's validator where the model names one (`reference`, see `load_validator`); else the model's scene
    reader where it scores images; otherwise the explicit unavailable state."""
    if reference:
        return load_validator(reference)
    return reader if reader.scores else UnavailableValidator()
