"""Text normalisation for the content policy: two token views of a text, each linear in its length.

The *raw* view is what the user wrote, made comparable: zero-width and bidi controls removed, NFKD
with accents dropped (so "bébé" and a term written "bebe" meet), case-folded, split into words.
The *normalised* view also undoes the usual obfuscations, each with a one-to-one character map so
that a text has exactly one normalised form (no variant enumeration, which grows exponentially with
the input: `confusables.normalize()` returns 331,776 forms for 50 characters):

1. NFKD, then combining marks removed (accents, "Zalgo" stacks): "nüde" -> "nude".
2. Homoglyphs: every non-ASCII character that Unicode's confusables table pairs with exactly one Latin
   letter maps to that letter (Cyrillic "е", Greek "ο", Cherokee, ...), plus a few lower-case Cyrillic
   and Greek letters that only look Latin in most fonts ("т", "κ").
3. Spaced-out single characters are joined when at least three of them are separated by the same short
   run of separators ("s.e.x", "s e x", "n-u-d-e"); ordinary words are never merged, and a different
   separator (such as a double space between spaced-out words) ends the run. Two words split by one
   in-word separator ("se-xy", "nu.de") also get the joined spelling as an extra key of the first word,
   beside their own keys.
4. Leetspeak, only inside words that contain a letter (numbers stay numbers): 0->o, 3->e, 4->a, 5->s,
   7->t, @->a, $->s; "1", "!", "|", "l" and "i" all become "i" (one canonical letter instead of a choice
   between i and l, applied to terms as well, so "k1ll" and "kill" meet at "kiii").
5. Runs of three or more equal letters: a word with such a run gets two keys, the run squeezed to two
   letters and to one ("fuuuck" -> "fuuck", "fuck"); terms are keyed with runs squeezed to two.

Terms go through the same functions, so a term and any obfuscated spelling of it meet at the same key.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Zero-width, joiners, bidi embeddings/overrides/isolates, soft hyphen, fillers that render as nothing.
_INVISIBLE = (
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180e\u200b\u200c\u200d\u200e\u200f"
    "\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069\u206a\u206b"
    "\u206c\u206d\u206e\u206f\u3164\ufe00\ufe01\ufe02\ufe03\ufe04\ufe05\ufe06\ufe07\ufe08\ufe09\ufe0a"
    "\ufe0b\ufe0c\ufe0d\ufe0e\ufe0f\ufeff\uffa0"
)
_INVISIBLE_RE = re.compile(f"[{_INVISIBLE}]")

# Combining marks left by NFKD (and stacked on purpose to disguise words).
_MARK_RANGES = ((0x0300, 0x036F), (0x0483, 0x0489), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF), (0x20D0, 0x20FF),
                (0xFE20, 0xFE2F))

# Lower-case Cyrillic and Greek letters that look Latin in common fonts but that the confusables table
# pairs with nothing (it lists them against small capitals or not at all).
_EXTRA_HOMOGLYPHS = {
    "к": "k", "м": "m", "т": "t", "н": "h", "в": "b", "п": "n", "ь": "b", "д": "d", "и": "u", "л": "n",
    "κ": "k", "τ": "t", "η": "n", "ε": "e", "χ": "x", "ω": "w", "μ": "u", "ϲ": "c", "β": "b",
}

_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s",
                       "!": "i", "|": "i", "l": "i"})

_RAW_TOKEN = re.compile(r"[^\W_]+")
# A word: letters/digits, plus @ and $ anywhere (leet), plus ! and | only between word characters.
_NORM_SPLIT = re.compile(r"((?:[^\W_]|[@$])+(?:[!|]+(?:[^\W_]|[@$])+)*)")
_SPACER = re.compile(r"[\s.\-_*·•,/\\+~:'\"]{1,3}")
_LETTER = re.compile(r"[^\W\d_]")
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")
# One of these between two words without spaces may be an obfuscating split ("se-xy", "nu.de").
_JOINERS = frozenset("-._*'")
_RUN3 = re.compile(r"(.)\1\1+")
# After leet mapping, a word could only differ from "letters only" through digits or symbols.
_NOT_PLAIN = re.compile(r"[0-9@$!|]")

MIN_SPACED_RUN = 3
MASK = "*"  # a letter hidden behind a symbol (see _masked_words)
MAX_MASKED = 2
_MASK_GAP = re.compile(r"[*#%?]{1,2}")


@lru_cache(maxsize=1)
def homoglyph_map() -> dict[str, str]:
    """One Latin letter per look-alike character (lower case), from the bundled Unicode confusables data.

    The data pairs characters in both directions (each Latin letter with its look-alikes, each look-alike
    with its Latin letter); a character is mapped only when every pairing names the same letter, so the
    map is one-to-one by construction. Built once per process.
    """
    from confusable_homoglyphs.utils import load

    data = load("confusables.json")
    candidates: dict[str, set[str]] = {}
    for key, homoglyphs in data.items():
        if len(key) != 1:
            continue
        for entry in homoglyphs:
            other = entry["c"]
            if len(other) != 1:
                continue
            if key.isascii() and key.isalpha() and not other.isascii():
                candidates.setdefault(other, set()).add(key.lower())
            elif other.isascii() and other.isalpha() and not key.isascii():
                candidates.setdefault(key, set()).add(other.lower())
    mapping = {char: next(iter(letters)) for char, letters in candidates.items() if len(letters) == 1}
    for char, letter in _EXTRA_HOMOGLYPHS.items():
        mapping.setdefault(char, letter)
    return mapping


@lru_cache(maxsize=1)
def _fold_table() -> dict[int, int | None]:
    """Combining marks dropped and homoglyphs mapped, applied before case folding (so that a capital such
    as Greek "Ν", which looks like N while its small "ν" looks like v, is mapped by its own shape); the
    capitals of mapped small letters that the data leaves out map like their small letters."""
    table: dict[int, int | None] = dict(_marks_table())
    mapping = homoglyph_map()
    for char, letter in mapping.items():
        table[ord(char)] = ord(letter)
    for char, letter in mapping.items():
        upper = char.upper()
        if len(upper) == 1 and not upper.isascii() and upper not in mapping:
            table[ord(upper)] = ord(letter)
    return table


@lru_cache(maxsize=1)
def _marks_table() -> dict[int, None]:
    return {code: None for low, high in _MARK_RANGES for code in range(low, high + 1)}


def _translate_non_ascii(text: str, table: dict[int, int | None]) -> str:
    """`text.translate(table)` for a table without ASCII keys: only the non-ASCII runs are looked up
    (most prompts are ASCII with a few accents, so this skips a per-character lookup over the rest)."""
    if text.isascii():
        return text
    return _NON_ASCII_RUN.sub(lambda run: run.group().translate(table), text)


def decompose(text: str) -> str:
    """The common start of both views: invisible characters removed, then NFKD (compatibility forms
    such as fullwidth or mathematical letters become plain letters; accents become combining marks)."""
    if text.isascii():
        return text
    return unicodedata.normalize("NFKD", _INVISIBLE_RE.sub("", text))


def raw_view(text: str, decomposed: str | None = None) -> str:
    """What the user wrote, made comparable: invisible characters removed, NFKD with the accents dropped
    (so that terms match with or without them), case-folded. Digits, symbols and letters stay as written."""
    return _translate_non_ascii(decompose(text) if decomposed is None else decomposed, _marks_table()).casefold()


def raw_tokens(text: str, decomposed: str | None = None) -> list[str]:
    """The words of the raw view."""
    return _RAW_TOKEN.findall(raw_view(text, decomposed))


def fold(text: str, decomposed: str | None = None) -> str:
    """The normalised view's characters: accents and combining marks removed, case-folded, homoglyphs mapped."""
    return _translate_non_ascii(decompose(text) if decomposed is None else decomposed, _fold_table()).casefold()


