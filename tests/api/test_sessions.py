"""Sessions: turns that generate or edit, references resolved against the session, branches, undo, tenants.

The reference rules are tested on their own first (no server), then through /v1/sessions on the live server.
Assertions are about which image a turn started from (inputs, parents, lineage), not about how well the small
embedded model followed the instruction: that is the model's benchmark, not the session's.
"""

from __future__ import annotations

import base64
import sqlite3
from contextlib import closing

import numpy as np
import pytest

from pictor.engine.embedded_scene import EmbeddedSceneReader
from pictor.service.errors import InvalidRequest
from pictor.service.references import Context, GalleryImage, reads_as_instruction, resolve

from .helpers import alpha_mask, decode, png_bytes, scene, scene_png

SIZE = {"size": "64x64", "quality": "low"}

# ---- the rules, without a server ---------------------------------------------------------------------------------

GALLERY = Context(
    images=(GalleryImage("img_1", "a red circle in the center", 1, "turn_1"),
            GalleryImage("img_up", "here is our logo"),
            GalleryImage("img_2", "make the circle green", 2, "turn_2"),
            GalleryImage("img_named", "", name="The Logo"),
            GalleryImage("img_3", "three blue hearts", 3, "turn_3")),
    current="img_3", previous="img_2")


@pytest.mark.parametrize(("text", "rule", "image_id", "prompt"), [
    ("go back to the first one and make the circle blue", "position", "img_1", "make the circle blue"),
    ("make the first one blue", "position", "img_1", "make it blue"),
    ("make the circle in image 2 blue", "position", "img_2", "make the circle blue"),
    ("#2: add a star", "position", "img_2", "add a star"),
    ("start from the original, remove the circle", "position", "img_1", "remove the circle"),
    ("the previous one, but make the background red", "previous", "img_2", "make the background red"),
    ("make the last one bigger", "current", "img_3", "make it bigger"),
    ("make the logo bigger", "name", "img_named", "make the logo bigger"),  # names stay in the prompt
    ("take the red circle one and remove the circle", "caption", "img_1", "remove the circle"),
    ("use the hearts picture, make the background green", "caption", "img_3", "make the background green"),
])
def test_each_rule_picks_its_image_and_cleans_the_prompt(text, rule, image_id, prompt):
    resolution = resolve(text, GALLERY)
    assert [(ref.rule, ref.image_id) for ref in resolution.references] == [(rule, image_id)]
    assert resolution.prompt == prompt


def test_upload_captions_name_uploads_but_world_words_never_switch_images():
    without_named = Context(tuple(i for i in GALLERY.images if i.name is None), "img_3", "img_2")
    assert [r.image_id for r in resolve("put the logo in the top left", without_named).references] == ["img_up"]
    # "the circle" is an object of the current image, not a caption reference to the first one.
    assert resolve("make the circle green", without_named).references == ()
    # Words that match nothing are no reference.
    assert resolve("make the sky orange", without_named).references == ()


def test_the_first_reference_said_is_the_source():
    resolution = resolve("put the logo on image 1", GALLERY)
    assert [ref.image_id for ref in resolution.references] == ["img_named", "img_1"]
    assert resolution.source.image_id == "img_named"


@pytest.mark.parametrize("text", ["image 4: make it red", "make the fifth one red"])
def test_a_position_past_the_end_is_an_error(text):
    with pytest.raises(InvalidRequest) as caught:
        resolve(text, GALLERY)
    assert caught.value.param == "text" and caught.value.code == "reference_not_found"


def test_relative_references_need_a_current_image():
    with pytest.raises(InvalidRequest):
        resolve("make the previous one red", Context())


@pytest.mark.parametrize(("text", "instruction"), [
    ("make the circle green", True), ("add a small star in the top left", True), ("now make it blue", True),
    ("please remove the star", True), ("change the background to blue", True), ("turn everything red", True),
    ("a red circle", False), ("three green hearts on a blue background", False),
    ("make a picture of a red circle", False), ("create a blue square", False), ("", False),
])
def test_what_reads_as_an_instruction(text, instruction):
    assert reads_as_instruction(text, EmbeddedSceneReader()) is instruction
    assert reads_as_instruction(text) is instruction  # the same for a model without a reader


# ---- the API --------------------------------------------------------------------------------------------------


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def new_session(http, **options) -> str:
    response = http.post("/v1/sessions", json={**SIZE, "title": "test", **options})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "session" and body["turns"] == [] and body["current_turn"] is None
    return body["id"]


def turn(http, session_id: str, text: str, **fields) -> dict:
    response = http.post(f"/v1/sessions/{session_id}/turns", json={"text": text, "seed": 7, **fields})
    assert response.status_code == 200, response.text
    return response.json()


