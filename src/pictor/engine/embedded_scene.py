"""The embedded model's scene reader: its world's judge (a classical detector) and grammar behind the contract of
`engine/scene.py`. Both are deterministic and need no weights.

Scoring: a generation prompt is parsed by the world's grammar and the image read back by the judge; each asked
object (best assignment), the count, the relation and the background are requirements, and the score is the share
met (`passed` only when all are). A repair is proposed when exactly the objects asked for are there and, in their
best assignment, exactly one has a wrong attribute: its box (with a margin) repainted, prompted with the object
asked for.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
from PIL import Image
from scipy import ndimage

from pictor.embedded.grammar import (
    EditSpec,
    ObjectSpec,
    SceneSpec,
    normalise,
    parse_instruction,
    parse_prompt,
    size_after,
    tokens_of,
)
from pictor.embedded.judge import DetectedObject, background_colours, detect
from pictor.embedded.render import object_mask
from pictor.embedded.world import COLOURS, SceneObject
from pictor.engine.scene import CELL_NAMES, FoundObject, ObjectQuery, Repair, SceneReader, SceneReading, Verdict

REPAIR_PAD = 2  # pixels (at 64 px, scaled with the image) around a wrong object's box that its repair repaints


def _found(obj: DetectedObject) -> FoundObject:
    return FoundObject(obj.shape, obj.box, obj.centroid, obj.cell, obj.colour, obj.size, obj.area, obj.confidence)


def _query(spec: ObjectSpec) -> ObjectQuery:
    return ObjectQuery(spec.shape, spec.colour, spec.size, spec.cell)


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
    """The judge's reading against a parsed prompt (see the module's docstring)."""
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


def _best_match(objects: list[DetectedObject], spec: ObjectSpec) -> DetectedObject | None:
    """The object a phrase names: every attribute said, else fewer (the shape, then the colour, alone last)."""
    said = {key: value for key, value in (("shape", spec.shape), ("colour", spec.colour), ("size", spec.size),
                                          ("cell", spec.cell)) if value is not None}
    for keys in (tuple(said), ("shape", "cell"), ("shape", "colour"), ("shape",), ("colour", "cell"), ("colour",)):
        if not any(key in said for key in keys):
            continue
        found = [o for o in objects if all(getattr(o, k) == said[k] for k in keys if k in said)]
        if found:
            return max(found, key=lambda o: (o.confidence, o.area))
    return None


@lru_cache(maxsize=256)  # score and can_score parse the same prompt; SceneSpec is frozen
def _scene_prompt(prompt: str) -> SceneSpec | None:
    understood = parse_prompt(prompt).spec
    return understood if isinstance(understood, SceneSpec) and (understood.objects or understood.background) else None


def _words(phrase: str) -> str:
    return "a " + " ".join(w for w in phrase if w)


class EmbeddedSceneReader(SceneReader):
    """The world's judge and grammar (see the module's docstring)."""

    name = "embedded-judge"
    palette = COLOURS

    def read(self, image: Image.Image) -> SceneReading:
        detection = detect(image)
        return SceneReading([_found(o) for o in detection.objects], detection.background)

    def objects_named(self, text: str) -> list[ObjectQuery]:
        understood = parse_prompt(text).spec
        if isinstance(understood, SceneSpec) and understood.objects:
            return [_query(spec) for spec in understood.objects]
        said: dict = {}  # no shape said: "the blue one", "the large red one on the left"
        for kind, value, _ in tokens_of(normalise(text)):
            if kind in ("colour", "size", "cell"):
                said.setdefault(kind, value)
        return [ObjectQuery(None, said.get("colour"), said.get("size"), said.get("cell"))] if "colour" in said else []

    def draws(self, phrase: str) -> bool:
        tokens = tokens_of(normalise(phrase))
        return any(kind == "shape" for kind, _, _ in tokens) and not any(kind == "unknown" for kind, _, _ in tokens)

    def reads_as_instruction(self, text: str) -> bool:
        return parse_instruction(text).spec is not None

    def edit_region(self, image: Image.Image, instruction: str) -> Image.Image | None:
        """The instruction's object where it is now and where it will be, outlined by the world's own renderer
        (shapes centred in the cells of the 3x3 grid), grown by one pixel per 96 of the short side for
        anti-aliasing and blur. The object is found with the judge: the phrase's attributes, relaxed to its shape or
        colour if nothing matches all (a model's earlier edit may have drawn it a little off). None when the
        instruction is not understood, names no object that is found, changes the background, or adds an object
        with no place said."""
        spec = parse_instruction(instruction).spec
        if not isinstance(spec, EditSpec) or spec.kind == "background":
            return None
        width, height = image.size
        objects: list[SceneObject] = []
        if spec.target is not None:
            found = _best_match(detect(image).objects, spec.target)
            if found is None:
                return None
            objects.append(SceneObject(found.shape, found.colour, found.size, found.cell))
            if spec.kind == "move" and spec.cell is not None:
                objects.append(SceneObject(found.shape, found.colour, found.size, spec.cell))
            elif spec.kind == "resize":
                new_size = spec.size or size_after(found.size, spec.direction or "bigger")
                objects.append(SceneObject(found.shape, found.colour, new_size, found.cell))
        if spec.kind == "add":
            new = spec.new_object
            if new is None or new.cell is None:
                return None
            objects.append(SceneObject(new.shape, new.colour or "gray", new.size or "large", new.cell))
        if not objects:
            return None
        covered = np.zeros((height, width), dtype=bool)
        for obj in objects:
            covered |= object_mask(obj, width, height) > 0
        covered = ndimage.binary_dilation(covered, iterations=max(1, round(min(width, height) / 96)))
        return Image.fromarray((covered * 255).astype(np.uint8), "L")

    def region_prompt(self, instruction: str, colour: str | None, touched: list[FoundObject]) -> str | None:
        """The object under the strokes, changed as the instruction (or the strokes' colour) says."""
        target = touched[0] if touched else None
        edit = parse_instruction(instruction).spec
        if isinstance(edit, EditSpec):
            if edit.kind == "remove":
                return ""  # the model fills the area with background
            if edit.kind == "add" and edit.new_object is not None:
                new = edit.new_object
                return _words((new.size, new.colour or colour, new.shape))
            if edit.kind == "recolour" and target is not None:
                return _words((target.size, edit.colour or colour, target.name))
            if edit.kind == "resize" and target is not None:
                return _words((edit.size, target.colour, target.name))
        described = parse_prompt(instruction).spec
        if isinstance(described, SceneSpec) and described.objects:
            spec = described.objects[0]
            return _words((spec.size, spec.colour or colour or (target.colour if target else None), spec.shape))
        if target is not None:  # "change this" drawn in a colour: the object under the strokes, in that colour
            return _words((target.size, colour or target.colour, target.name))
        return None

    def can_score(self, prompt: str, task: str) -> bool:
        """Generation (and variation) prompts that name something the judge can check; `score` says why not."""
        return task in ("generate", "variation") and _scene_prompt(prompt) is not None

    def score(self, image: Image.Image, prompt: str, task: str) -> Verdict:
        if task not in ("generate", "variation"):
            return Verdict("unavailable", reason="edit instructions are not scored (only generation prompts)",
                           validator=self.name)
        understood = _scene_prompt(prompt)
        if understood is None:
            return Verdict("unavailable", reason="the prompt names nothing the judge can check", validator=self.name)
        detection = detect(image)
        background = background_colours(detection) if understood.background is not None else None
        verdict = score_scene(understood, detection.objects, background)
        verdict.validator = self.name
        verdict.confidence = float(np.mean([o.confidence for o in detection.objects])) if detection.objects else 0.0
        return verdict

    def propose_repair(self, image: Image.Image, prompt: str) -> Repair | None:
        spec = parse_prompt(prompt).spec
        if not isinstance(spec, SceneSpec) or not spec.objects:
            return None
        found = detect(image).objects
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
        return Repair(box, _words((asked.size or obj.size, asked.colour or obj.colour, asked.shape)),
                      "; ".join(problems))
