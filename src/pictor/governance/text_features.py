"""Hashed features of a text for the policy's text classifier: what a word looks like, not a word list.

Every word of the normalised view (normalise.py: accents dropped, homoglyphs and leetspeak mapped, spaced-out
letters joined) gives its own key, the character 3- to 5-grams of the key with word boundaries marked (so
inflections such as "cortandose" / "cortarse" and "pendu" / "pendre" share most features), and a bigram with
the word before it. Features are hashed with CRC-32 into a fixed number of buckets: stable across processes
and machines, unlike Python's `hash`.

Numbers of one or two digits become their class, under 18 or not (ages matter, not which age). A word that
repeats one of the 16 before it is left out, so that repetition cannot add up to a decision.
Features of one word depend only on it and the word before it, so a text's features are a sequence of
per-word lists; the classifier sums them over windows of words (`word_features`).
"""

from __future__ import annotations

import zlib
from collections import deque
from functools import lru_cache

from pictor.governance import normalise

BUCKETS = 1 << 18
NGRAM_SIZES = (3, 4, 5)
ADULT_AGE = 18
REPEAT_SPAN = 16  # a word that repeats one of the 16 kept before it is left out (the classifier's short window)
MAX_WORD = 40  # longer "words" are noise (hashes, base64): only their first 40 characters give n-grams


def _bucket(feature: str) -> int:
    return zlib.crc32(feature.encode("utf-8")) % BUCKETS


@lru_cache(maxsize=65536)
def _key_features(key: str) -> tuple[int, ...]:
    """The word's own features: the whole key and its character n-grams."""
    key = key[:MAX_WORD]
    marked = f"<{key}>"
    grams = {marked[i:i + n] for n in NGRAM_SIZES for i in range(len(marked) - n + 1)}
    return (_bucket("w:" + key),) + tuple(sorted(_bucket("c:" + gram) for gram in grams))


def word_features(text: str) -> list[tuple[int, ...]]:
    """Per word of the text's normalised view, the buckets it contributes (duplicates kept: counts matter)."""
    keys, extra = normalise.normalised_view(text)
    out: list[tuple[int, ...]] = []
    previous = "<s>"
    recent: deque[str] = deque(maxlen=REPEAT_SPAN)
    for index, key in enumerate(keys):
        if key in recent:
            continue  # a repeated word adds nothing: "red " * 8000 must not sum to a wound
        recent.append(key)
        features: list[int] = []
        if key.isdecimal() and len(key) <= 2:
            # A small number is an age class, not itself: "a 12 year old" and "a 9 year old" should read alike,
            # and "a 40 year old" unlike them.
            key = "#minor" if 0 < int(key) < ADULT_AGE else "#number"
        for form in extra.get(index, (key,)):
            features.extend(_key_features(form))
        features.append(_bucket(f"b:{previous} {key}"[:2 * MAX_WORD]))
        out.append(tuple(features))
        previous = key
    return out
