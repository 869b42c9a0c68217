"""Training the policy's text classifier (text_classifier.py) from labelled prompts.

Each line of a training file is {"prompt", "category", "block", "lang", "style"}: `block` is the least
restrictive level that must still block the prompt (`all`, `standard`, `strict` or `none`), as in the
evaluation sets of bench/policy_eval.py. An item of category C blocked at `standard` is a positive for the
outputs (C, strict) and (C, standard) and a negative for every other output, except its parent category's (sexual/minors
-> sexual: see `target_matrix`); look-alike and benign items (`none`) are negatives for all of them.

Logistic regression over hashed features, trained with AdamW; features are dropped a word at a time during
training so that no single word carries a decision. Thresholds per level come from out-of-fold scores: the
lowest threshold whose false-positive rate over the items that level must allow stays at most `max_fpr`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pictor.governance.text_classifier import TIERS, TextClassifier, from_weights
from pictor.governance.text_features import BUCKETS, word_features

# The classifier's categories; "hate/symbols" items train the "hate" outputs.
CATEGORIES = ("sexual", "sexual/minors", "violence/graphic", "self-harm", "hate")
CATEGORY_OF = {"hate/symbols": "hate"}
BLOCKS = ("strict", "standard", "all", "none")
LEVEL_TIERS = {"strict": "strict", "standard": "standard", "low": "all"}


@dataclass(frozen=True)
class Example:
    prompt: str
    category: str
    block: str
    style: str = ""

    @property
    def tier_rank(self) -> int:
        """How many tiers (TIERS order) must block it: 0 for `none`, 3 for `all`."""
        return 0 if self.block == "none" else TIERS.index(self.block) + 1

    def should_block(self, tier: str) -> bool:
        return self.tier_rank > TIERS.index(tier)


def load_examples(paths: Iterable[Path]) -> list[Example]:
    """Every line of every file, checked."""
    examples = []
    for path in paths:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            item = json.loads(line)
            category, block = item["category"], item["block"]
            if block not in BLOCKS or (category != "none") == (block == "none"):
                raise ValueError(f"{path}:{number}: category {category!r} with block {block!r}")
            category = CATEGORY_OF.get(category, category)
            if category != "none" and category not in CATEGORIES:
                raise ValueError(f"{path}:{number}: unknown category {category!r}")
            examples.append(Example(item["prompt"], category, block, item.get("style", "")))
    return examples


def world_examples(count: int = 400, seed: int = 0) -> list[Example]:
    """Prompts and edit instructions of the embedded model's world (what the service is asked most), all allowed:
    "a red cross on a black background" must never look like a symbol of hate to the classifier."""
    from pictor.embedded.data import DataConfig, make_examples

    made = make_examples(seed, 0, count, DataConfig(count_mention=0.5))
    return [Example(example.text, "none", "none", "world") for example in made if example.text]


def target_matrix(examples: Sequence[Example]) -> tuple[np.ndarray, np.ndarray]:
    """[examples, categories * tiers] targets of 0/1, and the weight of each in the loss (0 or 1).

    A sub-category's item is also its parent's: sexual content involving minors is sexual content, and so at least
    suggestive. How far the parent's own tiers go is not said by the label (a child in lingerie would be `strict`
    for an adult, a sexual act `all`), so the parent's tiers beyond `strict` are left out of the loss rather than
    taught either way: taught as positives, "lingerie" learnt to block adults at `standard`."""
    targets = np.zeros((len(examples), len(CATEGORIES) * len(TIERS)), np.float32)
    weights = np.ones_like(targets)
    for row, example in enumerate(examples):
        if example.category == "none":
            continue
        own = CATEGORY_OF.get(example.category, example.category)
        base = CATEGORIES.index(own) * len(TIERS)
        targets[row, base:base + example.tier_rank] = 1.0
        parent = own.split("/")[0]
        if parent != own and parent in CATEGORIES:
            base = CATEGORIES.index(parent) * len(TIERS)
            targets[row, base] = 1.0
            weights[row, base + 1:base + len(TIERS)] = 0.0
    return targets, weights


@dataclass
class TrainSettings:
    epochs: int = 10
    batch: int = 32
    learning_rate: float = 0.01
    l2: float = 1e-4
    word_dropout: float = 0.15
    seed: int = 0
    members: int = 1  # models fitted from consecutive seeds and averaged


def train(examples: Sequence[Example], settings: TrainSettings | None = None) -> TextClassifier:
    """A classifier fitted to the examples (deterministic for a seed).

    With several `members`, the average of models fitted from different seeds (shuffles, word dropout): the model
    is linear, so averaging the weights averages the members' logits, at no cost when scoring. One seed's model
    leans on whichever words its dropout happened to favour; the average depends less on that draw."""
    settings = settings or TrainSettings()
    features = [word_features(example.prompt) for example in examples]
    target_array, weight_array = target_matrix(examples)
    targets, weights = torch.from_numpy(target_array), torch.from_numpy(weight_array)
    fitted = [_fit(features, targets, weights, settings, settings.seed + member)
              for member in range(max(1, settings.members))]
    dense = np.mean([weight for weight, _ in fitted], axis=0)
    bias = np.mean([bias for _, bias in fitted], axis=0)
    return from_weights(list(CATEGORIES), dense.astype(np.float32), bias.astype(np.float32))


def _fit(features: list[list[tuple[int, ...]]], targets: torch.Tensor, weights: torch.Tensor, settings: TrainSettings,
         seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One logistic regression's dense [BUCKETS, outputs] weights and bias."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    outputs = targets.shape[1]
    bag = torch.nn.EmbeddingBag(BUCKETS, outputs, mode="sum", sparse=True)
    torch.nn.init.zeros_(bag.weight)
    bias = torch.nn.Parameter(torch.full((outputs,), -3.0))
    positives = targets.sum(0)
    pos_weight = ((len(features) - positives) / positives.clamp(min=1.0)).clamp(max=10.0)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight, reduction="none")
    # Sparse updates: a batch touches a few thousand of the 262,144 rows.
    optimisers = (torch.optim.SparseAdam([bag.weight], lr=settings.learning_rate),
                  torch.optim.Adam([bias], lr=settings.learning_rate))
    order = list(range(len(features)))
    for _ in range(settings.epochs):
        rng.shuffle(order)
        for start in range(0, len(order), settings.batch):
            rows = order[start:start + settings.batch]
            flat, offsets = [], []
            for row in rows:
                offsets.append(len(flat))
                words = features[row]
                kept = [w for w in words if rng.random() >= settings.word_dropout] or words
                for word in kept:
                    flat.extend(word)
            flat_tensor = torch.tensor(flat)
            logits = bag(flat_tensor, torch.tensor(offsets)) + bias
            mask = weights[rows]
            loss = (loss_fn(logits, targets[rows]) * mask).sum() / mask.sum().clamp(min=1.0)
            if settings.l2:
                # L2 on the rows this batch uses (a dense penalty would make every gradient dense).
                used = torch.nn.functional.embedding(flat_tensor.unique(), bag.weight, sparse=True)
                loss = loss + settings.l2 * used.pow(2).sum()
            for optimiser in optimisers:
                optimiser.zero_grad()
            loss.backward()
            for optimiser in optimisers:
                optimiser.step()
    return bag.weight.detach().numpy(), bias.detach().numpy()


def out_of_fold_scores(examples: Sequence[Example], folds: int = 5,
                       settings: TrainSettings | None = None) -> np.ndarray:
    """Each example scored by a classifier that did not see it: [examples, categories, tiers]."""
    order = list(range(len(examples)))
    random.Random(1234).shuffle(order)
    scores = np.zeros((len(examples), len(CATEGORIES), len(TIERS)))
    for fold in range(folds):
        held = set(order[fold::folds])
        model = train([e for i, e in enumerate(examples) if i not in held], settings)
        for i in held:
            table = model.score(examples[i].prompt).by_category
            scores[i] = [table[category] for category in CATEGORIES]
    return scores


def choose_threshold(scores: np.ndarray, examples: Sequence[Example], tier: str, max_fpr: float,
                     blocked: Sequence[bool] | None = None) -> float:
    """The lowest threshold on the highest category score at a tier such that, together with the items the
    policy's rules already block (`blocked`), at most max_fpr of the examples that must pass at that tier
    are blocked."""
    column = TIERS.index(tier)
    top = scores[:, :, column].max(axis=1)
    blocked = blocked if blocked is not None else [False] * len(examples)
    negatives = [(s, b) for s, e, b in zip(top, examples, blocked) if not e.should_block(tier)]
    if not negatives:
        return 0.5
    budget = int(np.floor(max_fpr * len(negatives))) - sum(1 for _, b in negatives if b)
    passing = np.sort(np.array([s for s, b in negatives if not b]))[::-1]
    if budget >= len(passing):
        return 0.0
    # Strictly above the (budget+1)-th highest passing score: at most `budget` more items reach it.
    return float(min(0.9999, passing[max(budget, 0)] + 1e-4))
