"""`pictor dataset`: a labelled synthetic data set from the embedded world, made through the Batch API.

Each image is asked for with a prompt that states its scene: every object's shape, colour and cell, and the
background. Sizes are left to the model (it draws them least faithfully), and the world's judge reads each image
back: an image is kept only when it shows exactly the objects asked for, in their cells, on the background asked
for, each where the renderer would draw it at the size the judge reads (box IoU >= MIN_IOU). The scene with those
sizes is then the image's ground truth, and its labels, boxes and outlines come from the renderer's geometry. A miss
is asked for again with another seed (up to `retries` rounds); what still misses is left out of the COCO file (or
kept and flagged, with `keep_unverified`), so a detector never learns a wrong box.
"""

from __future__ import annotations

import base64
import io
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pictor.commands.batch import run_batch
from pictor.commands.remote import PictorClient
from pictor.embedded.grammar import full_description
from pictor.embedded.judge import background_colours, detect
from pictor.embedded.render import object_box, unit_polygon
from pictor.embedded.world import SHAPES, Scene, SceneObject, WorldConfig, sample_scene

RESEED = 1_000_003  # a retry's seed: far from every other item's first seed
MIN_IOU = 0.6  # drawn box vs the renderer's box for the object at the size read


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def drawn_scene(asked: Scene, image: np.ndarray, min_iou: float = MIN_IOU) -> Scene | None:
    """The scene the image shows, if it is the one asked for (sizes as drawn), else None."""
    detection = detect(image)
    if background_colours(detection) != asked.background.colours or len(detection.objects) != len(asked.objects):
        return None
    height, width = image.shape[:2]
    found = {obj.cell: obj for obj in detection.objects}
    objects = []
    for want in asked.objects:
        got = found.get(want.cell)
        if got is None or (got.shape, got.colour) != (want.shape, want.colour):
            return None
        drawn = replace(want, size=got.size)
        if box_iou(got.box, object_box(drawn, width, height)) < min_iou:
            return None
        objects.append(drawn)
    return Scene(tuple(objects), asked.background)


@dataclass
class DatasetOptions:
    count: int
    width: int = 64
    height: int = 64
    seed: int = 0
    max_objects: int = 2
    retries: int = 2
    keep_unverified: bool = False
    model: str | None = None
    quality: str | None = None


@dataclass
class Item:
    custom_id: str
    scene: Scene
    prompt: str
    seed: int
    attempts: int = 0
    image: Image.Image | None = None
    data: bytes = b""  # the PNG as served: C2PA manifest, watermark and all
    image_seed: int | None = None  # the seed of the image kept (a retry's, when it took one)
    image_id: str | None = None
    verified: bool = False


@dataclass
class DatasetSummary:
    folder: Path
    requested: int
    verified: int
    unverified: int  # still missed after every retry
    failed: int  # no image at all (a refused or failed request)
    rounds: int
    images_made: int  # every image asked for, retries included
    files: list[Path] = field(default_factory=list)


def plan(options: DatasetOptions) -> list[Item]:
    """The scenes and their prompts, a function of the options alone (so a rerun resumes the same batches)."""
    world = WorldConfig(max_objects=options.max_objects)
    items = []
    for index in range(options.count):
        rng = random.Random(f"{options.seed}:{index}")
        scene = sample_scene(rng, world)
        items.append(Item(f"{index:06d}", scene, full_description(scene, rng, sizes=False), options.seed + index))
    return items


def _request_line(item: Item, options: DatasetOptions) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": item.prompt, "size": f"{options.width}x{options.height}", "n": 1,
                            "seed": item.seed, "response_format": "b64_json", "output_format": "png"}
    if options.model:
        body["model"] = options.model
    if options.quality:
        body["quality"] = options.quality
    return {"custom_id": item.custom_id, "method": "POST", "url": "/v1/images/generations", "body": body}


def polygon(obj: SceneObject, width: int, height: int) -> list[float]:
    """The object's outline in pixels, as COCO's flat [x1, y1, x2, y2, ...]."""
    x0, y0, x1, y1 = object_box(obj, width, height)
    return [round(v, 2) for u, w in unit_polygon(obj.shape) for v in (x0 + u * (x1 - x0), y0 + w * (y1 - y0))]


def polygon_area(flat: list[float]) -> float:
    xs, ys = np.array(flat[0::2]), np.array(flat[1::2])
    return float(abs(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))) / 2)


