"""The language of the embedded world: scenes to prompts, edits to instructions, and back.

Generation draws varied phrasings (templates, word order, optional articles, synonyms) so the
model learns the meaning rather than one sentence shape. Parsing maps any such text back to a
structured spec and reports every word it did not understand, so nothing is silently dropped.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from pictor.embedded.world import (
    CELL_NAMES,
    COLOURS,
    GRADIENT_DIRECTIONS,
    SIZE_ORDER,
    Background,
    Edit,
    Scene,
    SceneObject,
    relation_holds,
)

# ---- specs: what a text says (a scene may hold more than its prompt mentions) ------------------


@dataclass(frozen=True)
class ObjectSpec:
    shape: str
    colour: str | None = None
    size: str | None = None
    cell: tuple[int, int] | None = None

    def matches(self, obj: SceneObject) -> bool:
        return (self.shape == obj.shape
                and self.colour in (None, obj.colour)
                and self.size in (None, obj.size)
                and self.cell in (None, obj.cell))


@dataclass(frozen=True)
class Relation:
    subject: int  # index into SceneSpec.objects
    relation: str  # one of world.RELATIONS
    reference: int


@dataclass(frozen=True)
class SceneSpec:
    objects: tuple[ObjectSpec, ...]
    relation: Relation | None = None
    background: Background | None = None


@dataclass(frozen=True)
class EditSpec:
    kind: str  # one of world.EDIT_KINDS
    target: ObjectSpec | None = None  # the object referred to (None for add / background)
    colour: str | None = None
    cell: tuple[int, int] | None = None
    size: str | None = None
    direction: str | None = None  # resize: bigger / smaller
    new_object: ObjectSpec | None = None  # add


@dataclass
class Understanding:
    """What the parser made of a text, and the words it could not use."""

    spec: SceneSpec | EditSpec | None
    unknown_words: list[str] = field(default_factory=list)


# ---- lexicon -----------------------------------------------------------------------------------

SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc", "dot"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "star": ("star",),
    "heart": ("heart",),
    "diamond": ("diamond", "rhombus"),
}
PLURALS: dict[str, str] = {"box": "boxes"}
COLOUR_WORDS: dict[str, tuple[str, ...]] = {c: (c,) for c in COLOURS}
COLOUR_WORDS["gray"] = ("gray", "grey")
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"),
    "medium": ("medium", "medium sized", "mid sized"),
    "large": ("large", "big", "huge"),
}
NUMBER_WORDS: dict[int, tuple[str, ...]] = {1: ("one",), 2: ("two", "2"), 3: ("three", "3"),
                                            4: ("four", "4")}
CELL_WORDS: dict[tuple[int, int], tuple[str, ...]] = {
    (0, 0): ("top left", "upper left", "top left corner", "upper left corner"),
    (0, 1): ("top", "top middle", "top center"),
    (0, 2): ("top right", "upper right", "top right corner", "upper right corner"),
    (1, 0): ("left", "left side", "middle left"),
    (1, 1): ("center", "centre", "middle"),
    (1, 2): ("right", "right side", "middle right"),
    (2, 0): ("bottom left", "lower left", "bottom left corner", "lower left corner"),
    (2, 1): ("bottom", "bottom middle", "bottom center"),
    (2, 2): ("bottom right", "lower right", "bottom right corner", "lower right corner"),
}
RELATION_WORDS: dict[str, tuple[str, ...]] = {
    "left of": ("to the left of", "left of", "on the left of"),
    "right of": ("to the right of", "right of", "on the right of"),
    "above": ("above", "over"),
    "below": ("below", "under", "beneath"),
}
DIRECTION_WORDS: dict[str, tuple[str, ...]] = {
    "horizontal": ("horizontal",), "vertical": ("vertical",), "diagonal": ("diagonal",),
}
EDIT_VERBS: dict[str, tuple[str, ...]] = {
    "recolour": ("make", "turn", "recolour", "recolor", "colour", "color", "paint", "change"),
    "move": ("move", "put", "place", "shift", "slide"),
    "add": ("add", "put", "place", "insert", "draw"),
    "remove": ("remove", "delete", "erase", "get rid of", "take away"),
    "resize": ("make", "enlarge", "shrink", "scale", "resize"),
    "background": ("change", "make", "turn", "set", "paint"),
}
BIGGER = ("bigger", "larger")
SMALLER = ("smaller",)
# Words that carry grammar but no attribute; known, so never reported as unknown.
FILLER = frozenset(
    "a an the of and with in on at to is are there from behind its it picture image photo "
    "showing shows show drawing some that which colored coloured into background backdrop "
    "gradient corner side sized mid medium please now then".split()
)


def _phrase_table() -> list[tuple[tuple[str, ...], tuple[str, object]]]:
    """Every multi- or single-word phrase and its meaning, longest first for greedy matching."""
    table: list[tuple[tuple[str, ...], tuple[str, object]]] = []

    def add(words: str, meaning: tuple[str, object]) -> None:
        table.append((tuple(words.split()), meaning))

    for shape, words in SHAPE_WORDS.items():
        for w in words:
            add(w, ("shape", (shape, False)))
            add(PLURALS.get(w, w + "s"), ("shape", (shape, True)))
    for colour, words in COLOUR_WORDS.items():
        for w in words:
            add(w, ("colour", colour))
    for size, words in SIZE_WORDS.items():
        for w in words:
            add(w, ("size", size))
    for n, words in NUMBER_WORDS.items():
        for w in words:
            add(w, ("count", n))
    for cell, words in CELL_WORDS.items():
        for w in words:
            add(w, ("cell", cell))
    for relation, words in RELATION_WORDS.items():
        for w in words:
            add(w, ("relation", relation))
    for direction, words in DIRECTION_WORDS.items():
        for w in words:
            add(w, ("direction", direction))
    for w in ("background", "backdrop"):
        add(w, ("background", None))
    add("gradient", ("gradient", None))
    for w in BIGGER:
        add(w, ("grow", "bigger"))
    for w in SMALLER:
        add(w, ("grow", "smaller"))
    for w in ("a", "an"):
        add(w, ("indefinite", None))
    add("the", ("definite", None))
    add("in", ("in", None))
    table.sort(key=lambda item: -len(item[0]))
    return table


PHRASES = _phrase_table()
VERB_WORDS = frozenset(w for words in EDIT_VERBS.values() for w in words)
VOCABULARY: frozenset[str] = frozenset(
    {w for words, _ in PHRASES for w in words} | FILLER | {w for v in VERB_WORDS for w in v.split()}
)


def normalise(text: str) -> list[str]:
    """Lower-case words, hyphens split, punctuation dropped."""
    return re.findall(r"[a-z0-9]+", text.lower().replace("-", " "))


def tokens_of(words: list[str]) -> list[tuple[str, object, str]]:
    """Greedy longest-phrase lexing into (kind, value, surface) triples."""
    out: list[tuple[str, object, str]] = []
    i = 0
    while i < len(words):
        for phrase, (kind, value) in PHRASES:
            if tuple(words[i:i + len(phrase)]) == phrase:
                out.append((kind, value, " ".join(phrase)))
                i += len(phrase)
                break
        else:
            word = words[i]
            out.append(("word" if word in VOCABULARY else "unknown", word, word))
            i += 1
    return out


# ---- generation --------------------------------------------------------------------------------


def _article(rng: random.Random, next_word: str) -> str:
    choice = rng.random()
    if choice < 0.15:
        return ""
    if choice < 0.25:
        return "one "
    return ("an " if next_word[0] in "aeiou" else "a ")


def _pick(rng: random.Random, options: tuple[str, ...]) -> str:
    return options[0] if rng.random() < 0.6 else rng.choice(options)


def _cell_phrase(rng: random.Random, cell: tuple[int, int]) -> str:
    name = _pick(rng, CELL_WORDS[cell])
    if cell in ((1, 0), (1, 2)) and not name.startswith("middle"):
        return rng.choice(("on the ", "at the ")) + name
    return rng.choice(("in the ", "at the ")) + name


def object_phrase(rng: random.Random, spec: ObjectSpec, count: int = 1) -> str:
    """One object (or a group of `count` identical ones) as words; position after the noun."""
    plural = count > 1
    shape_word = _pick(rng, SHAPE_WORDS[spec.shape])
    noun = PLURALS.get(shape_word, shape_word + "s") if plural else shape_word
    adjectives = []
    if spec.size:
        adjectives.append(_pick(rng, SIZE_WORDS[spec.size]))
    colour_after = spec.colour is not None and not plural and rng.random() < 0.15
    if spec.colour and not colour_after:
        adjectives.append(_pick(rng, COLOUR_WORDS[spec.colour]))
    core = " ".join(adjectives + [noun])
    if plural:
        text = f"{_pick(rng, NUMBER_WORDS[count])} {core}"
    else:
        text = _article(rng, core) + core
    if colour_after:
        text += rng.choice((" in ", " colored ")) + _pick(rng, COLOUR_WORDS[spec.colour])
    if spec.cell is not None:
        text += " " + _cell_phrase(rng, spec.cell)
    return text


def background_phrase(rng: random.Random, background: Background) -> str:
    word = rng.choice(("background", "background", "backdrop"))
    if not background.is_gradient:
        return f"on a {_pick(rng, COLOUR_WORDS[background.colours[0]])} {word}"
    a, b = (_pick(rng, COLOUR_WORDS[c]) for c in background.colours)
    direction = background.direction
    if rng.random() < 0.5:
        return f"on a {direction} gradient {word} from {a} to {b}"
    return f"on a {direction} {a} to {b} gradient"


def _join(parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _mention(rng: random.Random, obj: SceneObject, p_colour: float, p_size: float,
             p_cell: float) -> ObjectSpec:
    return ObjectSpec(
        obj.shape,
        obj.colour if rng.random() < p_colour else None,
        obj.size if rng.random() < p_size else None,
        obj.cell if rng.random() < p_cell else None,
    )


def describe(scene: Scene, rng: random.Random, p_colour: float = 0.9, p_size: float = 0.3,
             p_cell: float = 0.5, p_background: float = 0.5, p_count: float = 0.0) -> tuple[str, SceneSpec]:
    """A prompt for `scene` and the spec of what it says; unsaid attributes stay free. `p_count`: how often
    neighbouring objects of one shape and colour are said together by their number ("three blue circles")."""
    objects = list(scene.objects)
    background = scene.background if rng.random() < p_background else None
    relation = None
    if len(objects) == 2 and rng.random() < 0.5:
        # "A <relation> B": positions implied by the relation rather than named.
        a, b = objects
        holding = [r for r in RELATION_WORDS if relation_holds(a.cell, r, b.cell)]
        if holding:
            relation_name = rng.choice(holding)
            specs = [_mention(rng, o, p_colour, p_size, 0.0) for o in (a, b)]
            text = (f"{object_phrase(rng, specs[0])} {_pick(rng, RELATION_WORDS[relation_name])} "
                    f"{object_phrase(rng, specs[1]).removeprefix('one ')}")
            relation = Relation(0, relation_name, 1)
            spec = SceneSpec(tuple(specs), relation, background)
            return _frame(rng, text, background), spec
    specs = [_mention(rng, o, p_colour, p_size, p_cell) for o in objects]
    if p_count:
        for i in range(1, len(objects)):
            a, b = objects[i - 1], objects[i]
            if (a.shape, a.colour) == (b.shape, b.colour) and rng.random() < p_count:
                specs[i - 1] = specs[i] = ObjectSpec(a.shape, a.colour)
    # Identical unplaced objects are said once with a number: "three blue circles".
    groups: list[tuple[ObjectSpec, int]] = []
    for s in specs:
        if s.cell is None and groups and groups[-1][0] == s and rng.random() < 0.9:
            groups[-1] = (s, groups[-1][1] + 1)
        else:
            groups.append((s, 1))
    ordered = [s for s, n in groups for _ in range(n)]
    text = _join([object_phrase(rng, s, n) for s, n in groups])
    return _frame(rng, text, background), SceneSpec(tuple(ordered), None, background)


def full_description(scene: Scene, rng: random.Random, sizes: bool = True) -> str:
    """A prompt that names every object's shape, colour, cell (and size, unless `sizes` is false) and the
    background: the scene is its only reading (what a labelled data set needs)."""
    parts = [object_phrase(rng, ObjectSpec(o.shape, o.colour, o.size if sizes else None, o.cell))
             for o in scene.objects]
    return f"{_join(parts)} {background_phrase(rng, scene.background)}"


def _frame(rng: random.Random, text: str, background: Background | None) -> str:
    if background is not None:
        text = f"{text} {background_phrase(rng, background)}"
    frame = rng.random()
    if frame < 0.15:
        text = f"a picture of {text}"
    elif frame < 0.25:
        text = f"an image showing {text}"
    return text


def referring_spec(scene: Scene, index: int) -> ObjectSpec:
    """The shortest description that picks out object `index` in `scene`."""
    obj = scene.objects[index]
    for candidate in (ObjectSpec(obj.shape), ObjectSpec(obj.shape, obj.colour),
                      ObjectSpec(obj.shape, obj.colour, cell=obj.cell)):
        if sum(candidate.matches(o) for o in scene.objects) == 1:
            return candidate
    return ObjectSpec(obj.shape, obj.colour, obj.size, obj.cell)


def _the(rng: random.Random, spec: ObjectSpec) -> str:
    words = []
    if spec.colour:
        words.append(_pick(rng, COLOUR_WORDS[spec.colour]))
    words.append(_pick(rng, SHAPE_WORDS[spec.shape]))
    text = "the " + " ".join(words)
    if spec.cell is not None:
        text += " " + _cell_phrase(rng, spec.cell)
    return text


def instruct(scene: Scene, edit: Edit, rng: random.Random) -> tuple[str, EditSpec]:
    """An instruction for `edit` on `scene`, and the spec of what it says."""
    target = referring_spec(scene, edit.target) if edit.target is not None else None
    if edit.kind == "recolour":
        colour = _pick(rng, COLOUR_WORDS[edit.colour])
        the = _the(rng, target)
        text = rng.choice((f"make {the} {colour}", f"turn {the} {colour}", f"colour {the} {colour}",
                           f"change {the} to {colour}", f"paint {the} {colour}"))
        return text, EditSpec("recolour", target, colour=edit.colour)
    if edit.kind == "move":
        the = _the(rng, target)
        where = _cell_phrase(rng, edit.cell)
        verb = rng.choice(("move", "move", "put", "place", "shift"))
        if verb == "move" and rng.random() < 0.5:
            where = "to the " + _pick(rng, CELL_WORDS[edit.cell])
        return f"{verb} {the} {where}", EditSpec("move", target, cell=edit.cell)
    if edit.kind == "resize":
        the = _the(rng, target)
        if rng.random() < 0.7:
            word = _pick(rng, BIGGER if edit.direction == "bigger" else SMALLER)
            text = rng.choice((f"make {the} {word}",))
            if rng.random() < 0.3:
                text = ("enlarge " if edit.direction == "bigger" else "shrink ") + the
            return text, EditSpec("resize", target, direction=edit.direction)
        text = f"make {the} {_pick(rng, SIZE_WORDS[edit.size])}"
        return text, EditSpec("resize", target, size=edit.size)
    if edit.kind == "remove":
        verb = rng.choice(("remove", "delete", "erase", "get rid of", "take away"))
        return f"{verb} {_the(rng, target)}", EditSpec("remove", target)
    if edit.kind == "add":
        new = ObjectSpec(edit.shape, edit.colour, edit.size if rng.random() < 0.5 else None, edit.cell)
        verb = rng.choice(("add", "add", "put", "place", "insert", "draw"))
        return f"{verb} {object_phrase(rng, new).removeprefix('one ')}", EditSpec("add", new_object=new)
    if edit.kind == "background":
        colour = _pick(rng, COLOUR_WORDS[edit.colour])
        word = rng.choice(("background", "backdrop"))
        text = rng.choice((f"change the {word} to {colour}", f"make the {word} {colour}",
                           f"set the {word} to {colour}", f"turn the {word} {colour}"))
        return text, EditSpec("background", colour=edit.colour)
    raise ValueError(f"unknown edit kind {edit.kind!r}")


# ---- parsing -----------------------------------------------------------------------------------


def _unknown(tokens: list[tuple[str, object, str]]) -> list[str]:
    return [surface for kind, _, surface in tokens if kind == "unknown"]


def parse_prompt(text: str) -> Understanding:
    """Text to a SceneSpec; words with no place in the world are listed as unknown."""
    tokens = tokens_of(normalise(text))
    objects: list[ObjectSpec] = []
    pending: dict[str, object] = {}
    pending_colours: list[str] = []
    relation: tuple[int, str] | None = None
    relation_spec: Relation | None = None
    background_colours: list[str] = []
    direction: str | None = None
    in_background = False
    for i, (kind, value, _) in enumerate(tokens):
        if kind == "colour":
            if in_background:
                background_colours.append(value)
            elif _colour_follows_noun(tokens, i) and objects[-1].colour is None:
                objects[-1] = _with(objects[-1], colour=value)
            else:
                pending_colours.append(value)
        elif kind in ("size", "count"):
            pending[kind] = value
        elif kind == "shape":
            shape, plural = value
            count = int(pending.get("count", 2 if plural else 1))
            colour = pending_colours[-1] if pending_colours else None
            spec = ObjectSpec(shape, colour, pending.get("size"))
            if relation is not None:
                relation_spec = Relation(relation[0], relation[1], len(objects))
                relation = None
            objects.extend([spec] * count)
            pending, pending_colours = {}, []
        elif kind == "cell" and objects and not in_background:
            objects[-1] = _with(objects[-1], cell=value)
        elif kind == "relation" and objects:
            relation = (len(objects) - 1, value)
        elif kind in ("background", "gradient"):
            in_background = True
            background_colours.extend(pending_colours)
            pending_colours = []
        elif kind == "direction":
            direction = value
            in_background = True
    background_colours.extend(pending_colours)
    background = None
    if background_colours:
        if len(background_colours) >= 2:
            background = Background(tuple(background_colours[:2]), direction or "horizontal")
        else:
            background = Background((background_colours[0],))
    spec = SceneSpec(tuple(objects), relation_spec, background) if objects or background else None
    return Understanding(spec, _unknown(tokens))


def _colour_follows_noun(tokens: list[tuple[str, object, str]], i: int) -> bool:
    """'a circle in red' / 'a circle colored red': the colour at i belongs to the noun before it."""
    return (i >= 2 and tokens[i][0] == "colour" and tokens[i - 1][2] in ("in", "colored", "coloured")
            and tokens[i - 2][0] == "shape")


def _with(spec: ObjectSpec, **changes: object) -> ObjectSpec:
    values = {"shape": spec.shape, "colour": spec.colour, "size": spec.size, "cell": spec.cell}
    values.update(changes)
    return ObjectSpec(**values)


def _first_object(tokens: list[tuple[str, object, str]]) -> tuple[ObjectSpec | None, int]:
    """The first noun phrase (colour, size, shape, then an optional place); and where it ends."""
    colour = size = None
    for i, (kind, value, _) in enumerate(tokens):
        if kind == "colour":
            colour = value
        elif kind == "size":
            size = value
        elif kind == "shape":
            spec = ObjectSpec(value[0], colour, size)
            end = i + 1
            if end + 1 < len(tokens) and _colour_follows_noun(tokens, end + 1):
                spec, end = _with(spec, colour=tokens[end + 1][1]), end + 2
            return spec, end
    return None, len(tokens)


def _placed_object(tokens: list[tuple[str, object, str]]) -> ObjectSpec | None:
    """The first noun phrase with the place said after it: 'the star on the left'."""
    spec, end = _first_object(tokens)
    cells = [v for k, v, _ in tokens[end:] if k == "cell"]
    return _with(spec, cell=cells[0]) if spec and cells else spec


def parse_instruction(text: str) -> Understanding:
    """Text to an EditSpec, or a None spec when the text is not an edit instruction."""
    words = normalise(text)
    tokens = tokens_of(words)
    unknown = _unknown(tokens)
    if not words:
        return Understanding(None, unknown)
    for phrase in ("get rid of", "take away"):
        if " ".join(words).startswith(phrase):
            verb, rest = phrase, tokens_of(words[len(phrase.split()):])
            break
    else:
        verb, rest = words[0], tokens[1:]
    if verb not in VERB_WORDS:
        return Understanding(None, unknown)
    kinds = [k for k, _, _ in rest]
    colours = [v for k, v, _ in rest if k == "colour"]
    mentions_background = "background" in kinds
    definite = bool(rest) and rest[0][0] == "definite"

    if mentions_background and colours and verb in EDIT_VERBS["background"]:
        return Understanding(EditSpec("background", colour=colours[-1]), unknown)
    if verb in EDIT_VERBS["remove"]:
        target = _placed_object(rest)
        return Understanding(EditSpec("remove", target) if target else None, unknown)
    if verb in ("enlarge", "shrink"):
        target = _placed_object(rest)
        direction = "bigger" if verb == "enlarge" else "smaller"
        return Understanding(EditSpec("resize", target, direction=direction) if target else None, unknown)
    if verb in EDIT_VERBS["add"] and not definite:
        obj, end = _first_object(rest)
        if obj is None:
            return Understanding(None, unknown)
        after = [v for k, v, _ in rest[end:] if k == "cell"]
        return Understanding(EditSpec("add", new_object=_with(obj, cell=after[0] if after else None)),
                             unknown)
    target, end = _first_object(rest)
    if target is None:
        return Understanding(None, unknown)
    tail = rest[end:]
    tail_cells = [v for k, v, _ in tail if k == "cell"]
    if verb in EDIT_VERBS["move"]:
        # "move the circle in the top left to the right": the last place is the destination.
        if len(tail_cells) >= 2:
            target = _with(target, cell=tail_cells[0])
        return Understanding(EditSpec("move", target, cell=tail_cells[-1]) if tail_cells else None, unknown)
    # make / turn / change / paint ...: a place after the noun says which object is meant.
    if tail_cells:
        target = _with(target, cell=tail_cells[0])
    tail_colours = [v for k, v, _ in tail if k == "colour"]
    grow = [v for k, v, _ in tail if k == "grow"]
    sizes = [v for k, v, _ in tail if k == "size"]
    if grow:
        return Understanding(EditSpec("resize", target, direction=grow[-1]), unknown)
    if sizes:
        return Understanding(EditSpec("resize", target, size=sizes[-1]), unknown)
    if tail_colours:
        return Understanding(EditSpec("recolour", target, colour=tail_colours[-1]), unknown)
    return Understanding(None, unknown)


def size_after(size: str, direction: str) -> str:
    index = SIZE_ORDER.index(size) + (1 if direction == "bigger" else -1)
    return SIZE_ORDER[max(0, min(len(SIZE_ORDER) - 1, index))]


__all__ = [
    "CELL_NAMES", "GRADIENT_DIRECTIONS", "EditSpec", "ObjectSpec", "Relation", "SceneSpec",
    "Understanding", "VOCABULARY", "describe", "instruct", "normalise", "parse_instruction",
    "parse_prompt", "referring_spec", "size_after",
]
