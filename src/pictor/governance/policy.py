"""The content policy for image prompts and images: a versioned policy file, term and combination rules,
allow-lists, per-tenant levels, and a pluggable image classifier with an explicit "unavailable" state.

    policy = Policy.load()                                   # the shipped policies/default.toml
    level = policy.resolve_level(job.moderation, tenant_level)  # API moderation=auto|low -> a level
    decision = policy.evaluate({"prompt": p, "negative_prompt": n}, level, "input")
    if decision.blocked: ...                                  # decision.reason names rules, never terms

Matching is word based on two views of each field (see `normalise`): a hash lookup per word and view,
so evaluation is linear in the length of the text. A term match that lies wholly inside an allow-listed
phrase ("chicken breast", "gore-tex", "Scunthorpe") is dropped. Signals (minors, protected groups,
dehumanising language) never block alone; combination rules block when all their operands appear
(for example any minors signal with any sexual term: `combo.minors_sexual`, critical, every level).

This module knows neither HTTP nor models: images reach it as opaque objects for the classifier.
"""

from __future__ import annotations

import tomllib
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from itertools import accumulate
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

from pictor.core import Decision, Stage
from pictor.governance import normalise
from pictor.governance.text_classifier import TIERS, ClassifierFileError, TextClassifier

SEVERITIES = ("low", "medium", "high", "critical")
_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
STAGES = ("input", "output")
MIN_PREFIX = 3
PLURAL_MIN_LENGTH = 4
_ES_PLURAL = ("s", "x", "z", "ch", "sh", "o")
UNAVAILABLE_RULE = "image.unavailable"