def _objects(scene: Scene, width: int, height: int) -> list[dict[str, Any]]:
    rows = []
    for obj in scene.objects:
        x0, y0, x1, y1 = object_box(obj, width, height)
        rows.append({"shape": obj.shape, "colour": obj.colour, "size": obj.size, "cell": list(obj.cell),
                     "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]})
    return rows


def coco(items: list[Item], width: int, height: int) -> dict[str, Any]:
    """COCO detection annotations: one category per shape; colour, size and cell as attributes."""
    categories = [{"id": i + 1, "name": shape, "supercategory": "shape"} for i, shape in enumerate(SHAPES)]
    category = {shape: i + 1 for i, shape in enumerate(SHAPES)}
    images, annotations = [], []
    for image_number, item in enumerate(items, start=1):
        images.append({"id": image_number, "file_name": f"images/{item.custom_id}.png", "width": width,
                       "height": height, "pictor_image_id": item.image_id})
        for obj in item.scene.objects:
            outline = polygon(obj, width, height)
            x0, y0, x1, y1 = object_box(obj, width, height)
            annotations.append({"id": len(annotations) + 1, "image_id": image_number,
                                "category_id": category[obj.shape],
                                "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                                "area": round(polygon_area(outline), 2), "segmentation": [outline], "iscrowd": 0,
                                "attributes": {"colour": obj.colour, "size": obj.size, "cell": list(obj.cell)}})
    return {"info": {"description": "Pictor embedded-world synthetic data set"}, "images": images,
            "annotations": annotations, "categories": categories}


def _round(client: PictorClient, folder: Path, number: int, pending: list[Item], options: DatasetOptions,
           on_progress: Callable[[int, int], None] | None) -> None:
    batches = folder / "batches"
    batches.mkdir(parents=True, exist_ok=True)
    requests = batches / f"round-{number}.jsonl"
    requests.write_text("".join(json.dumps(_request_line(item, options)) + "\n" for item in pending))
    outcome = run_batch(client, requests, batches / f"round-{number}.output.jsonl",
                        metadata={"pictor_dataset_round": str(number)}, on_progress=on_progress)
    by_id = {item.custom_id: item for item in pending}
    rows = ([json.loads(line) for line in outcome.output.read_text().splitlines() if line.strip()]
            if outcome.output else [])
    for row in rows:
        item = by_id[row["custom_id"]]
        datum = row["response"]["body"]["data"][0]
        item.data = base64.b64decode(datum["b64_json"])
        item.image = Image.open(io.BytesIO(item.data)).convert("RGB")
        item.image_seed = item.seed
        item.image_id = datum.get("id")
        item.attempts += 1
        drawn = drawn_scene(item.scene, np.asarray(item.image))
        item.verified = drawn is not None
        if drawn is not None:
            item.scene = drawn


def build_dataset(client: PictorClient, folder: Path, options: DatasetOptions,
                  on_progress: Callable[[int, int], None] | None = None) -> DatasetSummary:
    """Make, check and label the data set in `folder`: images/, metadata.jsonl, annotations.json (COCO)."""
    items = plan(options)
    model = options.model or client.default_model()
    pending, rounds, made = items, 0, 0
    while pending and rounds <= options.retries:
        _round(client, folder, rounds, pending, options, on_progress)
        made += len(pending)
        rounds += 1
        pending = [item for item in pending if not item.verified]
        for item in pending:
            item.seed += RESEED
    keep = [item for item in items if item.image is not None and (item.verified or options.keep_unverified)]
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    files = []
    for item in keep:
        path = images / f"{item.custom_id}.png"
        path.write_bytes(item.data)
        files.append(path)
    with (folder / "metadata.jsonl").open("w") as out:
        for item in items:
            out.write(json.dumps({
                "custom_id": item.custom_id,
                "file_name": f"images/{item.custom_id}.png" if item in keep else None,
                "image_id": item.image_id, "prompt": item.prompt, "seed": item.image_seed,
                "model": model, "width": options.width, "height": options.height, "verified": item.verified,
                "attempts": item.attempts, "background": {"colours": list(item.scene.background.colours),
                                                          "direction": item.scene.background.direction},
                "objects": _objects(item.scene, options.width, options.height)}) + "\n")
    (folder / "annotations.json").write_text(json.dumps(coco(keep, options.width, options.height)))
    return DatasetSummary(folder, len(items), sum(i.verified for i in items),
                          sum(1 for i in items if i.image is not None and not i.verified),
                          sum(1 for i in items if i.image is None), rounds, made, files)
