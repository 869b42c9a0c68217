"""Training examples rendered on the fly, for the scene autoencoder and for the token transformer.

Each batch is a pure function of (seed, step), so a resumed run sees exactly the data it would have seen,
and nothing is stored on disk.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import torch
from PIL import Image

from pictor.embedded.autoencoder import image_to_field
from pictor.embedded.grammar import ObjectSpec, describe, instruct, object_phrase
from pictor.embedded.layers import scene_layers, scene_tokens
from pictor.embedded.network import TASKS
from pictor.embedded.render import render
from pictor.embedded.world import (
    CELLS as GRID_CELLS,
)
from pictor.embedded.world import (
    HELD_OUT_COMBINATIONS,
    Scene,
    WorldConfig,
    apply_edit,
    sample_edit,
    sample_scene,
)

TASK_IDS = {task: index for index, task in enumerate(TASKS)}  # the order of the task embedding


@dataclass
class DataConfig:
    field: int = 96  # the autoencoder's working side
    max_objects: int = 4
    gradient_probability: float = 0.3
    task_weights: tuple[float, float, float] = (0.5, 0.3, 0.2)  # generate, edit, inpaint
    drop_text: float = 0.1  # for classifier-free guidance
    hold_out: bool = True  # keep the held-out (shape, colour) pairs out of the transformer's examples
    # The autoencoder sees inputs drawn at these sides (then brought to the field), as served requests do.
    input_sides: tuple[int, ...] = (64, 96, 96, 96, 128, 160)
    input_noise: float = 0.03  # at most this much Gaussian noise (in [-1, 1] units) on 30% of inputs
    cell_mention: float = 0.5  # how often a prompt names an object's cell (when no relation places it)
    repeat_probability: float = 0.0  # see WorldConfig: how often an object repeats the one before (counting)
    count_mention: float = 0.0  # how often such repeated objects are said by their number (grammar.describe)


def world_config(config: DataConfig, hold_out: bool | None = None) -> WorldConfig:
    hold = config.hold_out if hold_out is None else hold_out
    return WorldConfig(max_objects=config.max_objects, gradient_probability=config.gradient_probability,
                       held_out=HELD_OUT_COMBINATIONS if hold else frozenset(),
                       repeat_probability=config.repeat_probability)


def field_image(scene: Scene, side: int, field: int) -> torch.Tensor:
    """The scene drawn at `side` and brought to the autoencoder's field, as a served input would be."""
    return image_to_field(Image.fromarray(render(scene, side).image), field)


# ---- the autoencoder ----------------------------------------------------------------------------


def autoencoder_batch(seed: int, step: int, batch_size: int, config: DataConfig,
                      clip: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Inputs (B, 3, F, F) and the layers to draw back (see layers.scene_layers), plus the exact image."""
    rng = random.Random(seed * 1_000_003 + step)
    noise = torch.Generator().manual_seed(seed * 1_000_003 + step)
    world = world_config(config, hold_out=False)  # a tokenizer of images sees every kind of image
    inputs, targets = [], []
    for _ in range(batch_size):
        scene = sample_scene(rng, world)
        side = rng.choice(config.input_sides)
        exact = field_image(scene, config.field, config.field)
        x = exact if side == config.field else field_image(scene, side, config.field)
        if rng.random() < 0.3:
            x = x + torch.randn(x.shape, generator=noise) * rng.uniform(0, config.input_noise)
        inputs.append(x)
        targets.append({**scene_layers(scene, config.field, clip), "image": exact})
    return torch.stack(inputs), {k: torch.stack([t[k] for t in targets]) for k in targets[0]}


# ---- the transformer ----------------------------------------------------------------------------


@dataclass
class Example:
    task: str
    text: str
    target: Scene
    source: Scene | None = None  # edits
    fill: tuple[int, ...] = ()  # inpainting: the cells to fill in (row-major; the rest is given)


def _generate(rng: random.Random, world: WorldConfig, config: DataConfig) -> Example:
    scene = sample_scene(rng, world)
    text, _ = describe(scene, rng, p_cell=config.cell_mention, p_count=config.count_mention)
    return Example("generate", text, scene)


def _edit(rng: random.Random, world: WorldConfig, config: DataConfig) -> Example:
    while True:
        scene = sample_scene(rng, world)
        edit = sample_edit(rng, scene, world)
        if edit is not None:
            return Example("edit", instruct(scene, edit, rng)[0], apply_edit(scene, edit), scene)


def _inpaint(rng: random.Random, world: WorldConfig, config: DataConfig) -> Example:
    """One object's cell to fill from a phrase about it, or (a quarter of the time) emptied with no words;
    sometimes with empty cells around it to fill too, as a loose mask gives."""
    scene = sample_scene(rng, world)
    index = rng.randrange(len(scene.objects))
    obj = scene.objects[index]
    if rng.random() < 0.25:
        scene = replace(scene, objects=tuple(o for i, o in enumerate(scene.objects) if i != index))
        text = ""
    else:
        text = object_phrase(rng, ObjectSpec(obj.shape, obj.colour, obj.size if rng.random() < 0.3 else None))
    fill = {GRID_CELLS.index(obj.cell)}
    empty = [GRID_CELLS.index(c) for c in scene.free_cells() if c != obj.cell]
    if empty and rng.random() < 0.4:
        fill.update(rng.sample(empty, rng.randint(1, len(empty))))
    return Example("inpaint", text, scene, fill=tuple(sorted(fill)))


EXAMPLE_MAKERS = {"generate": _generate, "edit": _edit, "inpaint": _inpaint}


def make_examples(seed: int, step: int, batch_size: int, config: DataConfig) -> list[Example]:
    rng = random.Random(seed * 1_000_003 + step)
    world = world_config(config)
    examples = []
    for _ in range(batch_size):
        task = rng.choices(list(EXAMPLE_MAKERS), weights=config.task_weights)[0]
        example = EXAMPLE_MAKERS[task](rng, world, config)
        if task != "inpaint" and rng.random() < config.drop_text:
            example.text = ""
        examples.append(example)
    return examples


@dataclass
class TokenBatch:
    texts: list[str]
    task: torch.Tensor  # (B,)
    source: torch.Tensor  # (B, 11) codes, -1 = no source
    target: torch.Tensor  # (B, 11) codes
    given: torch.Tensor  # (B, 11) bool: decided before sampling starts (inpainting's kept tokens)


@torch.no_grad()
def token_batch(examples: list[Example], autoencoder, field: int) -> TokenBatch:
    """Scenes -> the generator's tokens of their images (rendered at the field side, read by the autoencoder)."""
    scenes = [e.target for e in examples] + [e.source for e in examples if e.source is not None]
    codes = scene_tokens(autoencoder.tokens(torch.stack([field_image(s, field, field) for s in scenes])))
    n = len(examples)
    target, extra = codes[:n], iter(codes[n:])
    source = torch.stack([next(extra) if e.source is not None else torch.full_like(target[0], -1)
                          for e in examples])
    given = torch.zeros_like(target, dtype=torch.bool)
    for row, e in enumerate(examples):
        if e.task == "inpaint":
            given[row] = True
            given[row, list(e.fill)] = False  # the background is the input's own
    return TokenBatch([e.text for e in examples], torch.tensor([TASK_IDS[e.task] for e in examples]),
                      source, target, given)
