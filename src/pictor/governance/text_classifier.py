"""The policy's learned text classifier: catches what word lists cannot list (acts described rather than named,
inflected and obfuscated spellings) by scoring hashed word and character n-gram features.

The model is linear: one weight vector per (category, tier) over the feature buckets of text_features.py, where
the tiers are the policy's levels from the most to the least restrictive (`strict`, `standard`, `all`: the
least restrictive level that must still block). A text is scored whole and over every window of 16 and of 32
words, and the highest score counts: innocent words around a harmful clause in a long prompt carry weights of
their own, and must not outweigh it.

The weights are a safetensors file beside the policy (trained by `pictor train-policy-classifier` from the
labelled prompts in training/policy-text/); the policy file names it with its SHA-256, so a policy version
always means the same decisions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save_file

from pictor.governance.text_features import BUCKETS, word_features

TIERS = ("strict", "standard", "all")
WINDOWS = (16, 32)  # word windows scored; a text no longer than a window is scored whole


class ClassifierFileError(ValueError):
    """The classifier file is missing, altered or not a classifier of this feature layout."""


@dataclass(frozen=True)
class TextScores:
    """Per category, the probability that the text must be blocked at each tier (TIERS order)."""

    by_category: dict[str, tuple[float, float, float]]

    def tier(self, tier: str) -> dict[str, float]:
        """Each category's probability for one tier."""
        column = TIERS.index(tier)
        return {category: probs[column] for category, probs in self.by_category.items()}


class TextClassifier:
    """Loaded weights; immutable and safe to share between threads."""

    def __init__(self, categories: list[str], buckets: np.ndarray, weights: np.ndarray, bias: np.ndarray,
                 name: str = "text-ngrams") -> None:
        outputs = len(categories) * len(TIERS)
        if weights.shape != (len(buckets), outputs) or bias.shape != (outputs,):
            raise ClassifierFileError(f"weights {weights.shape} and bias {bias.shape} do not fit "
                                      f"{len(categories)} categories")
        self.categories = list(categories)
        self.name = name
        # Dense bucket -> row map; row len(buckets) is all zeros (buckets no training text reached).
        self._buckets = buckets.astype(np.int32)
        self._rows = np.full(BUCKETS, len(buckets), dtype=np.int32)
        self._rows[self._buckets] = np.arange(len(buckets), dtype=np.int32)
        self._weights = np.vstack([weights.astype(np.float32), np.zeros((1, outputs), np.float32)])
        self._bias = bias.astype(np.float32)

    @classmethod
    def load(cls, path: str | Path, sha256: str | None = None) -> TextClassifier:
        """Read a classifier file; with `sha256`, refuse a file whose digest differs."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ClassifierFileError(f"{path}: {exc.strerror or exc}") from exc
        digest = hashlib.sha256(data).hexdigest()
        if sha256 is not None and digest != sha256:
            raise ClassifierFileError(f"{path}: sha256 is {digest}, the policy names {sha256}")
        tensors = load_tensors(data)
        try:
            meta = json.loads(bytes(tensors["meta"]).decode("utf-8"))
            if meta.get("buckets") != BUCKETS:
                raise ClassifierFileError(f"{path}: made for {meta.get('buckets')} feature buckets, not {BUCKETS}")
            return cls(meta["categories"], tensors["buckets"], tensors["weights"], tensors["bias"],
                       name=meta.get("name", "text-ngrams"))
        except (KeyError, ValueError) as exc:
            raise ClassifierFileError(f"{path}: not a text classifier file ({exc})") from exc

    def save(self, path: str | Path, meta: dict | None = None) -> str:
        """Write the weights (the rows of the buckets it has) and return the file's SHA-256."""
        header = {"buckets": BUCKETS, "categories": self.categories, "tiers": list(TIERS), "name": self.name,
                  **(meta or {})}
        save_file({"buckets": self._buckets,
                   "weights": self._weights[:-1].astype(np.float16),
                   "bias": self._bias,
                   "meta": np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)}, str(path))
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()

    def logits(self, text: str) -> np.ndarray:
        """The highest logit of every output over the whole text and its windows of each size in WINDOWS."""
        words = word_features(text)
        if not words:
            return self._bias.copy()
        counts = np.fromiter((len(features) for features in words), np.int64, len(words))
        flat = np.fromiter(chain.from_iterable(words), np.int64, int(counts.sum()))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        per_word = np.add.reduceat(self._weights[self._rows[flat]], starts, axis=0)
        prefix = np.vstack([np.zeros((1, per_word.shape[1]), np.float32), np.cumsum(per_word, axis=0)])
        best = prefix[-1]
        for size in WINDOWS:
            if len(words) > size:
                best = np.maximum(best, (prefix[size:] - prefix[:-size]).max(axis=0))
        return self._bias + best

    def score(self, text: str) -> TextScores:
        probs = 1.0 / (1.0 + np.exp(-self.logits(text).astype(np.float64)))
        table = probs.reshape(len(self.categories), len(TIERS))
        return TextScores({category: tuple(round(float(p), 4) for p in row)
                           for category, row in zip(self.categories, table)})


def from_weights(categories: list[str], dense: np.ndarray, bias: np.ndarray, name: str = "text-ngrams"
                 ) -> TextClassifier:
    """A classifier from a dense [BUCKETS, outputs] weight matrix (training's output)."""
    buckets = np.flatnonzero(np.any(dense != 0, axis=1)).astype(np.int32)
    return TextClassifier(categories, buckets, dense[buckets], bias, name=name)
