"""Output validation: score each candidate image against its request before it is returned.

A `Validator` reads an image back and says how much of the prompt it shows. For the embedded model the world's
judge does it (`EmbeddedJudgeValidator`: shapes, colours, counts, cells, relations, background, read from the
pixels by the classical detector that also scores the benchmark); for operators' models no scorer ships
(`UnavailableValidator`), and the answer says so explicitly instead of pretending a pass. Operators can plug in
their own (e.g. a VQA model) by meeting the protocol.

With several candidates (complexity=high, or Pictor's `candidates`), `choose` keeps the best: highest score, then
the judge's confidence, then the earliest seed (so the choice is deterministic).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
from PIL import Image

from pictor.embedded.grammar import ObjectSpec, SceneSpec, parse_prompt
from pictor.embedded.judge import DetectedObject, background_colours, detect
from pictor.embedded.world import CELL_NAMES

Status = Literal["passed", "failed", "unavailable"]
# Candidates per image for each complexity (None = medium): the validator then returns the best of them.
CANDIDATES_BY_COMPLEXITY = {"low": 1, "medium": 1, "high": 3}
MAX_CANDIDATES = 8


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
    name: str

    def score(self, image: Image.Image, prompt: str, task: str) -> Verdict:
        """Read `image` back and compare it with `prompt` (a generation prompt, or an edit's instruction)."""
        ...


class UnavailableValidator:
    """For models with no scorer: every verdict is `unavailable`, with the reason."""

    name = "none"

    def __init__(self, reason: str = "no output scorer is configured for this model"):
        self.reason = reason

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


def candidates_for(complexity: str | None, explicit: int | None) -> int:
    """How many candidates to make per returned image: Pictor's `candidates` if given, else by complexity."""
    if explicit is not None:
        return max(1, min(MAX_CANDIDATES, explicit))
    return CANDIDATES_BY_COMPLEXITY.get(complexity or "medium", 1)


def validator_for(world_scenes: bool) -> Validator:
    """The judge for backends whose images are world scenes; otherwise the explicit unavailable state."""
    return EmbeddedJudgeValidator() if world_scenes else UnavailableValidator()
