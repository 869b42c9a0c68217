"""Does a small token transformer learn to put one object in the cell its prompt names? A probe of the
transformer's initialisation on one-object prompts that always name the cell: after N steps, the share of
held-out prompts whose most likely non-empty cell is the named one (chance: 1/9).

    python bench/embedded_position_probe.py default 400   # the code's initialisation (positions at std 1)
    python bench/embedded_position_probe.py legacy 400    # positions at std 0.02, as the shipped weights began
    python bench/embedded_position_probe.py small-embeddings 400   # positions 0.02, token embeddings 0.02
"""

from __future__ import annotations

import math
import random
import sys
import time

import torch
import torch.nn.functional as F

from pictor.embedded.grammar import describe
from pictor.embedded.layers import scene_codes, scene_tokens
from pictor.embedded.network import EmbeddedTextEncoder, EmbeddedTransformer
from pictor.embedded.tokenizer import WorldTokenizer
from pictor.embedded.world import WorldConfig, sample_scene

BATCH = 32


def batch(tokenizer: WorldTokenizer, seed: int, n: int) -> tuple[list[str], torch.Tensor]:
    rng, world = random.Random(seed), WorldConfig(max_objects=1)
    texts, targets = [], []
    for _ in range(n):
        scene = sample_scene(rng, world)
        texts.append(describe(scene, rng, p_cell=1.0)[0])
        targets.append(scene_tokens(scene_codes(scene)[None])[0])
    return texts, torch.stack(targets)


def main() -> int:
    mode, steps = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tokenizer = WorldTokenizer.build()
    transformer = EmbeddedTransformer(codes=199, tokens=11, text_width=64, width=128, layers=3, heads=4)
    text_encoder = EmbeddedTextEncoder(vocab_size=tokenizer.vocab_size, max_length=40, width=64, layers=1, heads=2)
    if mode in ("legacy", "small-embeddings"):
        torch.nn.init.normal_(transformer.position, std=0.02)
    if mode == "small-embeddings":
        for table in (transformer.source, transformer.target, transformer.task):
            torch.nn.init.normal_(table.weight, std=0.02)
    optimizer = torch.optim.AdamW([*transformer.parameters(), *text_encoder.parameters()], lr=1e-3)

    def forward(texts: list[str], target: torch.Tensor) -> torch.Tensor:
        ids = torch.tensor(tokenizer.encode(texts))
        states, _, keep = text_encoder(ids[:, :int((ids != 0).sum(1).max())])
        return transformer(states, keep, torch.zeros(len(texts), dtype=torch.long), torch.full_like(target, -1),
                           target)

    started = time.time()
    for step in range(steps):
        texts, target = batch(tokenizer, step, BATCH)
        generator = torch.Generator().manual_seed(step)
        share = torch.cos(0.5 * math.pi * torch.rand(BATCH, generator=generator))
        hidden = torch.rand(BATCH, 11, generator=generator).argsort(1).argsort(1) < (share * 11).ceil()[:, None]
        logits = forward(texts, target.masked_fill(hidden, -1))
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view(BATCH, 11)
        loss = (loss * hidden).sum() / hidden.sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    texts, target = batch(tokenizer, 10**6, 200)
    with torch.no_grad():
        logits = forward(texts, torch.full_like(target, -1))
    predicted = (1 - logits[:, :9].softmax(-1)[..., 0]).argmax(-1)
    named = (target[:, :9] != 0).float().argmax(-1)
    print(f"{mode}: {steps} steps, cell right {(predicted == named).float().mean().item():.3f}, "
          f"{time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
