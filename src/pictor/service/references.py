"""Which image a turn's text is about, and whether the text is an instruction: small explicit rules, no model.

The rules, tried in this order (a phrase already claimed by an earlier rule is not read again):
1. position: "the first one" .. "the tenth one", "the original", "image 2", "picture #2", "#2": the image made
   by turn N of the session (every turn makes one image, so image N is turn N's);
2. relative: "the previous one", "the one before": the image before the current one on this branch;
   "the last one", "the latest one", "the current one": the current image;
3. name: "the logo" (also "my / our / that logo") where "logo" is a name given to an uploaded image;
4. caption: "the star one", "the red heart image" (1-3 words before one / image / picture / version): the newest
   session image whose caption (the prompt that made it, or the text that came with an upload) has every word;
5. upload caption: "the logo" where "logo" names no object the model's scene reader knows (so never "the circle"
   on the embedded model, which means an object in the current image): the newest uploaded image whose caption
   mentions it.
Phrases of rules 1, 2 and 4 only say which image: they are taken out of the prompt the model sees, with a lead-in
such as "go back to" ("make the first one blue" becomes "make it blue"). Names (3, 5) stay: they are what the
instruction talks about.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pictor.engine.scene import NO_UNDERSTANDING, SceneReader
from pictor.service.errors import InvalidRequest
from pictor.service.positions import cell_named, words_of

ORDINALS = {word: n for n, words in enumerate((
    ("first", "1st"), ("second", "2nd"), ("third", "3rd"), ("fourth", "4th"), ("fifth", "5th"), ("sixth", "6th"),
    ("seventh", "7th"), ("eighth", "8th"), ("ninth", "9th"), ("tenth", "10th")), start=1) for word in words}
_NOUN = r"(?:one|image|picture|pic|version|result)"
_ORDINAL = "|".join(sorted(ORDINALS, key=len, reverse=True))
_POSITION = [
    re.compile(rf"\bthe\s+(?P<ordinal>{_ORDINAL})\s+{_NOUN}\b", re.I),
    re.compile(rf"\bthe\s+original(?:\s+{_NOUN})?\b", re.I),
    re.compile(r"\b(?:image|picture|pic|version|result)\s*(?:#|no\.?\s*|number\s+)?(?P<number>\d{1,4})\b", re.I),
    re.compile(r"(?<![\w#])#(?P<number>\d{1,4})\b"),
]
_PREVIOUS = re.compile(rf"\bthe\s+(?:previous|prior|earlier)\s+{_NOUN}\b|\bthe\s+one\s+before\b", re.I)
_CURRENT = re.compile(rf"\bthe\s+(?:last|latest|current|newest|most\s+recent)\s+{_NOUN}\b", re.I)
_CAPTION = re.compile(rf"\bthe\s+(?P<words>[a-z]+(?:\s+[a-z]+){{0,2}}?)\s+{_NOUN}\b", re.I)
_BARE = re.compile(r"\b(?:the|my|our|that)\s+(?P<word>[a-z]+)\b", re.I)
_DETERMINER = re.compile(r"^(?:the|a|an|my|our|that|this)\s+", re.I)
# A lead-in that only says "switch to this image"; removed together with the reference it introduces.
_LEAD_IN = re.compile(r"(?:(?:go(?:ing)?\s+|get\s+|switch\s+|return\s+|jump\s+)?back\s+to|go\s+to|switch\s+to|"
                      r"return\s+to|start(?:ing)?\s+(?:again\s+)?from|based\s+on|use|take|from|in|on|of|to|with)"
                      r"\s+$", re.I)
_CONNECTIVES = r"and|then|now|so|ok|okay|please|also|but"
_LEADING_JUNK = re.compile(rf"^(?:[\s,;:.!-]+|(?:{_CONNECTIVES})\b)+", re.I)
_TRAILING_JUNK = re.compile(rf"(?:[\s,;:-]+|\b(?:{_CONNECTIVES}))+$", re.I)
_CLAUSE_START = re.compile(rf"(?:^|[,;:.!]|\b(?:{_CONNECTIVES}))\s*$", re.I)
_STOP_WORDS = frozenset("the a an of in on to and with this that one image picture background backdrop scene colour "
                        "color size it".split())
# Verbs that start an instruction ("make it blue", "remove the cat"), whatever the model.
EDIT_VERBS = frozenset("make turn change paint colour color recolour recolor move put place shift slide add insert "
                       "draw remove delete erase get take enlarge shrink scale resize set replace swap rotate flip "
                       "mirror crop edit fix give".split())
# Text that asks for a new picture, whatever follows.
_NEW_PICTURE = re.compile(r"^(?:create|generate|new|start\s+over|show\s+me)\b", re.I)
_INDEFINITE = frozenset({"a", "an", "one", "some", "another"})
# Verbs that, before "a / an / some", describe a new picture ("make a picture of a cat", "draw a dog").
_DEPICTING_VERBS = frozenset("make draw paint give render".split())


@dataclass(frozen=True)
class GalleryImage:
    """An image a turn's text may point at: a turn's output, or an uploaded image (named or not)."""

    image_id: str  # for this turn's own uploads, a placeholder "upload:<index>" until they are stored
    caption: str  # the prompt that made it, or the text of the turn that uploaded it
    number: int | None = None  # the turn's position for an output; None for an upload
    turn_id: str | None = None  # the turn that made it (outputs only)
    name: str | None = None  # a name given to an upload ("logo")


@dataclass(frozen=True)
class Context:
    """The session as references see it: its images, oldest first, and which ones are current and previous."""

    images: tuple[GalleryImage, ...] = ()
    current: str | None = None  # the image of the turn the new one follows
    previous: str | None = None  # the image before that one on the same branch


@dataclass(frozen=True)
class Reference:
    phrase: str
    rule: str  # position / previous / current / name / caption / upload_caption
    image_id: str
    start: int
    end: int
    keep: bool  # whether the phrase stays in the prompt

    def to_dict(self) -> dict:
        return {"phrase": self.phrase, "rule": self.rule, "image_id": self.image_id}


@dataclass(frozen=True)
class Resolution:
    references: tuple[Reference, ...]
    prompt: str  # the text less the phrases that only say which image

    @property
    def source(self) -> Reference | None:
        """The reference said first: the image an edit starts from."""
        return self.references[0] if self.references else None


def name_key(name: str) -> str:
    """How names compare: lower case, single spaces, no leading article ("The Logo" -> "logo")."""
    return _DETERMINER.sub("", " ".join(name.lower().split()))


def _singular(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _mentions(caption: str, words: list[str]) -> bool:
    said = {_singular(word) for word in words_of(caption)}
    return all(_singular(word) in said for word in words)


def _not_found(phrase: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"'{phrase}' refers to no image of this session: {why}.", "text", "reference_not_found")


def resolve(text: str, context: Context, reader: SceneReader = NO_UNDERSTANDING) -> Resolution:
    """The images the text points at (in the order it says them) and the prompt without pointing phrases.

    An impossible position ("image 9" in a session of three) is a 400, not a guess; words that might be a
    caption but match none are simply not a reference.
    """
    found: list[Reference] = []

    def free(start: int, end: int) -> bool:
        return all(end <= ref.start or start >= ref.end for ref in found)

    def claim(match: re.Match, rule: str, image_id: str, keep: bool = False, group: int | str = 0) -> None:
        found.append(Reference(match[0], rule, image_id, match.start(group), match.end(group), keep))

    outputs = {image.number: image for image in context.images if image.number is not None}
    for pattern in _POSITION:
        for match in pattern.finditer(text):
            if not free(match.start(), match.end()):
                continue
            groups = match.groupdict()
            number = ORDINALS[groups["ordinal"].lower()] if groups.get("ordinal") else int(groups.get("number") or 1)
            if number not in outputs:
                raise _not_found(match[0], f"it has {len(outputs)} image(s)")
            claim(match, "position", outputs[number].image_id)
    for pattern, rule, target in ((_PREVIOUS, "previous", context.previous), (_CURRENT, "current", context.current)):
        for match in pattern.finditer(text):
            if free(match.start(), match.end()):
                if target is None:
                    raise _not_found(match[0], f"there is no {rule} image")
                claim(match, rule, target)
    names = {name_key(image.name): image for image in context.images if image.name}  # the newest wins
    for key, image in names.items():
        for match in re.finditer(rf"\b(?:the|my|our|that|this)\s+{re.escape(key)}\b", text, re.I):
            if free(match.start(), match.end()):
                claim(match, "name", image.image_id, keep=True)
    for match in _CAPTION.finditer(text):
        words = words_of(match["words"])
        if not free(match.start(), match.end()) or not words or _STOP_WORDS & set(words):
            continue
        image = next((i for i in reversed(context.images) if _mentions(i.caption, words)), None)
        if image is not None:
            claim(match, "caption", image.image_id)
    uploads = [image for image in context.images if image.number is None]
    for match in _BARE.finditer(text):
        word = match["word"].lower()
        if not free(match.start(), match.end()) or word in _STOP_WORDS or word in ORDINALS:
            continue
        if cell_named(word) is not None or reader.objects_named(match[0]):
            continue  # "the left", "the circle": a place or an object in the current image, not an upload
        image = next((i for i in reversed(uploads) if _mentions(i.caption, [word])), None)
        if image is not None:
            claim(match, "upload_caption", image.image_id, keep=True)
    found.sort(key=lambda ref: ref.start)
    return Resolution(tuple(found), _prompt_without(text, [ref for ref in found if not ref.keep]))


def _prompt_without(text: str, removed: list[Reference]) -> str:
    """The text less the given phrases (and their lead-ins); a phrase inside a clause becomes "it"."""
    out, cursor = [], 0
    for ref in removed:
        before = text[cursor:ref.start]
        lead = _LEAD_IN.search(before)
        if lead is not None:
            before = before[:lead.start()]
        out.append(before)
        if lead is None and not _CLAUSE_START.search("".join(out)):
            out.append("it")  # "make the first one blue" -> "make it blue"
        cursor = ref.end
    out.append(text[cursor:])
    prompt = " ".join("".join(out).split())
    prompt = re.sub(r"\s+([,;:.!])", r"\1", prompt)
    return _TRAILING_JUNK.sub("", _LEADING_JUNK.sub("", prompt)).strip()


def reads_as_instruction(text: str, reader: SceneReader = NO_UNDERSTANDING) -> bool:
    """True when the text asks to change an image rather than describe a new one.

    The model's scene reader decides first where it understands the text ("make the circle green", "add a star" on
    the embedded model); otherwise a text that starts with an edit verb not followed by "a / an / some" ("make it
    blue", "turn everything red", "add a hat") is an instruction, while "make a picture of a cat", "draw a dog" or
    "create ..." describes a new picture.
    """
    words = words_of(text)
    while words and words[0] in _CONNECTIVES.split("|"):
        words = words[1:]
    if not words or _NEW_PICTURE.match(" ".join(words)):
        return False
    if reader.reads_as_instruction(" ".join(words)):
        return True
    depicts = words[0] in _DEPICTING_VERBS and len(words) >= 2 and words[1] in _INDEFINITE
    return words[0] in EDIT_VERBS and not depicts
