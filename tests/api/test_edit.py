"""POST /v1/images/edits and /v1/images/variations through the official SDK (and the JSON form through httpx)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from .helpers import alpha_mask, decode, pixels, png_bytes, scene, scene_png

INSTRUCTION = "make the background blue"


def test_edit_one_file_as_a_tuple(client):
    result = client.images.edit(image=("in.png", scene_png(64, 64), "image/png"), prompt=INSTRUCTION,
                                quality="low", input_fidelity="high", user="designer-1")
    assert len(result.data) == 1
    image = decode(result.data[0].b64_json)
    assert image.size == (64, 64) and image.format == "PNG"
    assert (result.size, result.quality, result.background, result.output_format) == ("64x64", "low", "opaque", "png")
    usage = result.usage
    assert usage.input_tokens_details.image_tokens > 0 and usage.input_tokens_details.text_tokens > 0


def test_edit_raw_bytes_are_sniffed(client):
    """The SDK sends raw bytes as application/octet-stream with no file name."""
    result = client.images.edit(image=scene_png(96, 64), prompt=INSTRUCTION, quality="low", n=2)
    assert len(result.data) == 2
    assert all(decode(item.b64_json).size == (96, 64) for item in result.data)


def test_edit_jpeg_and_webp_inputs(client):
    for fmt in ("JPEG", "WEBP"):
        buffer = io.BytesIO()
        scene(64, 64).save(buffer, fmt)
        result = client.images.edit(image=buffer.getvalue(), prompt=INSTRUCTION, quality="low",
                                    output_format="webp")
        image = decode(result.data[0].b64_json)
        assert image.format == "WEBP" and image.size == (64, 64)


def test_edit_a_list_of_files_sends_image_array(client, server):
    before_rows, _ = server.state()
    files = [("a.png", scene_png(64, 64, seed=1), "image/png"), ("b.png", scene_png(64, 64, seed=2), "image/png"),
             scene_png(32, 32, seed=3)]
    result = client.images.edit(image=files, prompt=INSTRUCTION, quality="low")
    assert decode(result.data[0].b64_json).size == (64, 64)  # 'auto' is the first image's size
    # Three uploads and one output are recorded (the uploads as the output's parents).
    assert server.image_rows() == before_rows + 4


def test_edit_a_list_of_one(client):
    result = client.images.edit(image=[scene_png(64, 64)], prompt=INSTRUCTION, quality="low", size="128x128")
    assert decode(result.data[0].b64_json).size == (128, 128)
    assert result.size == "128x128"


def test_edit_a_very_wide_input_at_an_explicit_size(client):
    wide = png_bytes(Image.new("RGB", (2000, 16), "red"))
    result = client.images.edit(image=wide, prompt=INSTRUCTION, quality="low", size="64x64")
    assert decode(result.data[0].b64_json).size == (64, 64)


def test_edit_with_image_and_image_array_parts_in_any_order(http):
    files = [("image[]", ("b.png", scene_png(64, 64, seed=2), "image/png")),
             ("image", ("a.png", scene_png(48, 48, seed=1), "image/png"))]
    response = http.post("/v1/images/edits", files=files, data={"prompt": INSTRUCTION, "quality": "low"})
    assert response.status_code == 200, response.text
    assert response.json()["size"] in ("64x64", "48x48")


def _masked_edit(client, source: Image.Image, box, **options):
    mask = alpha_mask(source.width, source.height, box)
    result = client.images.edit(image=("in.png", png_bytes(source), "image/png"), prompt="a green star",
                                mask=("mask.png", png_bytes(mask), "image/png"), quality="low", **options)
    keep = np.asarray(mask.getchannel("A")) == 255
    return result, keep


@pytest.mark.parametrize("size", [(64, 64), (96, 64), (200, 120)])
def test_masked_edit_keeps_every_pixel_outside_the_mask(client, size):
    width, height = size
    source = scene(width, height, seed=5)
    box = (width // 4, height // 4, width // 4 + width // 3, height // 4 + height // 3)
    result, keep = _masked_edit(client, source, box, extra_body={"seed": 21})
    edited = decode(result.data[0].b64_json)
    assert edited.size == source.size and edited.mode == source.mode
    before, after = np.asarray(source), np.asarray(edited)
    assert np.array_equal(before[keep], after[keep]), "a pixel outside the editable area changed"
    assert not np.array_equal(before[~keep], after[~keep]), "nothing changed inside the editable area"


def test_masked_edit_keeps_the_alpha_of_an_rgba_input(client):
    source = scene(64, 64, seed=6).convert("RGBA")
    alpha = np.full((64, 64), 255, dtype=np.uint8)
    alpha[:, :16] = 0
    alpha[:, 16:24] = 128
    source.putalpha(Image.fromarray(alpha, "L"))
    result, keep = _masked_edit(client, source, (32, 32, 60, 60))
    edited = decode(result.data[0].b64_json)
    assert edited.mode == "RGBA"
    assert np.array_equal(np.asarray(source)[keep], np.asarray(edited)[keep])


def test_masked_edit_with_a_transparent_background_keeps_the_pixels_outside(client):
    source = scene(64, 64, seed=7)
    result, keep = _masked_edit(client, source, (8, 8, 40, 40), background="transparent")
    edited = decode(result.data[0].b64_json)
    assert result.background == "transparent" and edited.mode == "RGBA"
    assert np.array_equal(np.asarray(source.convert("RGBA"))[keep], np.asarray(edited)[keep])


def test_masked_edit_is_made_at_the_input_size(client):
    source = scene(64, 64, seed=8)
    result, keep = _masked_edit(client, source, (0, 0, 32, 32), size="128x128")
    edited = decode(result.data[0].b64_json)
    assert edited.size == (64, 64) and result.size == "64x64"
    assert np.array_equal(np.asarray(source)[keep], np.asarray(edited)[keep])


def test_masked_edit_is_deterministic_for_a_seed(client):
    source = scene(64, 64, seed=9)
    first, _ = _masked_edit(client, source, (16, 16, 48, 48), extra_body={"seed": 5})
    again, _ = _masked_edit(client, source, (16, 16, 48, 48), extra_body={"seed": 5})
    assert pixels(first.data[0].b64_json) == pixels(again.data[0].b64_json)
    assert first.data[0].model_extra["seed"] == 5


def _data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def test_edit_json_variant_with_data_urls(http):
    source = scene(64, 64, seed=10)
    mask = alpha_mask(64, 64, (0, 0, 32, 64))
    body = {"prompt": "a yellow heart", "quality": "low", "seed": 8, "n": 2,
            "images": [{"image_url": _data_url(png_bytes(source))}],
            "mask": {"image_url": _data_url(png_bytes(mask))}}
    response = http.post("/v1/images/edits", json=body)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["size"] == "64x64" and len(payload["data"]) == 2
    assert [item["seed"] for item in payload["data"]] == [8, 9]
    keep = np.asarray(mask.getchannel("A")) == 255
    for item in payload["data"]:
        edited = decode(item["b64_json"])
        assert np.array_equal(np.asarray(source)[keep], np.asarray(edited)[keep])


def test_edit_json_variant_with_several_images(http):
    body = {"prompt": INSTRUCTION, "quality": "low", "output_format": "jpeg", "output_compression": 50,
            "images": [{"image_url": _data_url(scene_png(64, 64, seed=s))} for s in range(3)]}
    response = http.post("/v1/images/edits", json=body)
    assert response.status_code == 200, response.text
    assert decode(response.json()["data"][0]["b64_json"]).format == "JPEG"


def test_edit_json_variant_refuses_bad_references(http, server):
    before = server.state()
    cases = [
        ({"images": [{"file_id": "file-123"}]}, "unsupported_reference"),
        ({"images": [{"image_url": "https://example.com/a.png"}]}, "invalid_image_url"),
        ({"images": [{"image_url": "data:image/png;base64,!!!not-base64!!!"}]}, "invalid_image_url"),
        ({"images": [{"image_url": _data_url(b"hello, I am text", "text/plain")}]}, "invalid_image_file"),
        ({"images": []}, "invalid_value"),
    ]
    for extra, code in cases:
        response = http.post("/v1/images/edits", json={"prompt": INSTRUCTION, **extra})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == code, response.text
    assert server.state() == before


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the SDK marks variations deprecated
def test_variation(client):
    source = png_bytes(scene(64, 64, seed=12))
    result = client.images.create_variation(image=("in.png", source, "image/png"), n=2, extra_body={"seed": 40})
    assert len(result.data) == 2
    for item in result.data:
        image = decode(item.b64_json)
        assert image.size == (64, 64) and image.format == "PNG"
    assert [item.model_extra["seed"] for item in result.data] == [40, 41]
    again = client.images.create_variation(image=source, n=1, extra_body={"seed": 40})
    assert pixels(again.data[0].b64_json) == pixels(result.data[0].b64_json)


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the SDK marks variations deprecated
def test_variation_with_size_and_url(client):
    import httpx

    result = client.images.create_variation(image=scene_png(64, 64), size="256x256", response_format="url")
    response = httpx.get(result.data[0].url, timeout=30)
    assert response.status_code == 200
    assert Image.open(io.BytesIO(response.content)).size == (256, 256)


def test_an_instruction_edit_changes_only_the_object_it_names(client):
    """On the embedded model an unmasked "make the circle green" is confined to the circle (found by the judge),
    so everything else keeps the input's own pixels and repeated edits do not drift."""
    from pictor.embedded.render import object_mask, render
    from pictor.embedded.world import Background, Scene, SceneObject

    world = Scene((SceneObject("circle", "red", "large", (0, 0)), SceneObject("square", "blue", "medium", (2, 2))),
                  Background(("white",)))
    source = Image.fromarray(render(world, 64).image)
    result = client.images.edit(image=("scene.png", png_bytes(source), "image/png"), prompt="make the circle green",
                                extra_body={"seed": 3})
    out = np.asarray(decode(result.data[0].b64_json).convert("RGB"))
    near_circle = object_mask(world.objects[0], 64, 64) > 0
    from scipy import ndimage

    untouched = ~ndimage.binary_dilation(near_circle, iterations=3)
    assert np.array_equal(out[untouched], np.asarray(source)[untouched])  # the square and the background
    assert not np.array_equal(out[near_circle], np.asarray(source)[near_circle])  # the circle was edited


def test_an_edit_the_judge_cannot_place_is_the_plain_edit(client):
    source = scene(64, 64, seed=5)  # noise: no object of the world to find
    result = client.images.edit(image=("noise.png", png_bytes(source), "image/png"), prompt="make the circle green",
                                extra_body={"seed": 3})
    out = np.asarray(decode(result.data[0].b64_json).convert("RGB")).astype(int)
    assert (np.abs(out - np.asarray(source).astype(int)).max(-1) > 0).mean() > 0.5  # remade as a whole
