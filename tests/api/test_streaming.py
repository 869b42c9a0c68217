"""stream=True through the official SDK: partial images, then completed events; SSE framing on the wire."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np

from .helpers import alpha_mask, decode, pixels, png_bytes, scene

PROMPT = "a green triangle in the top left on a white background"


def _check_partials(partials, size: tuple[int, int], asked: int) -> None:
    assert 1 <= len(partials) <= asked  # fewer may arrive when the final image is done first
    assert [event.partial_image_index for event in partials] == list(range(len(partials)))
    for event in partials:
        image = decode(event.b64_json)
        assert image.size == size and image.format == "PNG"


def test_generate_stream_with_partial_images(client):
    stream = client.images.generate(prompt=PROMPT, size="64x64", quality="medium", stream=True, partial_images=2,
                                    extra_body={"seed": 17})
    events = list(stream)
    types = [event.type for event in events]
    assert types[-1] == "image_generation.completed"
    assert set(types[:-1]) == {"image_generation.partial_image"}
    _check_partials(events[:-1], (64, 64), 2)
    completed = events[-1]
    image = decode(completed.b64_json)
    assert image.size == (64, 64) and image.format == "PNG"
    assert (completed.size, completed.quality, completed.background, completed.output_format) == \
        ("64x64", "medium", "opaque", "png")
    assert completed.usage.total_tokens > 0
    assert completed.model_extra["seed"] == 17
    # Previews do not change what is made: the same seed without streaming gives the same pixels.
    plain = client.images.generate(prompt=PROMPT, size="64x64", quality="medium", extra_body={"seed": 17})
    assert pixels(plain.data[0].b64_json) == pixels(completed.b64_json)


def test_generate_stream_without_partials_and_with_n(client):
    events = list(client.images.generate(prompt=PROMPT, size="64x64", quality="low", n=2, stream=True,
                                         output_format="webp", background="transparent"))
    assert [event.type for event in events] == ["image_generation.completed"] * 2
    for event in events:
        image = decode(event.b64_json)
        assert image.format == "WEBP" and image.mode == "RGBA"
        assert event.background == "transparent"


def test_edit_stream_with_partial_images(client):
    source = scene(64, 64, seed=3)
    mask = alpha_mask(64, 64, (16, 16, 48, 48))
    stream = client.images.edit(image=("in.png", png_bytes(source), "image/png"), mask=png_bytes(mask),
                                prompt="a blue heart", quality="medium", stream=True, partial_images=2)
    events = list(stream)
    assert events[-1].type == "image_edit.completed"
    assert {event.type for event in events[:-1]} == {"image_edit.partial_image"}
    _check_partials(events[:-1], (64, 64), 2)
    edited = decode(events[-1].b64_json)
    keep = np.asarray(mask.getchannel("A")) == 255
    assert np.array_equal(np.asarray(source)[keep], np.asarray(edited)[keep])


def test_sse_event_names_match_the_payload_type(http):
    """The SDK needs `event:` == data's `type`; the choice to stream comes from the body, not Accept."""
    body = {"prompt": PROMPT, "size": "64x64", "quality": "low", "stream": True, "partial_images": 1}
    with http.stream("POST", "/v1/images/generations", json=body, headers={"accept": "application/json"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers.get("x-request-id")
        text = response.read().decode()
    frames = [frame for frame in text.split("\n\n") if frame.strip()]
    assert frames
    for frame in frames:
        lines = dict(line.split(": ", 1) for line in frame.splitlines())
        payload = json.loads(lines["data"])
        assert lines["event"] == payload["type"]
        base64.b64decode(payload["b64_json"], validate=True)
    assert json.loads(dict(line.split(": ", 1) for line in frames[-1].splitlines())["data"])["type"] == \
        "image_generation.completed"


def test_multipart_stream_flag_as_a_string(http):
    files = {"image": ("in.png", png_bytes(scene(64, 64)), "image/png")}
    with http.stream("POST", "/v1/images/edits", files=files,
                     data={"prompt": "make it red", "stream": "true", "partial_images": "1", "quality": "low"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    assert "event: image_edit.completed" in text


def test_async_stream(server):
    async def main() -> list:
        async with server.async_client() as aclient:
            stream = await aclient.images.generate(prompt=PROMPT, size="64x64", quality="low", stream=True,
                                                   partial_images=1)
            return [event async for event in stream]

    events = asyncio.run(main())
    assert events[-1].type == "image_generation.completed"
    assert decode(events[-1].b64_json).size == (64, 64)
