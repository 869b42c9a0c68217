"""Training examples rendered on the fly: text-to-image, edit by instruction, and inpainting.

Each batch is a pure function of (seed, step), so a resumed run sees exactly the data it would
have seen, and nothing is stored on disk.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import numpy as np
import torch

from pictor.embedded.grammar import ObjectSpec, describe, instruct, object_phrase
from pictor.embedded.network import TASKS
from pictor.embedded.render import object_box, render
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
    resolution: int = 64
    max_objects: int = 2
    gradient_probability: float = 0.3
    task_weights: tuple[float, float, float] = (0.6, 0.25, 0.15)  # generate, edit, inpaint
    drop_text: float = 0.1  # for classifier-free guidance
    drop_image: float = 0.05  # edits without their source: the image-guidance baseline
    hold_out: bool = True


@dataclass
class Batch:
    target: torch.Tensor  # (B, 3, H, W) in [-1, 1]
    condition: torch.Tensor  # (B, 3, H, W): edit source, masked inpaint input, or zeros
    mask: torch.Tensor  # (B, 1, H, W): 1 where an inpaint fills in
    task: torch.Tensor  # (B,) long
    texts: list[str]

    def pin_memory(self) -> Batch:
        """Called by the DataLoader's pinning thread, so host-to-GPU copies can overlap compute."""
        return Batch(self.target.pin_memory(), self.condition.pin_memory(), self.mask.pin_memory(), self.task,
                     self.texts)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1).float().div(127.5).sub(1.0)


def world_config(config: DataConfig) -> WorldConfig:
    return WorldConfig(max_objects=config.max_objects, gradient_probability=config.gradient_probability,
                       held_out=HELD_OUT_COMBINATIONS if config.hold_out else frozenset())


def _inpaint_box(rng: random.Random, scene: Scene, index: int, res: int) -> tuple[int, int, int, int]:
    """A rectangle around one object, inside its grid cell, so no other object is touched."""
    obj = scene.objects[index]
    x0, y0, x1, y1 = object_box(obj, res, res)
    row, col = obj.cell
    cx0, cy0, cx1, cy1 = col * res / 3, row * res / 3, (col + 1) * res / 3, (row + 1) * res / 3
    return (int(max(cx0, x0 - rng.uniform(0, x0 - cx0))), int(max(cy0, y0 - rng.uniform(0, y0 - cy0))),
            int(np.ceil(min(cx1, x1 + rng.uniform(0, cx1 - x1)))),
            int(np.ceil(min(cy1, y1 + rng.uniform(0, cy1 - y1)))))


def generate_example(rng: random.Random, config: DataConfig, world: WorldConfig):
    scene = sample_scene(rng, world)
    text, _ = describe(scene, rng)
    return render(scene, config.resolution).image, None, None, text


def edit_example(rng: random.Random, config: DataConfig, world: WorldConfig):
    while True:
        scene = sample_scene(rng, world)
        edit = sample_edit(rng, scene, world)
        if edit is not None:
            break
    text, _ = instruct(scene, edit, rng)
    source = render(scene, config.resolution).image
    return render(apply_edit(scene, edit), config.resolution).image, source, None, text


def inpaint_example(rng: random.Random, config: DataConfig, world: WorldConfig):
    scene = sample_scene(rng, world)
    index = rng.randrange(len(scene.objects))
    res = config.resolution
    x0, y0, x1, y1 = _inpaint_box(rng, scene, index, res)
    mask = np.zeros((res, res), dtype=np.float32)
    mask[y0:y1, x0:x1] = 1.0
    if rng.random() < 0.25:
        # Fill with background only: the object is gone, and the prompt says nothing.
        kept = tuple(o for i, o in enumerate(scene.objects) if i != index)
        target = render(replace(scene, objects=kept), res).image
        text = ""
    else:
        obj = scene.objects[index]
        spec = ObjectSpec(obj.shape, obj.colour, obj.size if rng.random() < 0.3 else None)
        target = render(scene, res).image
        text = object_phrase(rng, spec)
    masked = target.copy()
    masked[mask > 0] = 127
    return target, masked, mask, text


EXAMPLE_MAKERS = {"generate": generate_example, "edit": edit_example, "inpaint": inpaint_example}


def make_batch(seed: int, step: int, batch_size: int, config: DataConfig) -> Batch:
    rng = random.Random(seed * 1_000_003 + step)
    world = world_config(config)
    targets, conditions, masks, tasks, texts = [], [], [], [], []
    res = config.resolution
    for _ in range(batch_size):
        task = rng.choices(list(EXAMPLE_MAKERS), weights=config.task_weights)[0]
        target, condition, mask, text = EXAMPLE_MAKERS[task](rng, config, world)
        if rng.random() < config.drop_text:
            text = ""
        targets.append(to_tensor(target))
        if condition is None or (task == "edit" and rng.random() < config.drop_image):
            conditions.append(torch.zeros(3, res, res))
        else:
            conditions.append(to_tensor(condition))
        masks.append(torch.zeros(1, res, res) if mask is None else torch.from_numpy(mask)[None])
        tasks.append(TASK_IDS[task])
        texts.append(text)
    return Batch(torch.stack(targets), torch.stack(conditions), torch.stack(masks),
                 torch.tensor(tasks, dtype=torch.long), texts)


class BatchStream(torch.utils.data.IterableDataset):
    """The batches of steps [start, end) in order, rendered by DataLoader worker processes.

    Worker k renders steps start+k, start+k+W, ...; the DataLoader takes one batch from each worker in
    turn, so the order (and every batch) is exactly what `make_batch` gives in a single process.
    """

    def __init__(self, seed: int, start: int, end: int, batch_size: int, config: DataConfig):
        super().__init__()
        self.seed, self.start, self.end, self.batch_size, self.config = seed, start, end, batch_size, config

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        for step in range(self.start + worker, self.end, workers):
            yield make_batch(self.seed, step, self.batch_size, self.config)


def batches(seed: int, start: int, end: int, batch_size: int, config: DataConfig, workers: int = 0,
            pin_memory: bool = False):
    """Iterate the training batches of steps [start, end); with `workers` > 0, rendered in parallel processes."""
    if workers <= 0:
        return (make_batch(seed, step, batch_size, config) for step in range(start, end))
    stream = BatchStream(seed, start, end, batch_size, config)
    return iter(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers, prefetch_factor=4,
                                            pin_memory=pin_memory, persistent_workers=False))