def _join_spaced(tokens: list[str], gaps: list[str]) -> tuple[list[str], list[str], dict[int, str]]:
    """Join runs of >= 3 single characters separated by one repeated short separator ("s.e.x").

    Returns the words, the gaps after each word, and for joined runs that begin with "a" or "i" (words
    of their own in English: "a s e x y ...") the run without that letter as an alternative form.
    """
    singles = [i for i, token in enumerate(tokens) if len(token) == 1]
    if len(singles) < MIN_SPACED_RUN:
        return tokens, gaps, {}
    runs: list[tuple[int, int]] = []
    k, count = 0, len(singles)
    while k < count:
        first = last = singles[k]
        gap = gaps[first] if first < len(gaps) else ""
        if _SPACER.fullmatch(gap):
            while k + 1 < count and singles[k + 1] == last + 1 and gaps[last] == gap:
                k += 1
                last = singles[k]
        if last - first + 1 >= MIN_SPACED_RUN:
            runs.append((first, last + 1))
        k += 1
    if not runs:
        return tokens, gaps, {}
    words: list[str] = []
    word_gaps: list[str] = []
    alternatives: dict[int, str] = {}
    previous = 0
    for first, end in runs:
        words.extend(tokens[previous:first])
        word_gaps.extend(gaps[previous:first])
        run = "".join(tokens[first:end])
        if run[0] in "ai" and len(run) > MIN_SPACED_RUN:
            alternatives[len(words)] = run[1:]
        words.append(run)
        word_gaps.append(gaps[end - 1] if end - 1 < len(gaps) else "")
        previous = end
    words.extend(tokens[previous:])
    word_gaps.extend(gaps[previous:])
    return words, word_gaps, alternatives


