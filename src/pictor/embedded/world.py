"""The procedural world of the embedded model: what a scene is, and how to sample and edit one.

A scene is 1 to 4 flat-coloured shapes on a plain or two-colour gradient background. Objects sit
in distinct cells of a 3x3 grid and never overlap, so every attribute stays readable by the judge.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "heart", "diamond")

# sRGB values chosen to be far apart from each other, so that the judge can name them.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 38, 38),
    "orange": (249, 140, 22),
    "yellow": (250, 214, 40),
    "green": (40, 160, 70),
    "blue": (37, 92, 222),
    "purple": (128, 56, 190),
    "pink": (244, 124, 192),
    "brown": (128, 76, 36),
    "white": (246, 246, 246),
    "black": (22, 22, 22),
    "gray": (128, 128, 128),
}

# Object side as a fraction of the image side; a large object still fits inside its cell.
SIZES: dict[str, float] = {"small": 0.17, "medium": 0.23, "large": 0.30}
SIZE_ORDER: tuple[str, ...] = ("small", "medium", "large")

# (row, column) cells of the 3x3 grid and their names.
CELL_NAMES: dict[tuple[int, int], str] = {
    (0, 0): "top left",
    (0, 1): "top",
    (0, 2): "top right",
    (1, 0): "left",
    (1, 1): "center",
    (1, 2): "right",
    (2, 0): "bottom left",
    (2, 1): "bottom",
    (2, 2): "bottom right",
}
CELLS: tuple[tuple[int, int], ...] = tuple(CELL_NAMES)

RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
GRADIENT_DIRECTIONS: tuple[str, ...] = ("horizontal", "vertical", "diagonal")

# Minimum RGB distance between an object's colour and any colour of its background.
MIN_CONTRAST = 70.0


@dataclass(frozen=True)
class Background:
    """A plain colour (one entry) or a two-colour linear gradient."""

    colours: tuple[str, ...]
    direction: str | None = None

    @property
    def is_gradient(self) -> bool:
        return len(self.colours) == 2


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    cell: tuple[int, int]


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    background: Background

    def free_cells(self) -> list[tuple[int, int]]:
        taken = {o.cell for o in self.objects}
        return [c for c in CELLS if c not in taken]


def relation_holds(a: tuple[int, int], relation: str, b: tuple[int, int]) -> bool:
    """Whether cell `a` stands in `relation` to cell `b` (GenEval-style: one axis strictly)."""
    (ra, ca), (rb, cb) = a, b
    return {
        "left of": ca < cb,
        "right of": ca > cb,
        "above": ra < rb,
        "below": ra > rb,
    }[relation]


def _segment_distance(p: tuple[int, ...], a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """Distance in RGB from colour p to the segment of colours between a and b."""
    ab = [bb - aa for aa, bb in zip(a, b)]
    ap = [pp - aa for aa, pp in zip(a, p)]
    denom = sum(x * x for x in ab)
    t = 0.0 if denom == 0 else max(0.0, min(1.0, sum(x * y for x, y in zip(ab, ap)) / denom))
    return sum((pp - (aa + t * d)) ** 2 for pp, aa, d in zip(p, a, ab)) ** 0.5


def colour_visible_on(colour: str, background: Background) -> bool:
    a = COLOURS[background.colours[0]]
    b = COLOURS[background.colours[-1]]
    return _segment_distance(COLOURS[colour], a, b) >= MIN_CONTRAST


def visible_colours(background: Background) -> list[str]:
    return [c for c in COLOURS if colour_visible_on(c, background)]


@dataclass
class WorldConfig:
    """Which part of the world a sampler draws from (the training curriculum uses it)."""

    max_objects: int = 4
    gradient_probability: float = 0.3
    # (shape, colour) pairs never drawn in training, to measure generalisation apart.
    held_out: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    # How often an object repeats the shape and colour of the one drawn before it: random scenes almost never hold
    # "three blue squares", so a counted phrase would almost never be seen in training.
    repeat_probability: float = 0.0


# A fixed set of attribute combinations kept out of training, scored apart by the benchmark.
HELD_OUT_COMBINATIONS: frozenset[tuple[str, str]] = frozenset(
    {("heart", "green"), ("star", "brown"), ("triangle", "pink"), ("diamond", "yellow"),
     ("circle", "purple"), ("square", "orange")}
)


def sample_background(rng: random.Random, config: WorldConfig) -> Background:
    if rng.random() < config.gradient_probability:
        while True:
            a, b = rng.sample(list(COLOURS), 2)
            background = Background((a, b), rng.choice(GRADIENT_DIRECTIONS))
            if len(visible_colours(background)) >= 4:
                return background
    return Background((rng.choice(list(COLOURS)),))


def sample_object(
    rng: random.Random,
    background: Background,
    cell: tuple[int, int],
    config: WorldConfig,
    shape: str | None = None,
    colour: str | None = None,
    size: str | None = None,
) -> SceneObject:
    """Draw an object, honouring fixed attributes and keeping held-out pairs out."""
    colours = visible_colours(background)
    for _ in range(1000):
        s = shape or rng.choice(SHAPES)
        c = colour or rng.choice(colours)
        if (s, c) not in config.held_out:
            return SceneObject(s, c, size or rng.choice(SIZE_ORDER), cell)
    raise ValueError(f"no object allowed for shape={shape} colour={colour}")


def sample_scene(rng: random.Random, config: WorldConfig, n_objects: int | None = None) -> Scene:
    background = sample_background(rng, config)
    n = rng.randint(1, config.max_objects) if n_objects is None else n_objects
    cells = rng.sample(CELLS, n)
    objects: list[SceneObject] = []
    for cell in cells:
        # (No draw at all when repeats are off, so that the scenes of a seed stay what they were.)
        if objects and config.repeat_probability and rng.random() < config.repeat_probability:
            objects.append(sample_object(rng, background, cell, config, objects[-1].shape, objects[-1].colour))
        else:
            objects.append(sample_object(rng, background, cell, config))
    return Scene(tuple(objects), background)


# ---- edits -------------------------------------------------------------------------------------

EDIT_KINDS: tuple[str, ...] = ("recolour", "move", "add", "remove", "resize", "background")


@dataclass(frozen=True)
class Edit:
    """One change to a scene. `target` indexes the object it changes (None for add/background)."""

    kind: str
    target: int | None = None
    colour: str | None = None
    cell: tuple[int, int] | None = None
    size: str | None = None  # for resize: the new size; for add: the new object's size
    shape: str | None = None  # for add
    direction: str | None = None  # for resize: "bigger" / "smaller"


def apply_edit(scene: Scene, edit: Edit) -> Scene:
    objects = list(scene.objects)
    if edit.kind == "recolour":
        objects[edit.target] = replace(objects[edit.target], colour=edit.colour)
    elif edit.kind == "move":
        objects[edit.target] = replace(objects[edit.target], cell=edit.cell)
    elif edit.kind == "resize":
        objects[edit.target] = replace(objects[edit.target], size=edit.size)
    elif edit.kind == "remove":
        del objects[edit.target]
    elif edit.kind == "add":
        objects.append(SceneObject(edit.shape, edit.colour, edit.size, edit.cell))
    elif edit.kind == "background":
        return Scene(scene.objects, Background((edit.colour,)))
    else:
        raise ValueError(f"unknown edit kind {edit.kind!r}")
    return Scene(tuple(objects), scene.background)


def sample_edit(rng: random.Random, scene: Scene, config: WorldConfig) -> Edit | None:
    """A random edit that is valid for `scene`, or None when the drawn kind cannot apply."""
    kind = rng.choice(EDIT_KINDS)
    n = len(scene.objects)
    free = scene.free_cells()
    if kind in ("recolour", "move", "resize", "remove") and n == 0:
        return None
    target = rng.randrange(n) if n else None
    if kind == "recolour":
        obj = scene.objects[target]
        options = [c for c in visible_colours(scene.background)
                   if c != obj.colour and (obj.shape, c) not in config.held_out]
        return Edit("recolour", target, colour=rng.choice(options)) if options else None
    if kind == "move":
        return Edit("move", target, cell=rng.choice(free)) if free else None
    if kind == "resize":
        index = SIZE_ORDER.index(scene.objects[target].size)
        steps = [i for i in (index - 1, index + 1) if 0 <= i < len(SIZE_ORDER)]
        new = rng.choice(steps)
        return Edit("resize", target, size=SIZE_ORDER[new],
                    direction="bigger" if new > index else "smaller")
    if kind == "remove":
        return Edit("remove", target) if n > 1 else None
    if kind == "add":
        if n >= config.max_objects or not free:
            return None
        obj = sample_object(rng, scene.background, rng.choice(free), config)
        return Edit("add", cell=obj.cell, colour=obj.colour, size=obj.size, shape=obj.shape)
    # background: a plain colour that keeps every object visible
    options = [c for c in COLOURS
               if c not in scene.background.colours
               and all(colour_visible_on(o.colour, Background((c,))) for o in scene.objects)]
    return Edit("background", colour=rng.choice(options)) if options else None