def parents(http, image_id: str) -> list[str]:
    lineage = http.get(f"/v1/images/{image_id}/lineage").json()
    return [edge["parent"] for edge in lineage["edges"] if edge["child"] == image_id]


def test_generate_edit_and_go_back_to_the_first_one(http):
    session_id = new_session(http)
    first = turn(http, session_id, "a red circle in the center on a white background")
    assert first["action"] == "generate" and first["index"] == 1 and first["parent"] is None
    image = decode(first["image"]["b64_json"])
    assert image.size == (64, 64) and first["image"]["id"].startswith("img_")
    second = turn(http, session_id, "make the circle green")
    assert second["action"] == "edit" and second["parent"] == first["id"]
    assert second["inputs"] == [first["image"]["id"]] and second["references"] == []
    third = turn(http, session_id, "go back to the first one and make the circle blue")
    assert third["action"] == "edit" and third["prompt"] == "make the circle blue"
    assert third["references"] == [{"phrase": "the first one", "rule": "position", "image_id": first["image"]["id"]}]
    assert third["parent"] == first["id"]  # a branch from the first turn
    assert parents(http, third["image"]["id"]) == [first["image"]["id"]]

    session = http.get(f"/v1/sessions/{session_id}").json()
    turns = {t["id"]: t for t in session["turns"]}
    assert [t["index"] for t in session["turns"]] == [1, 2, 3]
    assert session["current_turn"] == third["id"] and session["branch"] == [first["id"], third["id"]]
    assert turns[first["id"]]["children"] == [second["id"], third["id"]]
    assert [t["branch_tip"] for t in session["turns"]] == [False, True, True]
    assert all(t["image"]["url"].startswith("http") for t in session["turns"])
    assert "b64_json" not in turns[first["id"]]["image"]


def test_undo_moves_the_tip_and_the_next_turn_follows_it(http):
    session_id = new_session(http)
    first = turn(http, session_id, "a blue square on a white background")
    second = turn(http, session_id, "make the square red")
    undone = http.post(f"/v1/sessions/{session_id}/undo").json()
    assert undone["current_turn"] == first["id"] and len(undone["turns"]) == 2  # nothing deleted
    third = turn(http, session_id, "make the square yellow")
    assert third["parent"] == first["id"] and third["inputs"] == [first["image"]["id"]]
    # "the previous one" is the image before the current one on this branch.
    fourth = turn(http, session_id, "the previous one, but add a star")
    assert fourth["inputs"] == [first["image"]["id"]] and fourth["parent"] == first["id"]
    # An explicit parent_turn branches from any earlier turn.
    fifth = turn(http, session_id, "remove the square", parent_turn=second["id"])
    assert fifth["parent"] == second["id"] and fifth["inputs"] == [second["image"]["id"]]
    for _ in range(2):
        http.post(f"/v1/sessions/{session_id}/undo")
    emptied = http.post(f"/v1/sessions/{session_id}/undo").json()
    assert emptied["current_turn"] is None and emptied["branch"] == []
    again = http.post(f"/v1/sessions/{session_id}/undo")
    assert again.status_code == 400 and again.json()["error"]["code"] == "nothing_to_undo"
    # With no current image, an instruction generates.
    assert turn(http, session_id, "make the square green")["action"] == "generate"


def test_actions_override_auto(http):
    session_id = new_session(http)
    refused = http.post(f"/v1/sessions/{session_id}/turns", json={"text": "make the circle green", "action": "edit"})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "action"
    first = turn(http, session_id, "a red circle")
    assert turn(http, session_id, "three green hearts")["action"] == "generate"  # a description: new picture
    forced = turn(http, session_id, "make the circle green", action="generate")
    assert forced["action"] == "generate" and forced["inputs"] == []
    edited = turn(http, session_id, "a purple circle", action="edit", parent_turn=first["id"])
    assert edited["action"] == "edit" and edited["inputs"] == [first["image"]["id"]]


def test_named_uploads_and_stored_images_are_references(http, client):
    session_id = new_session(http)
    logo = scene_png(64, 64, seed=11)
    first = turn(http, session_id, "a red circle on a white background", images=[data_url(logo)],
                 image_names=["the logo"])
    assert first["action"] == "generate"  # a named upload is a reference, not the image to edit
    (upload,) = first["uploads"]
    assert upload["name"] == "the logo" and upload["image_id"].startswith("img_")
    assert http.get(f"/v1/images/{upload['image_id']}/content").content == logo
    edit = turn(http, session_id, "make the logo green")
    assert edit["references"] == [{"phrase": "the logo", "rule": "name", "image_id": upload["image_id"]}]
    assert edit["inputs"] == [upload["image_id"]] and parents(http, edit["image"]["id"]) == [upload["image_id"]]
    # One of the tenant's own images, by id: an unnamed image given with a turn is the one to edit.
    made = client.images.generate(prompt="a blue star", size="64x64", quality="low").data[0].model_extra["id"]
    from_id = turn(http, session_id, "make the star red", images=[{"image_id": made}])
    assert from_id["inputs"] == [made] and from_id["uploads"] == [{"image_id": made, "name": None}]