def canonical(word: str) -> str:
    """A normalised word's key: leetspeak mapped (only in words with a letter), runs of 3+ squeezed to 2."""
    if _LETTER.search(word):
        word = word.translate(_LEET)
    return _RUN3.sub(r"\1\1", word)


def _forms(word: str) -> tuple[str, ...]:
    """All keys of one word: canonical, plus runs squeezed to one letter where it has runs."""
    if _LETTER.search(word):
        word = word.translate(_LEET)
    if not _RUN3.search(word):
        return (word,)
    return (_RUN3.sub(r"\1\1", word), _RUN3.sub(r"\1", word))


def _split(text: str, decomposed: str | None = None) -> tuple[list[str], dict[int, list[str]]]:
    """The normalised words and, by word index, alternative spellings: a spaced-out run without a leading
    article ("a s e x y" -> "sexy") and a word glued to the next one across one in-word separator
    ("se-xy", "nu.de" -> "sexy", "nude")."""
    parts = _NORM_SPLIT.split(fold(text, decomposed))
    words, gaps, article = _join_spaced(parts[1::2], parts[2::2])
    alternatives: dict[int, list[str]] = {i: [form] for i, form in article.items()}
    last = len(words) - 1
    for i in [i for i, gap in enumerate(gaps) if gap in _JOINERS]:
        if i < last:
            alternatives.setdefault(i, []).append(words[i] + words[i + 1])
    for i, masked in _masked_words(words, gaps):
        alternatives.setdefault(i, []).append(masked)
    return words, alternatives


def _masked_words(words: list[str], gaps: list[str]) -> list[tuple[int, str]]:
    """Words with symbols standing for letters, "n*gg*r", "c#nt": runs of words joined by mask characters,
    one mask character per hidden letter, as (first word index, the word with MASK where letters are hidden).
    The policy's single-word terms are indexed with up to MAX_MASKED of their letters masked."""
    found, i, last = [], 0, len(words) - 1
    while i < last:
        if not _MASK_GAP.fullmatch(gaps[i]):
            i += 1
            continue
        start, text = i, words[i]
        while i < last and _MASK_GAP.fullmatch(gaps[i]) and i - start < MAX_MASKED:
            text += MASK * len(gaps[i]) + words[i + 1]
            i += 1
        if text.count(MASK) <= MAX_MASKED:
            found.append((start, text))
    return found


def normalised_words(text: str) -> list[str]:
    """The normalised view's words before keying (spaced-out letters joined)."""
    return _split(text)[0]


View = tuple[list[str], dict[int, tuple[str, ...]]]


def normalised_view(text: str, decomposed: str | None = None) -> View:
    """The normalised view as (keys, extra): one canonical key per word, and for some words all their
    keys: both squeezed forms of a run of 3+ equal letters (to two and to one letter), and the keys of
    their alternative spellings (see `_split`).

    Bulk string operations (one translate, one substitution over all words joined) keep this fast;
    words without a letter (numbers) are left as they are.
    """
    words, alternatives = _split(text, decomposed)
    if not words:
        return [], {}
    plain = "\0".join(words)
    joined = plain.translate(_LEET)
    mapped = joined.split("\0")
    keys = mapped
    if _NOT_PLAIN.search(plain):
        letterless = [i for i, word in enumerate(words) if not word.isalpha() and not _LETTER.search(word)]
        if letterless:
            for i in letterless:
                keys[i] = words[i]
            joined = "\0".join(keys)
    extra: dict[int, tuple[str, ...]] = {}
    if _RUN3.search(joined):
        twos = _RUN3.sub(r"\1\1", joined).split("\0")
        ones = _RUN3.sub(r"\1", joined).split("\0")
        for i in [i for i, (two, one) in enumerate(zip(twos, ones)) if two != one]:
            keys[i] = twos[i]
            extra[i] = (twos[i], ones[i])
    for i, forms in alternatives.items():
        found = list(extra.get(i, (keys[i],)))
        for form in forms:
            found.extend(key for key in _forms(form) if key not in found)
        extra[i] = tuple(found)
    return keys, extra


def normalised_keys(text: str) -> list[tuple[str, ...]]:
    """The normalised view with all keys per word (for tests and inspection)."""
    keys, extra = normalised_view(text)
    return [extra.get(i, (key,)) for i, key in enumerate(keys)]


def views(text: str) -> tuple[list[str], View]:
    """Both views of a text, decomposing it once: (raw words, normalised view)."""
    decomposed = decompose(text)
    return raw_tokens(text, decomposed), normalised_view(text, decomposed)
