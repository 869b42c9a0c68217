"""Positions said in words ("in the top left", "on the right side") as cells of the image's 3x3 grid.

Plain English, the same for every model: where a reference goes or an object is does not need the model's own
grammar.
"""

from __future__ import annotations

import re

from pictor.engine.scene import Cell

_CELL_WORDS: dict[Cell, tuple[str, ...]] = {
    (0, 0): ("top left", "upper left"),
    (0, 1): ("top middle", "top center", "top centre", "top"),
    (0, 2): ("top right", "upper right"),
    (1, 0): ("middle left", "center left", "centre left", "left"),
    (1, 1): ("center", "centre", "middle"),
    (1, 2): ("middle right", "center right", "centre right", "right"),
    (2, 0): ("bottom left", "lower left"),
    (2, 1): ("bottom middle", "bottom center", "bottom centre", "bottom"),
    (2, 2): ("bottom right", "lower right"),
}
# Longest phrases first, so "top left" is read before "top" or "left".
_PHRASES = sorted(((phrase, cell) for cell, phrases in _CELL_WORDS.items() for phrase in phrases),
                  key=lambda item: -len(item[0]))


def words_of(text: str) -> list[str]:
    """Lower-case words, hyphens split, punctuation dropped."""
    return re.findall(r"[a-z0-9]+", text.lower().replace("-", " "))


def cell_named(text: str) -> Cell | None:
    """The first grid cell the text names, or None."""
    spaced = f" {' '.join(words_of(text))} "
    found = [(spaced.find(f" {phrase} "), -len(phrase), cell) for phrase, cell in _PHRASES
             if f" {phrase} " in spaced]
    return min(found)[2] if found else None
