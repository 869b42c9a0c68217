"""Composition from reference images, and the blend band of hard masks.

The rules without a server first (which text is a composition, which region it names, the blend band's weights),
then ImageService in-process (the blend band, which the composition root does not set), then the live server:
/v1/images/edits with two images and session turns. Acceptance: the reference is found where it was put
(correlation >= 0.9 after the seams were blended) and the object or cell found is the one the text named.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import sqlite3
from contextlib import closing

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pictor.embedded.render import object_box, render
from pictor.embedded.world import Background, Scene, SceneObject
from pictor.engine.embedded_scene import EmbeddedSceneReader
from pictor.engine.scene import NO_UNDERSTANDING
from pictor.service.composition import compose, composition_phrase, find_target, fit_box, wants_composition
from pictor.service.errors import InvalidRequest
from pictor.service.masks import blend_band, keep_outside_mask

from .helpers import alpha_mask, decode, png_bytes

BLUE_SQUARE = SceneObject("square", "blue", "large", (1, 1))
RED_CIRCLE = SceneObject("circle", "red", "medium", (0, 2))
SCENE = Scene((BLUE_SQUARE, RED_CIRCLE), Background(("white",)))
READER = EmbeddedSceneReader()


def canvas(side: int = 256) -> Image.Image:
    return Image.fromarray(render(SCENE, side).image)


def logo(width: int = 48, height: int = 32) -> Image.Image:
    """A reference with structure (so that correlation means something): a purple disc and a black bar on yellow."""
    image = Image.new("RGB", (width, height), (250, 214, 40))
    draw = ImageDraw.Draw(image)
    draw.ellipse((width * 0.15, height * 0.15, width * 0.55, height * 0.85), fill=(128, 56, 190))
    draw.rectangle((width * 0.62, height * 0.3, width * 0.88, height * 0.7), fill=(20, 20, 20))
    return image


def correlation(result: Image.Image, reference: Image.Image, box) -> float:
    x0, y0, x1, y1 = box
    region = np.asarray(result.convert("RGB"))[y0:y1, x0:x1].astype(np.float64).ravel()
    expected = np.asarray(reference.convert("RGB").resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS))
    return float(np.corrcoef(region, expected.astype(np.float64).ravel())[0, 1])


def inside(box, outer) -> bool:
    return outer[0] <= box[0] and outer[1] <= box[1] and box[2] <= outer[2] and box[3] <= outer[3]


# ---- the rules, without a server ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "where"), [
    ("put this logo on the blue square", "the blue square"),
    ("place image 2 in the top left", "the top left"),
    ("please paste it onto the red circle", "the red circle"),
    ("put the logo on top of the square", "the square"),
    ("insert this at 10,10,60,60", "10,10,60,60"),
])
def test_composition_texts(text, where):
    assert composition_phrase(text, READER)[1] == where
    assert composition_phrase(text)[1] == where  # the same for a model without a reader


@pytest.mark.parametrize("text", [
    "put a red star in the top left", "place the circle on the right", "add a small star in the top left",
    "make the circle green", "add a blue heart", "a logo on a blue square",
])
def test_world_edits_and_descriptions_are_not_compositions(text):
    assert not wants_composition(text, READER)


@pytest.mark.parametrize(("text", "where"), [
    ("put the star logo in the top left", "the top left"),
    ("put the heart sticker on the left", "the left"),
    ("place my circle badge at 5,5,40,40", "5,5,40,40"),
])
def test_a_reference_named_with_a_word_the_model_draws_is_still_placed(text, where):
    """The thing placed is a composition unless the model draws it from words alone: "star logo" is no star."""
    assert composition_phrase(text, READER)[1] == where
    target = find_target(canvas(), where, reader=READER)
    assert target.kind in ("cell", "box")


def test_the_named_object_is_found():
    target = find_target(canvas(), "the blue square", reader=READER)
    assert target.kind == "object" and target.label.startswith("blue square")
    x0, y0, x1, y1 = object_box(BLUE_SQUARE, 256, 256)
    assert abs(target.box[0] - x0) <= 3 and abs(target.box[1] - y0) <= 3
    assert abs(target.box[2] - x1) <= 3 and abs(target.box[3] - y1) <= 3
    assert find_target(canvas(), "the red circle", reader=READER).label.startswith("red circle")


def test_a_position_word_names_a_cell_and_a_mask_or_box_wins():
    assert find_target(canvas(), "the top left").kind == "cell"
    assert inside(find_target(canvas(), "the top left").box, (0, 0, 86, 86))
    assert inside(find_target(canvas(), "the bottom right").box, (170, 170, 256, 256))
    assert find_target(canvas(), "at 10,20,60,70").box == (10, 20, 60, 70)
    mask = Image.new("L", (256, 256), 0)
    mask.paste(255, (100, 10, 150, 40))
    assert find_target(canvas(), "the blue square", mask).box == (100, 10, 150, 40)


@pytest.mark.parametrize("where", ["the green star", "the blue circle", "somewhere nice"])
def test_a_target_that_is_not_there_is_a_400(where):
    with pytest.raises(InvalidRequest) as error:
        find_target(canvas(), where, reader=READER)
    assert error.value.code == "target_not_found"


def test_the_reference_keeps_its_aspect_and_is_centred():
    assert fit_box((48, 32), (0, 0, 90, 90)) == (0, 15, 90, 75)
    assert fit_box((10, 40), (10, 10, 50, 50)) == (25, 10, 35, 50)


def test_compose_pastes_the_reference_and_rings_the_seam_only():
    source = canvas()
    made = compose(source, logo(), "put this logo on the blue square", reader=READER)
    x0, y0, x1, y1 = made.placed
    ring = np.asarray(made.ring) > 0
    assert ring.any() and not ring[y0 + 2:y1 - 2, x0 + 2:x1 - 2].any()  # the reference's interior is kept
    assert correlation(made.canvas, logo(), made.placed) > 0.99
    away = np.ones((256, 256), dtype=bool)
    away[y0 - 8:y1 + 8, x0 - 8:x1 + 8] = False
    assert np.array_equal(np.asarray(made.canvas)[away], np.asarray(source)[away])


def test_compose_under_a_mask_changes_nothing_outside_it():
    source = canvas()
    mask = Image.new("L", (256, 256), 0)
    mask.paste(255, (20, 20, 120, 60))
    made = compose(source, logo(), "put this logo here", mask)
    outside = np.asarray(mask) == 0
    assert np.array_equal(np.asarray(made.canvas)[outside], np.asarray(source)[outside])
    assert not (np.asarray(made.ring) > 0)[outside].any()


def test_edit_region_covers_the_named_object_and_where_it_goes():
    region = np.asarray(READER.edit_region(canvas(), "move the blue square to the bottom left")) > 0
    assert region[128, 128] and region[213, 43]  # where it is, where it goes
    assert not region[43, 213] and not region[10, 128]  # the red circle and the background stay
    assert READER.edit_region(canvas(), "make the background green") is None
    assert READER.edit_region(canvas(), "make the green star red") is None
    assert NO_UNDERSTANDING.edit_region(canvas(), "move the blue square to the bottom left") is None


def test_blend_band_weights():
    editable = Image.new("L", (40, 40), 0)
    editable.paste(255, (10, 10, 30, 30))
    assert blend_band(editable, 0) is editable
    soft = np.asarray(blend_band(editable, 3))
    assert (soft[np.asarray(editable) == 0] == 0).all()
    assert soft[10, 20] == 64 and soft[11, 20] == 128 and soft[12, 20] == 191  # 1/4, 2/4, 3/4 of the way in
    assert soft[13, 20] == 255 and (soft[14:26, 14:26] == 255).all()


def test_keep_outside_mask_mixes_in_the_band_only():
    source = Image.new("RGB", (40, 40), (0, 0, 0))
    made = Image.new("RGB", (40, 40), (200, 100, 40))
    editable = Image.new("L", (40, 40), 0)
    editable.paste(255, (10, 10, 30, 30))
    hard = np.asarray(keep_outside_mask(made, source, editable))
    assert (hard[10:30, 10:30] == (200, 100, 40)).all() and (hard[:10] == 0).all()
    soft = np.asarray(keep_outside_mask(made, source, blend_band(editable, 3)))
    assert (soft[:10] == 0).all() and (soft[:, :10] == 0).all()
    assert tuple(soft[10, 20]) == (50, 25, 10) and tuple(soft[11, 20]) == (100, 50, 20)
    assert (soft[13:27, 13:27] == (200, 100, 40)).all()


# ---- ImageService in-process: the blend band as a setting -------------------------------------------------------


def _components(folder, **settings):
    from pictor.api.dependencies import Components
    from pictor.config import Settings

    return Components.build(Settings(data_dir=folder, keyless=True, device="cpu", **settings))


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    built = _components(tmp_path_factory.mktemp("composition"))
    yield built
    built.close()


@pytest.fixture(scope="module")
def blended(tmp_path_factory):
    """Built from settings with a 3 px band, as `PICTOR_MASK_BLEND_PX=3` would."""
    built = _components(tmp_path_factory.mktemp("blended"), mask_blend_px=3)
    yield built
    built.close()


def _masked_edit(parts, source: Image.Image, mask: Image.Image) -> Image.Image:
    from pictor.core import ImageJob, JobKind

    principal = parts.keyless_principal
    job = ImageJob(kind=JobKind.EDIT, prompt="add a blue heart", images=(png_bytes(source),),
                   mask=png_bytes(mask), seed=11, quality="low", tenant_id=principal.tenant_id)
    result = asyncio.run(parts.service.run(job, principal))
    return Image.open(io.BytesIO(result.images[0].artifact.data)).convert("RGB")


def test_the_blend_band_through_the_service(parts, blended):
    from .helpers import scene

    source = scene(64, 64, seed=3)  # under the watermark's minimum size: the model's pixels as they are
    box = (16, 16, 48, 48)
    mask = alpha_mask(64, 64, box)
    hard = np.asarray(_masked_edit(parts, source, mask)).astype(int)
    soft = np.asarray(_masked_edit(blended, source, mask)).astype(int)
    original = np.asarray(source).astype(int)
    keep = np.asarray(mask.getchannel("A")) == 255
    assert np.array_equal(hard[keep], original[keep]) and np.array_equal(soft[keep], original[keep])
    interior = np.zeros((64, 64), dtype=bool)
    interior[19:45, 19:45] = True
    assert np.array_equal(soft[interior], hard[interior])  # pure model output (same seed, same model pixels)
    band = ~keep & ~interior
    differ = band & (np.abs(hard - original).max(-1) > 30)
    assert differ.sum() > 20
    lower, upper = np.minimum(hard, original), np.maximum(hard, original)
    assert ((soft >= lower) & (soft <= upper)).all(-1)[band].all()  # a mix of the two
    assert (np.abs(soft - hard).max(-1)[differ] > 3).all() and (np.abs(soft - original).max(-1)[differ] > 3).all()


# ---- the live server -------------------------------------------------------------------------------------------


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def image_params(server, image_id: str) -> dict:
    with closing(sqlite3.connect(server.data_dir / "pictor.db")) as connection:
        (text,) = connection.execute("SELECT params FROM images WHERE id = ?", (image_id,)).fetchone()
    return json.loads(text) if isinstance(text, str) else text


def parents(http, image_id: str) -> list[str]:
    lineage = http.get(f"/v1/images/{image_id}/lineage").json()
    return [edge["parent"] for edge in lineage["edges"] if edge["child"] == image_id]


def test_edits_with_two_images_put_the_reference_on_the_named_object(server, http):
    source, reference = canvas(), logo()
    files = [("image[]", ("canvas.png", png_bytes(source), "image/png")),
             ("image[]", ("logo.png", png_bytes(reference), "image/png"))]
    response = http.post("/v1/images/edits", files=files,
                         data={"prompt": "put this logo on the blue square", "quality": "low", "seed": "4"})
    assert response.status_code == 200, response.text
    item = response.json()["data"][0]
    result = decode(item["b64_json"]).convert("RGB")
    assert result.size == (256, 256)
    params = image_params(server, item["id"])["composition"]
    assert params["target"]["kind"] == "object" and params["target"]["label"].startswith("blue square")
    assert inside(params["placed_box"], params["target"]["box"])
    blue = object_box(BLUE_SQUARE, 256, 256)
    assert all(abs(a - b) <= 3 for a, b in zip(params["target"]["box"], blue))
    assert correlation(result, reference, params["placed_box"]) >= 0.9
    assert params["reference_image_id"] in parents(http, item["id"])
    assert len(parents(http, item["id"])) == 2
    # Far from the placed reference, the input's own pixels.
    x0, y0, x1, y1 = params["placed_box"]
    away = np.ones((256, 256), dtype=bool)
    away[y0 - 12:y1 + 12, x0 - 12:x1 + 12] = False
    assert np.abs(np.asarray(result).astype(int) - np.asarray(source).astype(int))[away].max() <= 4  # watermark


def test_edits_with_two_images_and_an_unknown_target_are_refused(server, http):
    before = server.state()
    files = [("image[]", ("canvas.png", png_bytes(canvas(64)), "image/png")),
             ("image[]", ("logo.png", png_bytes(logo()), "image/png"))]
    response = http.post("/v1/images/edits", files=files, data={"prompt": "put this logo on the green star"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "target_not_found"
    assert server.state() == before


def test_a_session_turn_puts_the_named_logo_on_the_blue_square(server, http):
    session = http.post("/v1/sessions", json={"quality": "low"}).json()["id"]
    response = http.post(f"/v1/sessions/{session}/turns", json={
        "text": "put the logo on the blue square", "seed": 2,
        "images": [data_url(png_bytes(canvas())), data_url(png_bytes(logo(40, 40)))],
        "image_names": [None, "logo"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["action"] == "edit" and len(body["inputs"]) == 2
    logo_id = next(upload["image_id"] for upload in body["uploads"] if upload["name"] == "logo")
    assert body["inputs"][1] == logo_id
    params = image_params(server, body["image"]["id"])["composition"]
    assert params["reference_image_id"] == logo_id and params["target"]["label"].startswith("blue square")
    result = decode(body["image"]["b64_json"])
    assert correlation(result, logo(40, 40), params["placed_box"]) >= 0.9


def test_a_session_turn_places_image_1_in_the_top_left_of_the_current_image(server, http):
    session = http.post("/v1/sessions", json={"size": "64x64", "quality": "low"}).json()["id"]
    first = http.post(f"/v1/sessions/{session}/turns", json={"text": "a yellow star", "seed": 1}).json()
    second = http.post(f"/v1/sessions/{session}/turns",
                       json={"text": "a blue heart on a white background", "seed": 2, "action": "generate"}).json()
    response = http.post(f"/v1/sessions/{session}/turns", json={"text": "place image 1 in the top left", "seed": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["inputs"] == [second["image"]["id"], first["image"]["id"]] and body["parent"] == second["id"]
    params = image_params(server, body["image"]["id"])["composition"]
    assert params["target"] == {"kind": "cell", "box": params["target"]["box"], "label": "top left"}
    assert inside(params["placed_box"], (0, 0, 22, 22))
    assert params["reference_image_id"] == first["image"]["id"]
    reference = decode(first["image"]["b64_json"])
    assert correlation(decode(body["image"]["b64_json"]), reference, params["placed_box"]) >= 0.9
    assert set(parents(http, body["image"]["id"])) == {first["image"]["id"], second["image"]["id"]}
