"""The Responses API subset through the official SDK: multi-turn image generation and editing over sessions."""

from __future__ import annotations

import base64
import sqlite3
from contextlib import closing

import numpy as np
import openai
import pytest

from .helpers import alpha_mask, decode, png_bytes, scene

TOOL = {"type": "image_generation", "size": "64x64", "quality": "low"}


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def call_of(response):
    """The image_generation_call output item (and a check of the message item next to it)."""
    assert [item.type for item in response.output] == ["image_generation_call", "message"]
    call = response.output[0]
    assert call.status == "completed" and call.id.startswith("ig_")
    assert response.output_text and response.output[1].role == "assistant"
    return call


def parents(http, image_id: str) -> list[str]:
    lineage = http.get(f"/v1/images/{image_id}/lineage").json()
    return [edge["parent"] for edge in lineage["edges"] if edge["child"] == image_id]


def test_three_turns_with_previous_response_id(client, http):
    first = client.responses.create(model="gpt-5", input="a red circle in the center on a white background",
                                    tools=[TOOL], extra_body={"seed": 3})
    call = call_of(first)
    assert first.status == "completed" and first.id.startswith("resp_") and first.previous_response_id is None
    assert (call.action, call.size, call.quality, call.output_format, call.background) == \
        ("generate", "64x64", "low", "png", "opaque")
    assert call.revised_prompt == "a red circle in the center on a white background"
    assert decode(call.result).size == (64, 64)
    assert first.usage.total_tokens == first.usage.input_tokens + first.usage.output_tokens > 0
    first_image = call.model_extra["image_id"]

    second = client.responses.create(model="gpt-5", input="make the circle green", tools=[TOOL],
                                     previous_response_id=first.id, extra_body={"seed": 3})
    assert call_of(second).action == "edit" and second.previous_response_id == first.id
    assert parents(http, call_of(second).model_extra["image_id"]) == [first_image]

    third = client.responses.create(
        model="gpt-5", tools=[TOOL], previous_response_id=second.id, extra_body={"seed": 3},
        input=[{"role": "user", "content": [
            {"type": "input_text", "text": "go back to the first one and make the circle blue"}]}])
    call = call_of(third)
    assert call.action == "edit" and call.revised_prompt == "make the circle blue"
    assert call.model_extra["references"][0]["image_id"] == first_image
    assert parents(http, call.model_extra["image_id"]) == [first_image]

    # The three responses are three turns of one session, chained as previous_response_id says; the third
    # follows the second in the conversation and edits the first image.
    session_id = first.model_extra["session_id"]
    assert second.model_extra["session_id"] == third.model_extra["session_id"] == session_id
    session = http.get(f"/v1/sessions/{session_id}").json()
    turns = session["turns"]
    assert [t["action"] for t in turns] == ["generate", "edit", "edit"]
    assert session["branch"] == [t["id"] for t in turns] and turns[2]["inputs"] == [first_image]

    again = client.responses.retrieve(third.id)
    assert again.id == third.id and call_of(again).result == call.result
    assert again.output_text == third.output_text


def test_streamed_response_through_the_sdk(client):
    first = client.responses.create(model="gpt-5", input="a blue square on a white background", tools=[TOOL])
    # A turn that redraws the whole image (the background), so the model runs several rounds to preview.
    stream = client.responses.create(model="gpt-5", input="make the background yellow", previous_response_id=first.id,
                                     tools=[{**TOOL, "quality": "medium", "partial_images": 2}], stream=True)
    events = list(stream)
    types = [event.type for event in events]
    partials = [event for event in events if event.type == "response.image_generation_call.partial_image"]
    assert types[:5] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.image_generation_call.in_progress", "response.image_generation_call.generating"]
    assert types[5:5 + len(partials)] == ["response.image_generation_call.partial_image"] * len(partials)
    assert types[5 + len(partials):7 + len(partials)] == ["response.image_generation_call.completed",
                                                          "response.output_item.done"]
    assert types[-1] == "response.completed"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert 1 <= len(partials) <= 2 and [p.partial_image_index for p in partials] == list(range(len(partials)))
    for partial in partials:
        assert decode(partial.partial_image_b64).size == (64, 64) and partial.size == "64x64"
    created, done, completed = events[0], events[5 + len(partials) + 1], events[-1]
    assert created.response.status == "in_progress" and created.response.output == []
    call_id = events[2].item.id
    assert {p.item_id for p in partials} == {call_id} and done.item.id == call_id
    assert done.item.type == "image_generation_call" and done.item.action == "edit"
    response = completed.response
    assert response.id == created.response.id and response.status == "completed"
    assert call_of(response).result == done.item.result
    assert client.responses.retrieve(response.id).output[0].result == done.item.result
    # The SDK's stream helper builds the same final response from the events.
    with client.responses.stream(model="gpt-5", input="make the square green", tools=[TOOL],
                                 previous_response_id=response.id) as helper:
        final = helper.get_final_response()
    assert call_of(final).action == "edit" and final.previous_response_id == response.id