def test_a_masked_turn_keeps_every_pixel_outside_the_mask(http):
    session_id = new_session(http)
    source = scene(64, 64, seed=5)
    mask = alpha_mask(64, 64, (16, 16, 48, 48))
    edited = turn(http, session_id, "add a blue heart", images=[data_url(png_bytes(source))],
                  mask=data_url(png_bytes(mask)))
    assert edited["action"] == "edit"
    out = np.asarray(decode(edited["image"]["b64_json"]).convert("RGB"))
    keep = np.asarray(mask.getchannel("A")) == 255
    assert np.array_equal(out[keep], np.asarray(source)[keep])


@pytest.mark.parametrize(("fields", "status", "param", "code"), [
    ({"text": "image 5: make it red"}, 400, "text", "reference_not_found"),
    ({"text": "image 1"}, 400, "text", "missing_instruction"),
    ({"text": "make it red", "images": ["data:image/png;base64,AAAA"]}, 400, "images", "invalid_image_file"),
    ({"text": "make it red", "image_names": ["a", "b"]}, 400, "image_names", "invalid_value"),
    ({"text": "make it red", "parent_turn": "turn_nope"}, 404, "parent_turn", "turn_not_found"),
    ({"text": "a red circle", "action": "generate", "mask": "data:image/png;base64,AAAA"}, 400, "mask",
     "invalid_value"),
    ({"text": "make it red", "colour": "red"}, 400, "colour", "unknown_parameter"),
    # ImageJob's own rules name their parameter for a turn too (they were param None, code invalid_value)
    ({"text": "a red circle", "size": "big"}, 400, "size", "invalid_size"),
    ({"text": "a red circle", "output_format": "jpeg", "background": "transparent"}, 400, "background",
     "invalid_value"),
])
def test_bad_turns_are_refused_and_change_nothing(server, http, fields, status, param, code):
    session_id = new_session(http)
    turn(http, session_id, "a red circle")
    before = server.state()
    response = http.post(f"/v1/sessions/{session_id}/turns", json=fields)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (param, code)
    assert server.state() == before
    assert len(http.get(f"/v1/sessions/{session_id}").json()["turns"]) == 1


def test_sessions_belong_to_their_tenant(server, http):
    session_id = new_session(http)
    first = turn(http, session_id, "a red circle")
    other = {"authorization": f"Bearer {server.key_for('sessions-other')}"}
    assert http.get(f"/v1/sessions/{session_id}", headers=other).status_code == 404
    assert http.post(f"/v1/sessions/{session_id}/turns", json={"text": "a red circle"},
                     headers=other).status_code == 404
    assert http.post(f"/v1/sessions/{session_id}/undo", headers=other).status_code == 404
    # Another tenant's image cannot be brought into a session either.
    theirs = new_session_for(http, other)
    stolen = http.post(f"/v1/sessions/{theirs}/turns", headers=other,
                       json={"text": "make it red", "images": [{"image_id": first["image"]["id"]}]})
    assert stolen.status_code == 404


def new_session_for(http, headers: dict) -> str:
    return http.post("/v1/sessions", json=SIZE, headers=headers).json()["id"]


def test_sessions_are_stored_in_the_database(server, http):
    session_id = new_session(http)
    made = turn(http, session_id, "a green triangle")
    with closing(sqlite3.connect(server.data_dir / "pictor.db")) as db:
        tip = db.execute("SELECT tip_turn_id FROM sessions WHERE id = ?", (session_id,)).fetchone()
        rows = db.execute("SELECT id, action, image_id FROM session_turns WHERE session_id = ?",
                          (session_id,)).fetchall()
    assert tip == (made["id"],) and rows == [(made["id"], "generate", made["image"]["id"])]


def test_session_options_are_checked(http):
    assert http.post("/v1/sessions", json={"model": "no-such-model"}).status_code == 404
    bad = http.post("/v1/sessions", json={"size": "7x7"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "size"
    assert http.get("/v1/sessions/sess_nope").status_code == 404


def test_erasing_a_prompt_erases_the_turn_that_said_it(http):
    session_id = new_session(http)
    made = turn(http, session_id, "a purple heart in the top right on a white background")
    assert http.delete(f"/v1/images/{made['image']['id']}/prompt").status_code == 200
    (kept,) = http.get(f"/v1/sessions/{session_id}").json()["turns"]
    assert kept["id"] == made["id"] and kept["text"] == "" and kept["prompt"] == ""
    assert kept["image"]["id"] == made["image"]["id"]  # the image itself stays
