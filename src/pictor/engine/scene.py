"""Scene understanding: what a backend may supply besides pixels, so the service can reason about its images.

A `SceneReader` finds the objects in an image (and a model of the background behind them), reads what a phrase
says about an object, tells an edit instruction from a description, says which area an instruction touches,
scores an image against its prompt and proposes a repair for a near miss. The service asks a backend for its reader
(`Backend.scene`) and never imports a model's own world: every method has a plain default here, so a reader may
supply only what its model can answer (an operator's detector may only `read`), and a model without any reader
still gets everything that needs no understanding (composition by cell, box or mask; references by position).

The embedded model's reader is `engine/embedded_scene.py`; an operator names theirs in the models file
(`scene_reader = "package.module:attr"`, see `engine/models_file.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from PIL import Image

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) in pixels, exclusive
Cell = tuple[int, int]  # (row, column) of the image's 3x3 grid
Status = Literal["passed", "failed", "unavailable", "skipped"]

# The 3x3 grid's cells by name: how positions are said in every language Pictor reads ("the top left").
CELL_NAMES: dict[Cell, str] = {
    (0, 0): "top left", (0, 1): "top", (0, 2): "top right",
    (1, 0): "left", (1, 1): "center", (1, 2): "right",
    (2, 0): "bottom left", (2, 1): "bottom", (2, 2): "bottom right",
}


def grid_cell(point: tuple[float, float], size: tuple[int, int]) -> Cell:
    """The cell of the 3x3 grid that a point (x, y) of an image of `size` falls in."""
    (x, y), (width, height) = point, size
    return min(2, max(0, int(3 * y / height))), min(2, max(0, int(3 * x / width)))


@dataclass(frozen=True)
class FoundObject:
    """One object a reader found in an image: what it is (as the reader names it) and where."""

    name: str  # the noun: "square", "logo", "cat"
    box: Box
    centroid: tuple[float, float]  # (x, y) in pixels
    cell: Cell  # where it is on the 3x3 grid
    colour: str | None = None
    size: str | None = None  # the reader's size word ("small", "large"), if it has them
    area: int = 0  # pixels covered
    confidence: float = 1.0  # in [0, 1]

    @property
    def label(self) -> str:
        return " ".join(word for word in (self.colour, self.name) if word)

    def describe(self) -> str:
        """"a medium blue square in the top left": how a response or a problem names it."""
        words = " ".join(word for word in (self.size, self.colour, self.name) if word)
        return f"a {words} in the {CELL_NAMES[self.cell]}"


@dataclass
class SceneReading:
    objects: list[FoundObject]
    background: np.ndarray | None = None  # (H, W, 3) float model of what lies behind the objects, if the reader has one


@dataclass(frozen=True)
class ObjectQuery:
    """What a phrase says about an object ("the large blue square on the left"); None where it says nothing."""

    name: str | None = None
    colour: str | None = None
    size: str | None = None
    cell: Cell | None = None

    def said(self) -> dict:
        return {key: value for key, value in (("name", self.name), ("colour", self.colour), ("size", self.size),
                                              ("cell", self.cell)) if value is not None}

    def matches(self, found: FoundObject, keys: tuple[str, ...] | None = None) -> bool:
        """Whether `found` has every attribute said (or only those of `keys`)."""
        said = self.said()
        return all(getattr(found, key) == value for key, value in said.items() if keys is None or key in keys)

    def describe(self) -> str:
        words = " ".join(str(v) for v in (self.size, self.colour, self.name) if v)
        where = f" in the {CELL_NAMES[self.cell]}" if self.cell is not None else ""
        return (words or "object") + where


@dataclass
class Verdict:
    """What a scorer made of one image: `score` in [0, 1] (share of the prompt's requirements met)."""

    status: Status
    score: float | None = None
    unmet: list[str] = field(default_factory=list)
    confidence: float = 0.0  # the scorer's own certainty, for tie-breaks between candidates
    reason: str | None = None  # why a scorer is unavailable
    validator: str | None = None

    def to_dict(self, candidates: int = 1, chosen: int = 0) -> dict:
        """The documented extension field `validation` of a returned image (and of its audit entry)."""
        body: dict = {"status": self.status, "score": None if self.score is None else round(float(self.score), 4),
                      "unmet": list(self.unmet), "candidates": candidates, "chosen": chosen,
                      "validator": self.validator}
        if self.reason:
            body["reason"] = self.reason
        return body


@dataclass(frozen=True)
class Repair:
    """A masked repaint that would fix a candidate: one object found with a wrong attribute, the rest right."""

    box: Box  # repainted, with a margin around the object's box
    prompt: str  # the object asked for ("a large red star"): what the inpainting is prompted with
    wrong: str  # what the reader found wrong with it

    def mask(self, size: tuple[int, int]) -> Image.Image:
        """The editable area (L, 255 inside the box) for an image of `size`."""
        area = np.zeros((size[1], size[0]), dtype=np.uint8)
        x0, y0, x1, y1 = self.box
        area[y0:y1, x0:x1] = 255
        return Image.fromarray(area, "L")

    def to_dict(self) -> dict:
        return {"box": list(self.box), "prompt": self.prompt, "wrong": self.wrong}


class SceneReader:
    """The contract, with the answer of a model that understands nothing as every default. Subclass and override
    what your model's reader can answer; the service uses each answer only where it is given."""

    name = "none"
    palette: dict[str, tuple[int, int, int]] = {}  # colour names the model draws, and their RGB

    def read(self, image: Image.Image) -> SceneReading:
        """The objects in `image`, and the background behind them where the reader models it."""
        return SceneReading([])

    def objects_named(self, text: str) -> list[ObjectQuery]:
        """The objects a text names, in order ("a blue circle and a red star" -> two queries); [] if none."""
        return []

    def draws(self, phrase: str) -> bool:
        """Whether the phrase names a thing the model draws from words alone ("a red star"), as opposed to
        something only an input image can show ("the star logo", "this")."""
        return False

    def reads_as_instruction(self, text: str) -> bool:
        """Whether the reader's grammar understands the text as an edit of an existing image."""
        return False

    def edit_region(self, image: Image.Image, instruction: str) -> Image.Image | None:
        """L mask, white over everything the instruction would change in `image` (the object it names, where it
        goes); None when the reader cannot tell, and then the whole image may change."""
        return None

    def region_prompt(self, instruction: str, colour: str | None, touched: list[FoundObject]) -> str | None:
        """The inpainting prompt for an area marked by strokes (of a palette `colour`, if any) over `touched`;
        None: the instruction as it is."""
        return None

    def can_score(self, prompt: str, task: str) -> bool:
        """Whether `score` would check this request at all."""
        return False

    def score(self, image: Image.Image, prompt: str, task: str) -> Verdict:
        """Read `image` back and compare it with `prompt` (a generation prompt, or an edit's instruction)."""
        return Verdict("unavailable", reason="this model's scene reader does not score images", validator=self.name)

    def propose_repair(self, image: Image.Image, prompt: str) -> Repair | None:
        """A repaint of one wrong object that would make `image` meet `prompt`; None if the reader sees none.
        Deterministic, so replay derives the same repair from the same image."""
        return None

    def _supplies(self, method: str) -> bool:
        """Whether this reader answers `method` itself rather than with the contract's default."""
        return getattr(type(self), method) is not getattr(SceneReader, method)

    @property
    def reads(self) -> bool:
        """Whether this reader finds objects in images (GIF output moves one)."""
        return self._supplies("read")

    @property
    def scores(self) -> bool:
        """Whether this reader scores images (it is then the model's validator)."""
        return self._supplies("score")

    @property
    def repairs(self) -> bool:
        """Whether this reader proposes repairs at all (the search keeps budget for them only then)."""
        return self._supplies("propose_repair")


NO_UNDERSTANDING = SceneReader()


def reader_of(backend: object) -> SceneReader:
    """The backend's scene reader, or the one that understands nothing."""
    reader = getattr(backend, "scene", None)
    return reader if isinstance(reader, SceneReader) else NO_UNDERSTANDING
