"""`pictor dataset`: a labelled synthetic data set through the Batch API. The COCO file loads with pycocotools,
its boxes and outlines are the renderer's geometry for each image's scene, the judge finds each labelled object
in the image where its box says, and each file is the image the server stored and audited."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from pycocotools.coco import COCO

from pictor.commands.dataset import box_iou
from pictor.embedded.judge import detect
from pictor.embedded.render import render
from pictor.embedded.world import Background, Scene, SceneObject

from .helpers import run_cli


def scene_of(record: dict) -> Scene:
    background = Background(tuple(record["background"]["colours"]), record["background"]["direction"])
    return Scene(tuple(SceneObject(o["shape"], o["colour"], o["size"], tuple(o["cell"])) for o in record["objects"]),
                 background)


def test_dataset_writes_verified_images_with_coco_boxes_from_the_renderer(server, http, tmp_path):
    folder = tmp_path / "set"
    done = run_cli("dataset", str(folder), "--count", "12", "--size", "64x64", "--seed", "3", "--retries", "2",
                   "--server", server.url, "--api-key", server.demo_key, "--no-progress")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    assert len(records) == 12 and len({r["custom_id"] for r in records}) == 12
    kept = [r for r in records if r["file_name"]]
    assert kept and all(r["verified"] for r in kept)
    assert f"{len(kept)} of 12 images verified" in done.stdout

    coco = COCO(str(folder / "annotations.json"))
    assert sorted(c["name"] for c in coco.loadCats(coco.getCatIds())) == sorted(
        ["circle", "square", "triangle", "star", "heart", "diamond"])
    assert len(coco.getImgIds()) == len(kept)
    for record in kept:
        (image_info,) = [i for i in coco.imgs.values() if i["file_name"] == record["file_name"]]
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image_info["id"]]))
        scene = scene_of(record)
        truth = render(scene, record["width"], record["height"])
        assert len(annotations) == len(scene.objects) == len(truth.boxes)
        pixels = np.asarray(Image.open(folder / record["file_name"]).convert("RGB"))
        found = detect(pixels).objects
        for annotation, obj, box, mask in zip(annotations, scene.objects, truth.boxes, truth.masks):
            assert coco.cats[annotation["category_id"]]["name"] == obj.shape
            x, y, w, h = annotation["bbox"]
            # the renderer's box (whole pixels, exclusive) holds the COCO box and is at most a pixel larger
            assert box[0] <= x and box[1] <= y and x + w <= box[2] and y + h <= box[3]
            assert (box[2] - box[0]) - w < 2 and (box[3] - box[1]) - h < 2
            # the outline's area is the renderer's coverage of the object, to a few percent
            assert abs(annotation["area"] - mask.sum()) <= 0.05 * mask.sum() + 2
            assert coco.annToMask(annotation).sum() > 0.8 * mask.sum()
            drawn = [o for o in found if o.cell == obj.cell and o.shape == obj.shape and o.colour == obj.colour]
            assert drawn and box_iou(drawn[0].box, (x, y, x + w, y + h)) >= 0.6
        # the file is the image the server stored (C2PA manifest and all), and the metadata names it
        stored = http.get(f"/v1/images/{record['image_id']}/content").content
        assert stored == (folder / record["file_name"]).read_bytes()
        assert image_info["pictor_image_id"] == record["image_id"] and record["model"] == "pictor-embedded"