_NUMBER_WORDS = {word: value for value, word in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen".split())}
# What may follow a number to make it an age (raw-view words: case-folded, accents removed).
_AGE_UNITS = (("year", "old"), ("years", "old"), ("yr", "old"), ("yrs", "old"), ("yo",), ("y", "o"),
              ("ans",), ("anos",), ("anni",), ("jahre",), ("jahrige",), ("jahriger",), ("jahriges",), ("jahrigen",))
_AGE_BEFORE = ("aged", "age")


class PolicyError(ValueError):
    """The policy file is malformed or refers to something it does not define."""


def _checked_confirm_at(value: float) -> float:
    """confirm_at as loaded or set for training: a score in [0, 1)."""
    if not 0.0 <= value < 1.0:
        raise PolicyError("text_classifier.confirm_at must be in [0, 1)")
    return value


def _rank(severity: str, where: str) -> int:
    try:
        return _RANK[severity]
    except KeyError:
        raise PolicyError(f"{where}: severity must be one of {SEVERITIES}, got {severity!r}") from None


# ------------------------------------------------------------------------------------------------
# Word matcher
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Word:
    """One word of a term: a set of accepted keys, or a prefix."""

    keys: frozenset[str] = frozenset()
    prefix: str | None = None

    def matches(self, keys: tuple[str, ...]) -> bool:
        if self.prefix is not None:
            return any(key.startswith(self.prefix) for key in keys)
        return any(key in self.keys for key in keys)


@dataclass(frozen=True, slots=True)
class _Entry:
    """What a term belongs to: a rule (blocks by severity), a signal (feeds combinations) or the allow-list."""

    kind: Literal["rule", "signal", "allow"]
    id: str
    category: str | None = None
    severity: str | None = None


class _Matcher:
    """All terms of one view, indexed so that each word of a text costs one set lookup to screen:
    single words by key, phrases by their first two words, prefixes by their first 3 characters.

    `find` then checks only the candidates at the words that passed: linear in the number of words,
    with a constant set by the policy (how many terms share a first word pair).
    """

    def __init__(self) -> None:
        self._single: dict[str, list[int]] = {}
        self._pairs: dict[tuple[str, str], list[tuple[tuple[_Word, ...], int]]] = {}
        self._then_prefix: dict[str, list[tuple[tuple[_Word, ...], int]]] = {}
        self._prefix: dict[str, list[tuple[str, tuple[_Word, ...], int]]] = {}
        self._heads: set[str] = set()   # first MIN_PREFIX characters of every first word and prefix

    def add(self, words: tuple[_Word, ...], payload: int) -> None:
        first = words[0]
        if first.prefix is not None:
            self._prefix.setdefault(first.prefix[:MIN_PREFIX], []).append((first.prefix, words, payload))
            self._heads.add(first.prefix[:MIN_PREFIX])
            return
        self._heads.update(key[:MIN_PREFIX] for key in first.keys)
        for key in first.keys:
            if len(words) == 1:
                self._single.setdefault(key, []).append(payload)
                for masked in _masked_keys(key):  # "n*gg3r": a symbol for a letter (normalise._masked_words)
                    self._single.setdefault(masked, []).append(payload)
                    self._heads.add(masked[:MIN_PREFIX])
            elif words[1].prefix is not None:
                self._then_prefix.setdefault(key, []).append((words, payload))
            else:
                for second in words[1].keys:
                    self._pairs.setdefault((key, second), []).append((words, payload))

    def find(self, view: normalise.View) -> list[tuple[int, int, int]]:
        """(payload, first word, end word) for every match in a view (keys, extra keys); each (payload, start) once."""
        keys, extra = view
        heads, prefix = self._heads, self._prefix
        starts = [i for i, key in enumerate(keys) if key[:MIN_PREFIX] in heads]
        if extra:
            starts = sorted(set(starts).union(
                i for i, alternatives in extra.items() if any(key[:MIN_PREFIX] in heads for key in alternatives)))
        n = len(keys)
        found: dict[tuple[int, int], int] = {}
        single, pairs, then_prefix = self._single, self._pairs, self._then_prefix
        for i in starts:
            following = extra.get(i + 1, (keys[i + 1],)) if i + 1 < n else ()
            for key in extra.get(i, (keys[i],)):
                for payload in single.get(key, ()):
                    found.setdefault((payload, i), i + 1)
                candidates: list[tuple[tuple[_Word, ...], int]] = []
                for second in following:
                    pair = pairs.get((key, second))
                    if pair:
                        candidates.extend(pair)
                if following and key in then_prefix:
                    candidates.extend(then_prefix[key])
                starting = prefix.get(key[:MIN_PREFIX])
                if starting and len(key) >= MIN_PREFIX:
                    candidates.extend((words, payload) for pre, words, payload in starting if key.startswith(pre))
                for words, payload in candidates:
                    end = i + len(words)
                    if end > n or (payload, i) in found:
                        continue
                    if len(words) == 1 or (words[1].matches(following) and all(
                            word.matches(extra.get(i + k, (keys[i + k],)))
                            for k, word in enumerate(words[2:], start=2))):
                        found[(payload, i)] = end
        return [(payload, start, end) for (payload, start), end in found.items()]


def _masked_keys(key: str) -> list[str]:
    """A word's key with one letter after the first replaced by the mask (words of 3+ letters), or two letters
    between the first and the last (words of 4+), the forms a text's masked word takes."""
    if len(key) < 3 or normalise.MASK in key:
        return []
    keys = [key[:i] + normalise.MASK + key[i + 1:] for i in range(1, len(key))]
    inner = range(1, len(key) - 1)
    keys += [key[:i] + normalise.MASK + key[i + 1:j] + normalise.MASK + key[j + 1:]
             for i in inner for j in inner if i < j]
    return keys


def _term_words(term: str, view: Literal["raw", "normalised"]) -> tuple[_Word, ...]:
    """A policy term as words of one view; a trailing * makes the last word a prefix; a last word of 4+
    letters also accepts its -s plural (-es after s, x, z, ch, sh and o)."""
    is_prefix = term.endswith("*")
    body = term[:-1] if is_prefix else term
    if view == "raw":
        words = normalise.raw_tokens(body)
        key = str
    else:
        words = normalise.normalised_words(body)
        key = normalise.canonical
    if not words:
        raise PolicyError(f"term {term!r} has no words")
    out = [_Word(keys=frozenset({key(word)})) for word in words[:-1]]
    last = words[-1]
    if is_prefix:
        if len(last) < MIN_PREFIX:
            raise PolicyError(f"prefix term {term!r}: the prefix needs at least {MIN_PREFIX} characters")
        out.append(_Word(prefix=key(last)))
    elif len(last) >= PLURAL_MIN_LENGTH:
        # -es only where English spells the plural so (after a sibilant or o): "spic" must not match "spices".
        plurals = {last + "s"} | ({last + "es"} if last.endswith(_ES_PLURAL) else set())
        out.append(_Word(keys=frozenset({key(last), *map(key, plurals)})))
    else:
        out.append(_Word(keys=frozenset({key(last)})))
    return tuple(out)


# ------------------------------------------------------------------------------------------------
# Image classifier hook
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClassifierResult:
    """What an image classifier said: `scored` with per-category scores in [0, 1], or `unavailable`
    (no classifier configured, its weights missing, or it failed) with a short detail for the record."""

    state: Literal["unavailable", "scored"]
    scores: Mapping[str, float] = field(default_factory=dict)
    classifier: str = ""
    detail: str = ""

    def __post_init__(self) -> None:
        if self.state not in ("unavailable", "scored"):
            raise ValueError(f"state must be 'unavailable' or 'scored', got {self.state!r}")
        object.__setattr__(self, "scores", dict(self.scores))
        if self.state == "unavailable" and self.scores:
            raise ValueError("an unavailable result carries no scores")
        for name, score in self.scores.items():
            if not 0.0 <= float(score) <= 1.0:
                raise ValueError(f"score for {name!r} must be in [0, 1], got {score!r}")

    @classmethod
    def unavailable(cls, classifier: str = "", detail: str = "") -> ClassifierResult:
        return cls(state="unavailable", classifier=classifier, detail=detail)

    @classmethod
    def scored(cls, scores: Mapping[str, float], classifier: str = "") -> ClassifierResult:
        return cls(state="scored", scores=scores, classifier=classifier)


@runtime_checkable
class ImageClassifier(Protocol):
    """Scores an input or output image per policy category (for example an SD safety checker, ShieldGemma 2
    or Llama Guard vision where the operator has the weights). `image` is whatever the caller holds
    (encoded bytes or a decoded image); the classifier decides what it accepts."""

    name: str

    def classify(self, image: Any) -> ClassifierResult: ...


class UnavailableClassifier:
    """The default: no image classifier is configured, so every image is `unavailable`."""

    name = "none"

    def classify(self, image: Any) -> ClassifierResult:
        return ClassifierResult.unavailable(classifier=self.name, detail="no image classifier configured")


# ------------------------------------------------------------------------------------------------
# Policy
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Level:
    name: str
    block_at: str
    category_block_at: Mapping[str, str]
    image_unavailable: Literal["allow", "block"]
    image_thresholds: Mapping[str, float]
    description: str = ""

    def threshold(self, category: str) -> int:
        return _RANK[self.category_block_at.get(category, self.block_at)]


@dataclass(frozen=True)
class Combination:
    id: str
    category: str
    severity: str
    all_of: tuple[str, ...]
    min_severity: str = "low"
    within: int | None = None


class _Hit(NamedTuple):
    entry: int
    field: str
    view: int
    start: int
    end: int


def default_policy_path() -> Path:
    """The policy file shipped with the package."""
    return Path(str(resources.files("pictor.governance") / "policies" / "default.toml"))


class Policy:
    """A loaded, validated policy file. Immutable after loading; safe to share between threads."""

    def __init__(self, data: Mapping[str, Any], *, image_classifier: ImageClassifier | None = None,
                 source: str = "<dict>") -> None:
        self.source = source
        self.version = str(data.get("version") or "")
        if not self.version:
            raise PolicyError("the policy file needs a non-empty `version`")
        self.categories: dict[str, str] = dict(data.get("categories") or {})
        if not self.categories:
            raise PolicyError("the policy file defines no categories")
        self.image_classifier: ImageClassifier = image_classifier or UnavailableClassifier()
        self._load_levels(data)
        self._load_text_classifier(data.get("text_classifier"), source)
        fields = data.get("fields") or {}
        self.negative_fields = frozenset(fields.get("negative", ()))
        self.negative_block_at = _rank(fields.get("negative_block_at", "critical"), "fields.negative_block_at")

        self._entries: list[_Entry] = []
        self._matchers = (_Matcher(), _Matcher())
        self.rule_ids: list[str] = []
        seen: set[str] = set()
        for rule in data.get("rules") or ():
            rid, category, severity = rule.get("id"), rule.get("category"), rule.get("severity")
            self._check_id(rid, seen)
            if category not in self.categories:
                raise PolicyError(f"rule {rid}: unknown category {category!r}")
            _rank(severity, f"rule {rid}")
            self._add_terms(_Entry("rule", rid, category, severity), rule.get("terms") or ())
            self.rule_ids.append(rid)
        self.signal_ids: list[str] = []
        self.minor_age_below: int | None = None
        self._age_signal: int | None = None
        for signal in data.get("signals") or ():
            sid = signal.get("id")
            self._check_id(sid, seen)
            entry = self._add_terms(_Entry("signal", sid), signal.get("terms") or ())
            if "ages_below" in signal:
                self.minor_age_below = int(signal["ages_below"])
                self._age_signal = entry
            self.signal_ids.append(sid)
        self.combinations: list[Combination] = []
        for combo in data.get("combinations") or ():
            cid = combo.get("id")
            self._check_id(cid, seen)
            if combo.get("category") not in self.categories:
                raise PolicyError(f"combination {cid}: unknown category {combo.get('category')!r}")
            _rank(combo.get("severity"), f"combination {cid}")
            _rank(combo.get("min_severity", "low"), f"combination {cid}")
            operands = tuple(combo.get("all_of") or ())
            if len(operands) < 2:
                raise PolicyError(f"combination {cid}: all_of needs at least two operands")
            for operand in operands:
                if operand not in self.signal_ids and operand not in self.categories:
                    raise PolicyError(f"combination {cid}: {operand!r} is neither a signal nor a category")
            within = combo.get("within")
            self.combinations.append(Combination(cid, combo["category"], combo["severity"], operands,
                                                 combo.get("min_severity", "low"),
                                                 int(within) if within is not None else None))
        for group, phrases in (data.get("allow") or {}).items():
            self._add_terms(_Entry("allow", f"allow.{group}"), phrases)
        self._combo_entries = [[self._operand_entries(operand, combo.min_severity) for operand in combo.all_of]
                               for combo in self.combinations]
        self._operands = frozenset(index for operands in self._combo_entries
                                   for entries in operands for index in entries)
        self._positional = frozenset(index for combo, operands in zip(self.combinations, self._combo_entries)
                                     if combo.within is not None for entries in operands for index in entries)

    # -- loading -------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path | None = None, *, image_classifier: ImageClassifier | None = None) -> Policy:
        """Read a policy file (TOML); without a path, the shipped `policies/default.toml`."""
        path = Path(path) if path is not None else default_policy_path()
        with open(path, "rb") as handle:
            try:
                data = tomllib.load(handle)
            except tomllib.TOMLDecodeError as exc:
                raise PolicyError(f"{path}: {exc}") from exc
        return cls(data, image_classifier=image_classifier, source=str(path))

    def with_classifier(self, classifier: ImageClassifier) -> Policy:
        """The same rules with another image classifier (the rules are shared, not copied)."""
        return self._sharing(image_classifier=classifier)

    def with_confirm_at(self, confirm_at: float) -> Policy:
        """The same rules and classifier, weak terms confirmed at another score (what training chooses it with)."""
        return self._sharing(confirm_at=_checked_confirm_at(confirm_at))

    def with_text_threshold(self, level: str, tier: str, threshold: float) -> Policy:
        """The same policy with one level's classifier tier and threshold changed (what training measures)."""
        return self._sharing(text_thresholds={**self.text_thresholds, level: (tier, threshold)})

    def without_text_classifier(self) -> Policy:
        """The same rules without the text classifier (to measure or train against the rules alone)."""
        return self._sharing(text_classifier=None, text_thresholds={}, confirm_at=0.0)

    def _sharing(self, **changes: Any) -> Policy:
        """A policy that shares this one's loaded rules, with these attributes changed."""
        clone = object.__new__(Policy)
        clone.__dict__.update(self.__dict__, **changes)
        return clone

    def _check_id(self, rid: Any, seen: set[str]) -> None:
        if not isinstance(rid, str) or not rid:
            raise PolicyError("every rule, signal and combination needs a string `id`")
        if rid in seen:
            raise PolicyError(f"duplicate id {rid!r}")
        seen.add(rid)

    def _add_terms(self, entry: _Entry, terms: Iterable[str]) -> int:
        index = len(self._entries)
        self._entries.append(entry)
        for term in terms:
            if not isinstance(term, str) or not term.strip():
                raise PolicyError(f"{entry.id}: terms must be non-empty strings")
            for view, matcher in zip(("raw", "normalised"), self._matchers):
                matcher.add(_term_words(term, view), index)
        return index

    def _load_levels(self, data: Mapping[str, Any]) -> None:
        levels = dict(data.get("levels") or {})
        self.default_level = levels.pop("default", "standard")
        self.request_low_level = levels.pop("request_low", "low")
        image = data.get("image") or {}
        thresholds = image.get("thresholds") or {}
        self.levels: dict[str, Level] = {}
        for name, spec in levels.items():
            block_at = spec.get("block_at")
            if _rank(block_at, f"levels.{name}.block_at") > _RANK["high"]:
                raise PolicyError(f"levels.{name}.block_at: 'critical' rules always block; use at most 'high'")
            overrides = dict(spec.get("category_block_at") or {})
            for category, severity in overrides.items():
                if category not in self.categories:
                    raise PolicyError(f"levels.{name}: unknown category {category!r}")
                if _rank(severity, f"levels.{name}.category_block_at") > _RANK["high"]:
                    raise PolicyError(f"levels.{name}: 'critical' rules always block; use at most 'high'")
            unavailable = spec.get("image_unavailable", image.get("on_unavailable", "allow"))
            if unavailable not in ("allow", "block"):
                raise PolicyError(f"levels.{name}: image_unavailable must be 'allow' or 'block'")
            level_thresholds = {str(k): float(v) for k, v in (thresholds.get(name) or {}).items()}
            self.levels[name] = Level(name, block_at, overrides, unavailable, level_thresholds,
                                      spec.get("description", ""))
        if not self.levels:
            raise PolicyError("the policy file defines no levels")
        for key in ("default_level", "request_low_level"):
            if getattr(self, key) not in self.levels:
                raise PolicyError(f"levels: {getattr(self, key)!r} is not a defined level")

    def _load_text_classifier(self, spec: Mapping[str, Any] | None, source: str) -> None:
        """`[text_classifier]`: the weights file (relative to the policy file, else to the shipped policies),
        its SHA-256, and per level the tier whose scores count and the threshold at which they block."""
        self.text_classifier: TextClassifier | None = None
        self.text_thresholds: dict[str, tuple[str, float]] = {}
        self.confirm_at = 0.0
        # A policy category -> the classifier category that scores it (hate/symbols is scored as hate).
        self.text_classifier_category: dict[str, str] = {}
        if not spec:
            return
        folder = Path(source).parent if Path(source).is_file() else default_policy_path().parent
        try:
            self.text_classifier = TextClassifier.load(folder / str(spec["file"]), spec.get("sha256"))
        except KeyError:
            raise PolicyError("text_classifier needs a `file`") from None
        except ClassifierFileError as exc:
            raise PolicyError(f"text_classifier: {exc}") from exc
        unknown = set(self.text_classifier.categories) - set(self.categories)
        if unknown:
            raise PolicyError(f"text_classifier: categories {sorted(unknown)} are not the policy's")
        self.confirm_at = _checked_confirm_at(float(spec.get("confirm_at", 0.0)))
        for category in self.categories:
            parent = category.split("/")[0]
            scored = category if category in self.text_classifier.categories else parent
            if scored in self.text_classifier.categories:
                self.text_classifier_category[category] = scored
        for name, level in (spec.get("levels") or {}).items():
            if name not in self.levels:
                raise PolicyError(f"text_classifier.levels: {name!r} is not a defined level")
            tier, threshold = level.get("tier"), float(level.get("threshold", -1))
            if tier not in TIERS or not 0.0 < threshold <= 1.0:
                raise PolicyError(f"text_classifier.levels.{name}: tier must be one of {TIERS} and threshold "
                                  f"in (0, 1]")
            self.text_thresholds[name] = (tier, threshold)

    # -- levels --------------------------------------------------------------------------------

    def resolve_level(self, moderation: str = "auto", tenant_level: str | None = None) -> str:
        """The level for a request: the API's `moderation=auto` -> the tenant's level (else the policy
        default); `moderation=low` -> the policy's `request_low` level; a level name -> itself."""
        if moderation == "auto":
            return self.level(tenant_level).name
        if moderation == "low":
            return self.request_low_level
        return self.level(moderation).name

    def level(self, name: str | None) -> Level:
        if name is None or name == "auto":
            name = self.default_level
        try:
            return self.levels[name]
        except KeyError:
            raise ValueError(f"unknown moderation level {name!r}; levels are {sorted(self.levels)}") from None

    # -- text ----------------------------------------------------------------------------------

    def evaluate(self, texts: Mapping[str, str | None] | str, level: str = "standard",
                 stage: Stage = "input", text_scores: Mapping[str, float] | None = None,
                 strict_scores: Mapping[str, float] | None = None) -> Decision:
        """Check the named text fields (prompt, negative_prompt, instruction, session text, ...) at a level.

        A rule blocks when it matched in a positive field with a severity at or above the level's
        threshold for its category, or in a negative field (`fields.negative`) with a severity at or above
        `fields.negative_block_at`; a combination blocks when all its operands matched in the positive
        fields. With a text classifier, a low or medium term rule in a positive field blocks only when the
        classifier's score for its category reaches `confirm_at` (a look-alike such as "nude lipstick" scores
        near zero), and a category whose score reaches the level's threshold blocks as `classifier.<category>`.
        `text_scores` and `strict_scores` stand in for the classifier's scores at the level's tier and at
        `strict` (training uses scores of models that did not see the text). Blocked: `rule_ids` and
        `categories` are those of the blocking rules. Allowed: `rule_ids` lists rules that matched below the
        threshold or were not confirmed (for the audit), `categories` is empty. `reason` names rules,
        categories, fields, the level and the policy version, never a matched term.
        """
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        lvl = self.level(level)
        fields = {"prompt": texts} if isinstance(texts, str) else dict(texts)
        for name, text in fields.items():
            if text is not None and not isinstance(text, str):
                raise TypeError(f"field {name!r} must be a string, got {type(text).__name__}")
        if text_scores is not None:
            scores, strict = dict(text_scores), dict(strict_scores if strict_scores is not None else text_scores)
        else:
            scores, strict = self._text_scores(fields, lvl.name)
        # Which entries matched in which fields; for combinations, the positive fields' hits of their
        # operands (every position where a combination has a word window, else the first per field).
        fields_by_entry: dict[int, set[str]] = {}
        positive: dict[int, list[_Hit]] = {}
        negative_fields = self.negative_fields
        for name, text in fields.items():
            if text is None:
                continue
            if not isinstance(text, str):
                raise TypeError(f"field {name!r} must be a string, got {type(text).__name__}")
            if not text:
                continue
            hits = self._field_hits(name, text)
            for index in {hit.entry for hit in hits}:
                fields_by_entry.setdefault(index, set()).add(name)
            if name in negative_fields:
                continue
            seen: set[int] = set()
            for hit in hits:
                if hit.entry in self._positional or (hit.entry in self._operands and hit.entry not in seen):
                    positive.setdefault(hit.entry, []).append(hit)
                    seen.add(hit.entry)

        blocking: dict[str, tuple[str, set[str]]] = {}   # rule id -> (category, fields)
        observed: dict[str, str] = {}
        critical = _RANK["critical"]
        minors_named = self._age_signal in positive
        for index, matched_fields in fields_by_entry.items():
            entry = self._entries[index]
            if entry.kind != "rule":
                continue
            rank = _RANK[entry.severity]
            threshold = lvl.threshold(entry.category)
            unconfirmed = rank < _RANK["high"] and self._unconfirmed(entry.category, scores)
            for name in matched_fields:
                negative = name in negative_fields
                limit = self.negative_block_at if negative else threshold
                if rank == critical or rank >= limit and (negative or not unconfirmed):
                    blocking.setdefault(entry.id, (entry.category, set()))[1].add(name)
                else:
                    observed[entry.id] = entry.category
        for combo, combo_fields in self._combinations(positive):
            if _RANK[combo.severity] >= lvl.threshold(combo.category) or combo.severity == "critical":
                blocking.setdefault(combo.id, (combo.category, set()))[1].update(combo_fields)
            else:
                observed[combo.id] = combo.category
        self._classifier_blocks(fields, lvl.name, scores, strict, blocking, minors_named=minors_named)
        for rid in blocking:
            observed.pop(rid, None)

        if blocking:
            rule_ids = tuple(sorted(blocking))
            categories = tuple(sorted({category for category, _ in blocking.values()}))
            parts = [f"{rid} (category {blocking[rid][0]}; field {', '.join(sorted(blocking[rid][1]))})"
                     for rid in rule_ids]
            reason = (f"blocked by rule{'s' if len(parts) > 1 else ''} {'; '.join(parts)} "
                      f"at level {lvl.name} [policy {self.version}]")
            return Decision(allowed=False, stage=stage, rule_ids=rule_ids, categories=categories, reason=reason,
                            scores=scores)
        rule_ids = tuple(sorted(observed))
        reason = f"allowed at level {lvl.name} [policy {self.version}]"
        if rule_ids:
            reason += f"; below the level's threshold: {', '.join(rule_ids)}"
        return Decision(allowed=True, stage=stage, rule_ids=rule_ids, reason=reason, scores=scores)

    def _text_scores(self, fields: Mapping[str, str | None], level: str) -> tuple[dict[str, float], dict[str, float]]:
        """The text classifier's score per category at the level's tier and at `strict`: the highest over the positive
        fields (each field scored once)."""
        if self.text_classifier is None or level not in self.text_thresholds:
            return {}, {}
        tier = self.text_thresholds[level][0]
        best: dict[str, float] = {}
        strict: dict[str, float] = {}
        for name, text in fields.items():
            if not text or name in self.negative_fields:
                continue
            scored = self.text_classifier.score(text)
            for table, at in ((best, tier), (strict, "strict")):
                for category, score in scored.tier(at).items():
                    table[category] = max(score, table.get(category, 0.0))
        return best, strict

    def _unconfirmed(self, category: str, scores: Mapping[str, float]) -> bool:
        """A term of this category is a look-alike by the classifier's reading (only where it scored the text)."""
        scored = self.text_classifier_category.get(category)
        return bool(scores) and scored in scores and scores[scored] < self.confirm_at

    def _classifier_blocks(self, fields: Mapping[str, str | None], level: str, scores: Mapping[str, float],
                           strict: Mapping[str, float], blocking: dict[str, tuple[str, set[str]]],
                           minors_named: bool = True) -> None:
        """Each category whose score reaches the level's threshold blocks as `classifier.<category>`. Not a
        sub-category whose parent scores below `confirm_at` at `strict` (is it sexual at all, suggestive included:
        what a sub-category's examples teach their parent), and not sexual/minors unless the text names a minor
        (the `minors` signal: a word for a child or a school year, or an age under the limit): its few hundred
        training examples are not enough for it to tell a woman from a girl by itself."""
        if level not in self.text_thresholds:
            return
        threshold = self.text_thresholds[level][1]
        positive = sorted(name for name, text in fields.items() if text and name not in self.negative_fields)
        for category, score in scores.items():
            parent = category.split("/")[0]
            if category == "sexual/minors" and not minors_named or strict.get(parent, 1.0) < self.confirm_at:
                continue  # a sub-category needs its parent's confirmation: a child playing chess is not sexual
            if score >= threshold:
                blocking.setdefault(f"classifier.{category}", (category, set()))[1].update(positive)

    def _field_hits(self, name: str, text: str) -> list[_Hit]:
        raw, normalised = normalise.views(text)
        views: tuple[normalise.View, normalise.View] = ((raw, {}), normalised)
        hits: list[_Hit] = []
        for view, ((keys, _), matcher) in enumerate(zip(views, self._matchers)):
            found = matcher.find(views[view])
            allowed = [(start, end) for entry, start, end in found if self._entries[entry].kind == "allow"]
            if allowed:
                # reach[i]: the furthest end of an allowed phrase starting at or before word i.
                reach = [0] * (len(keys) + 1)
                for start, end in allowed:
                    reach[start] = max(reach[start], end)
                reach = list(accumulate(reach, max))
            for entry, start, end in found:
                if self._entries[entry].kind == "allow" or (allowed and reach[start] >= end):
                    continue
                hits.append(_Hit(entry, name, view, start, end))
        if self._age_signal is not None:
            hits.extend(_Hit(self._age_signal, name, 0, start, end)
                        for start, end in _minor_ages(raw, self.minor_age_below))
        return hits

    def _operand_entries(self, operand: str, min_severity: str) -> list[int]:
        """Entry indexes that count as an operand: the signal of that id, or rules of that category (or a
        sub-category) at or above the combination's minimum severity."""
        floor = _RANK[min_severity]
        out = []
        for index, entry in enumerate(self._entries):
            if entry.kind == "signal" and entry.id == operand or (
                    entry.kind == "rule" and (entry.category == operand or entry.category.startswith(operand + "/"))
                    and _RANK[entry.severity] >= floor):
                out.append(index)
        return out

    def _combinations(self, positive: Mapping[int, list[_Hit]]) -> list[tuple[Combination, set[str]]]:
        fired = []
        for combo, operands in zip(self.combinations, self._combo_entries):
            groups = [[hit for index in entries for hit in positive.get(index, ())] for entries in operands]
            if not all(groups):
                continue
            if combo.within is None:
                fired.append((combo, {hit.field for group in groups for hit in group}))
                continue
            near = _near(groups, combo.within)
            if near:
                fired.append((combo, near))
        return fired

    # -- images --------------------------------------------------------------------------------

    def evaluate_image(self, image: Any, level: str = "standard", stage: Stage = "input") -> Decision:
        """Check an input or output image with the configured classifier.

        An `unavailable` classifier (the default, or one that raised) is recorded as rule
        `image.unavailable` and allowed or blocked as the level's `image_unavailable` says (default allow).
        A `scored` result blocks each category whose score reaches the level's threshold (rule
        `image.<category>`)."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        lvl = self.level(level)
        classifier = self.image_classifier
        name = getattr(classifier, "name", type(classifier).__name__)
        try:
            result = classifier.classify(image)
        except Exception as exc:  # a failing classifier must not take the service down; it is recorded
            result = ClassifierResult.unavailable(classifier=name, detail=f"classifier error: {type(exc).__name__}")
        if result.state == "unavailable":
            allowed = lvl.image_unavailable == "allow"
            detail = f" ({result.detail})" if result.detail else ""
            reason = (f"image classifier unavailable{detail}; {'allowed' if allowed else 'blocked'} by rule "
                      f"{UNAVAILABLE_RULE} at level {lvl.name} [policy {self.version}]")
            return Decision(allowed=allowed, stage=stage, rule_ids=(UNAVAILABLE_RULE,), reason=reason)
        over = sorted(category for category, threshold in lvl.image_thresholds.items()
                      if result.scores.get(category, 0.0) >= threshold)
        scores = tuple(result.scores.items())
        if over:
            rule_ids = tuple(f"image.{category}" for category in over)
            reason = (f"blocked by image classifier {result.classifier or name}: rule"
                      f"{'s' if len(over) > 1 else ''} {', '.join(rule_ids)} at level {lvl.name} "
                      f"[policy {self.version}]")
            return Decision(allowed=False, stage=stage, rule_ids=rule_ids, categories=tuple(over), reason=reason,
                            scores=scores)
        return Decision(allowed=True, stage=stage, rule_ids=("image.scored",), scores=scores,
                        reason=f"image classifier {result.classifier or name} scored below the thresholds of level "
                               f"{lvl.name} [policy {self.version}]")


def _near(groups: Sequence[Sequence[_Hit]], within: int) -> set[str]:
    """Fields where every operand has a hit within `within` words of a hit of the first operand (same
    field and view); a binary search per anchor and operand, so O(h log h) in the number of hits."""
    starts: list[dict[tuple[str, int], list[int]]] = []
    for group in groups[1:]:
        by_place: dict[tuple[str, int], list[int]] = {}
        for hit in group:
            by_place.setdefault((hit.field, hit.view), []).append(hit.start)
        for positions in by_place.values():
            positions.sort()
        starts.append(by_place)
    fields: set[str] = set()
    for anchor in groups[0]:
        if anchor.field in fields:
            continue
        place = (anchor.field, anchor.view)
        if all(_any_within(by_place.get(place, ()), anchor.start, within) for by_place in starts):
            fields.add(anchor.field)
    return fields


def _any_within(positions: Sequence[int], start: int, within: int) -> bool:
    i = bisect_left(positions, start - within)
    return i < len(positions) and positions[i] <= start + within


def _minor_ages(words: Sequence[str], below: int | None) -> list[tuple[int, int]]:
    """Spans of "<n> year old", "<n>-year-old", "<n>yo", "aged <n>", "<n> ans/anni/años/jahre (alt)" with n < below."""
    if not below:
        return []
    spans = []
    numbers = _NUMBER_WORDS
    for i in [i for i, word in enumerate(words) if word in numbers or word[:1].isdigit()]:
        word = words[i]
        value = None
        if word.isdecimal() and len(word) <= 3:
            value = int(word)
        elif word in _NUMBER_WORDS:
            value = _NUMBER_WORDS[word]
        elif word.endswith("yo") and word[:-2].isdecimal() and len(word) <= 4:
            if 0 < int(word[:-2]) < below:
                spans.append((i, i + 1))
            continue
        if value is None or not 0 < value < below:
            continue
        if i > 0 and words[i - 1] in _AGE_BEFORE:
            spans.append((i - 1, i + 1))
            continue
        for unit in _AGE_UNITS:
            if tuple(words[i + 1:i + 1 + len(unit)]) == unit:
                spans.append((i, i + 1 + len(unit)))
                break
    return spans