def test_input_images_file_ids_and_a_hard_mask(client, http):
    source = scene(64, 64, seed=9)
    mask = alpha_mask(64, 64, (8, 8, 40, 40))
    edited = client.responses.create(
        model="gpt-5", tools=[{**TOOL, "input_image_mask": {"image_url": data_url(png_bytes(mask))}}],
        input=[{"role": "user", "content": [{"type": "input_text", "text": "add a red star"},
                                            {"type": "input_image", "image_url": data_url(png_bytes(source))}]}])
    call = call_of(edited)
    assert call.action == "edit"
    out = np.asarray(decode(call.result).convert("RGB"))
    keep = np.asarray(mask.getchannel("A")) == 255
    assert np.array_equal(out[keep], np.asarray(source)[keep])
    # A Pictor image id as file_id, and an earlier image_generation_call given back as input.
    image_id = call.model_extra["image_id"]
    by_file = client.responses.create(model="gpt-5", tools=[TOOL], input=[{"role": "user", "content": [
        {"type": "input_text", "text": "make the star blue"}, {"type": "input_image", "file_id": image_id}]}])
    assert call_of(by_file).action == "edit" and parents(http, call_of(by_file).model_extra["image_id"]) == [image_id]
    by_call = client.responses.create(model="gpt-5", tools=[TOOL], input=[
        {"type": "image_generation_call", "id": call.id}, {"role": "user", "content": "remove the star"}])
    assert parents(http, call_of(by_call).model_extra["image_id"]) == [image_id]


def test_tool_action_generate_makes_a_new_picture(client):
    first = client.responses.create(model="gpt-5", input="a red circle", tools=[TOOL])
    forced = client.responses.create(model="gpt-5", input="make the circle green", previous_response_id=first.id,
                                     tools=[{**TOOL, "action": "generate"}])
    assert call_of(forced).action == "generate"


def sessions_count(server) -> int:
    with closing(sqlite3.connect(server.data_dir / "pictor.db")) as db:
        return db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]


@pytest.mark.parametrize(("options", "status", "param", "code"), [
    ({"tools": [{"type": "web_search"}]}, 400, "tools[0].type", "unsupported_tool"),
    ({"tools": []}, 400, "tools", "missing_required_parameter"),
    ({"tools": [{**TOOL, "sise": "64x64"}]}, 400, "tools[0].sise", "unknown_parameter"),
    ({"tools": [{**TOOL, "output_format": "gif"}]}, 400, "tools[0].output_format", "invalid_value"),
    ({"tools": [{**TOOL, "size": "7x7"}]}, 400, "tools[0].size", "invalid_size"),
    ({"tools": [{**TOOL, "output_format": "jpeg", "background": "transparent"}]}, 400, "tools[0].background",
     "invalid_value"),
    ({"tools": [TOOL], "previous_response_id": "resp_0123456789abcdef01234567"}, 404, "previous_response_id",
     "not_found"),
    ({"tools": [TOOL], "input": "explicit porn scene in a hotel room"}, 400, None, "moderation_blocked"),
    ({"tools": [TOOL], "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "x"}]}]}, 400,
     "input[0].content[0].type", "invalid_value"),
])
def test_errors_in_the_openai_shape(server, client, options, status, param, code):
    before = server.state(), sessions_count(server)
    with pytest.raises(openai.APIStatusError) as caught:
        client.responses.create(**{"model": "gpt-5", "input": "a red circle", **options})
    error = caught.value.body
    assert caught.value.status_code == status and (error["param"], error["code"]) == (param, code), error
    assert (server.state(), sessions_count(server)) == before  # a refused response leaves nothing behind


def test_responses_belong_to_their_tenant(server, client):
    mine = client.responses.create(model="gpt-5", input="a green triangle", tools=[TOOL])
    other = server.client(server.key_for("responses-other"))
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="gpt-5", input="make it red", tools=[TOOL], previous_response_id=mine.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_0123456789abcdef01234567")
