"""Refusals through the official SDK: the right exception class, status, `code` and `param`, in the upstream
error shape, and never any state left behind (no image record, no blob) nor a 500."""

from __future__ import annotations

import base64
import hashlib
import io
import struct
import zlib

import httpx
import openai
import pytest
from PIL import Image

from .helpers import alpha_mask, png_bytes, scene_png

PROMPT = "a red circle"
ANY = object()


def refused(server, call, error_class, status: int, code, param=ANY) -> openai.APIStatusError:
    """Run `call`, expect it to raise `error_class` with this status, code and param, and change nothing."""
    before = server.state()
    with pytest.raises(error_class) as info:
        call()
    error = info.value
    assert error.status_code == status, error.body
    if isinstance(code, tuple):
        assert error.code in code, error.body
    else:
        assert error.code == code, error.body
    if param is not ANY:
        assert error.param == param, error.body
    assert isinstance(error.body, dict) and set(error.body) >= {"message", "type", "param", "code"}
    assert error.body["message"]
    assert error.response.headers.get("x-request-id")
    assert server.state() == before, "a refused request left state behind"
    return error


def png_header_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of width x height, all black: tens of KB on the wire, width*height pixels decoded."""
    row = b"\x00" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    block = row * 500
    parts = [compressor.compress(block) for _ in range(height // 500)]
    parts += [compressor.compress(row * (height % 500)), compressor.flush()]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


# ---- invalid parameters -------------------------------------------------------------------------


@pytest.mark.parametrize("options, code, param", [
    ({"n": 11}, "invalid_value", "n"),
    ({"n": 0}, "invalid_value", "n"),
    ({"size": "100x7"}, "invalid_size", "size"),
    ({"size": "7x100"}, "invalid_size", "size"),
    ({"size": "1000x1000"}, "invalid_size", "size"),  # not a multiple of 16
    ({"size": "4096x1024"}, "invalid_size", "size"),  # ratio over 3:1
    ({"size": "8192x8192"}, "invalid_size", "size"),
    ({"size": "big"}, "invalid_size", "size"),
    ({"size": "64x64\n"}, "invalid_size", "size"),  # a size is the whole string (one parser, core.parse_size)
    ({"quality": "ultra"}, "invalid_value", "quality"),
    ({"output_format": "bmp"}, "invalid_value", "output_format"),  # gif and svg are formats now (issue 11)
    ({"output_format": "png", "output_compression": 50}, "invalid_value", "output_compression"),
    ({"output_format": "jpeg", "output_compression": 101}, "invalid_value", "output_compression"),
    ({"output_format": "jpeg", "background": "transparent"}, "invalid_value", "background"),
    ({"background": "checkered"}, "invalid_value", "background"),
    ({"moderation": "none"}, "invalid_value", "moderation"),
    ({"partial_images": 4}, "invalid_value", "partial_images"),
    ({"response_format": "html"}, "invalid_value", "response_format"),
    ({"extra_body": {"seed": -1}}, "invalid_value", "seed"),
    ({"extra_body": {"seed": "abc"}}, "invalid_value", "seed"),
    ({"extra_body": {"colour": "red"}}, "unknown_parameter", "colour"),
    ({"extra_body": {"n": "two"}}, "invalid_value", "n"),
])
def test_generate_invalid_parameters(server, client, options, code, param):
    error = refused(server, lambda: client.images.generate(prompt=PROMPT, **options), openai.BadRequestError,
                    400, code, param)
    assert error.type == "invalid_request_error"


def test_generate_prompt_limits(server, client):
    refused(server, lambda: client.images.generate(prompt="a" * 32001, size="64x64"), openai.BadRequestError, 400,
            "string_above_max_length", "prompt")
    refused(server, lambda: client.images.generate(prompt="", size="64x64"), openai.BadRequestError, 400,
            "invalid_value", "prompt")
    refused(server, lambda: client.images.edit(image=scene_png(), prompt="a" * 32001), openai.BadRequestError, 400,
            "string_above_max_length", "prompt")
    # Exactly at the limit is fine.
    result = client.images.generate(prompt="red " * 8000, size="64x64", quality="low")
    assert len(result.data) == 1


def test_stream_with_url_is_refused_before_streaming(server, client):
    refused(server, lambda: client.images.generate(prompt=PROMPT, stream=True, response_format="url"),
            openai.BadRequestError, 400, "invalid_value", "response_format")


def test_unknown_model(server, client):
    refused(server, lambda: client.images.generate(prompt=PROMPT, model="no-such-model", size="64x64"),
            openai.NotFoundError, 404, "model_not_found", "model")
    refused(server, lambda: client.images.edit(image=scene_png(), prompt=PROMPT, model="no-such-model"),
            openai.NotFoundError, 404, "model_not_found", "model")
    refused(server, lambda: client.images.generate(prompt=PROMPT, model="no-such-model", size="64x64", stream=True),
            openai.NotFoundError, 404, "model_not_found", "model")
    refused(server, lambda: client.models.retrieve("no-such-model"), openai.NotFoundError, 404, "model_not_found")


def test_malformed_bodies(server, http):
    before = server.state()
    cases = [
        http.post("/v1/images/generations", content=b'{"prompt": "a red', headers={"content-type": "application/json"}),
        http.post("/v1/images/generations", json=["a red circle"]),
        http.post("/v1/images/generations", json={}),
        http.post("/v1/images/edits", content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data"}),
        http.post("/v1/images/edits", content=b"{not json", headers={"content-type": "application/json"}),
        http.post("/v1/images/edits", data={"prompt": PROMPT}),  # no image at all
        http.post("/v1/images/edits", data={"prompt": PROMPT, "image": "not a file"}),
        http.post("/v1/images/edits", files={"image": ("a.png", scene_png(), "image/png")}),  # no prompt
        http.post("/v1/images/edits", files={"image": ("a.png", scene_png(), "image/png")},
                  data={"prompt": PROMPT, "n": "many"}),
        http.post("/v1/images/edits", files={"image": ("a.png", scene_png(), "image/png")},
                  data={"prompt": PROMPT, "stream": "perhaps"}),
        http.post("/v1/images/variations", data={"n": "1"}),
    ]
    for response in cases:
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["message"] and error["code"]
        assert response.headers.get("x-request-id")
    assert server.state() == before


def test_unknown_multipart_field(server, client):
    refused(server, lambda: client.images.edit(image=scene_png(), prompt=PROMPT, extra_body={"strength": "0.5"}),
            openai.BadRequestError, 400, "unknown_parameter", "strength")


# ---- bad files ----------------------------------------------------------------------------------


def _truncated_png() -> bytes:
    data = scene_png(64, 64)
    return data[: len(data) // 2]


def _gif() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, "GIF")
    return buffer.getvalue()


@pytest.mark.parametrize("name, upload, codes", [
    ("truncated png", ("a.png", _truncated_png(), "image/png"), ("invalid_image_file",)),
    ("random bytes", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, ("invalid_image_file",)),
    ("empty file", ("a.png", b"", "image/png"), ("invalid_image_file",)),
    ("text file", ("notes.txt", b"hello, this is not a picture\n" * 10, "text/plain"),
     ("invalid_image_file", "unsupported_file_mimetype")),
    ("text labelled png", ("notes.png", b"hello, this is not a picture\n", "image/png"),
     ("invalid_image_file", "unsupported_file_mimetype")),
    ("gif", ("a.gif", _gif(), "image/gif"), ("unsupported_file_mimetype",)),
    ("bomb 20000x20000", ("bomb.png", png_header_bomb(20000, 20000), "image/png"), ("image_too_large",)),
    ("bomb 5000x5000", ("bomb.png", png_header_bomb(5000, 5000), "image/png"), ("image_too_large",)),
    ("too wide", ("wide.png", png_header_bomb(9000, 16), "image/png"), ("image_too_large",)),
])
def test_edit_bad_image_files(server, client, name, upload, codes):
    refused(server, lambda: client.images.edit(image=upload, prompt=PROMPT, size="64x64"), openai.BadRequestError,
            400, codes, "image")


def test_bad_file_among_several(server, client):
    refused(server, lambda: client.images.edit(image=[scene_png(), _truncated_png()], prompt=PROMPT),
            openai.BadRequestError, 400, "invalid_image_file", "image")


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the SDK marks variations deprecated
def test_variation_bad_image_files(server, client):
    refused(server, lambda: client.images.create_variation(image=("a.png", _truncated_png(), "image/png")),
            openai.BadRequestError, 400, "invalid_image_file", "image")
    refused(server, lambda: client.images.create_variation(image=png_header_bomb(20000, 20000)),
            openai.BadRequestError, 400, "image_too_large", "image")


def test_too_many_images(server, client):
    images = [scene_png(16, 16, seed=i) for i in range(17)]
    refused(server, lambda: client.images.edit(image=images, prompt=PROMPT), openai.BadRequestError, 400,
            ("too_many_images", "invalid_form"), ANY)
    images = [scene_png(16, 16, seed=i) for i in range(20)]
    refused(server, lambda: client.images.edit(image=images, prompt=PROMPT), openai.BadRequestError, 400,
            ("too_many_images", "invalid_form"), ANY)


def _solid_png(width: int, height: int) -> bytes:
    return png_bytes(Image.new("RGB", (width, height), "red"))


@pytest.mark.parametrize("width, height", [(2000, 16), (16, 64), (17, 3), (4200, 2000)])
def test_input_that_sets_an_out_of_bounds_size(server, client, width, height):
    """With size 'auto' (and under a mask) the result is made at the input's size: the size rules apply to it,
    which also keeps a tiny, very wide upload from tying the model up for minutes."""
    image = _solid_png(width, height)
    refused(server, lambda: client.images.edit(image=image, prompt=PROMPT), openai.BadRequestError, 400,
            "invalid_image_dimensions", "image")
    mask = png_bytes(alpha_mask(width, height, (0, 0, 2, 2)))
    refused(server, lambda: client.images.edit(image=image, mask=mask, prompt=PROMPT, size="64x64"),
            openai.BadRequestError, 400, "invalid_image_dimensions", "image")


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")
def test_variation_of_an_out_of_bounds_input(server, client):
    refused(server, lambda: client.images.create_variation(image=_solid_png(2000, 16)), openai.BadRequestError, 400,
            "invalid_image_dimensions", "image")


def test_mask_size_mismatch(server, client):
    mask = png_bytes(alpha_mask(32, 32, (0, 0, 16, 16)))
    refused(server, lambda: client.images.edit(image=scene_png(64, 64), mask=mask, prompt=PROMPT),
            openai.BadRequestError, 400, "invalid_mask_size", "mask")


def test_mask_without_alpha(server, client):
    mask = png_bytes(Image.new("RGB", (64, 64), "white"))
    refused(server, lambda: client.images.edit(image=scene_png(64, 64), mask=mask, prompt=PROMPT),
            openai.BadRequestError, 400, "invalid_mask_format", "mask")
    grey = png_bytes(Image.new("L", (64, 64), 0))
    refused(server, lambda: client.images.edit(image=scene_png(64, 64), mask=grey, prompt=PROMPT),
            openai.BadRequestError, 400, "invalid_mask_format", "mask")


def test_mask_with_nothing_to_edit(server, client):
    mask = png_bytes(Image.new("RGBA", (64, 64), (0, 0, 0, 255)))
    refused(server, lambda: client.images.edit(image=scene_png(64, 64), mask=mask, prompt=PROMPT),
            openai.BadRequestError, 400, "invalid_mask_format", "mask")


def test_bad_mask_files(server, client):
    refused(server, lambda: client.images.edit(image=scene_png(64, 64), mask=_truncated_png(), prompt=PROMPT),
            openai.BadRequestError, 400, "invalid_image_file", "mask")
    refused(server, lambda: client.images.edit(image=scene_png(64, 64), mask=png_header_bomb(20000, 20000),
                                               prompt=PROMPT),
            openai.BadRequestError, 400, "image_too_large", "mask")


def test_two_masks(server, http):
    before = server.state()
    mask = png_bytes(alpha_mask(64, 64, (0, 0, 8, 8)))
    response = http.post("/v1/images/edits", data={"prompt": PROMPT},
                         files=[("image", ("a.png", scene_png(), "image/png")), ("mask", ("m.png", mask, "image/png")),
                                ("mask", ("m.png", mask, "image/png"))])
    assert response.status_code == 400 and response.json()["error"]["param"] == "mask"
    assert server.state() == before


def test_bad_image_in_a_stream_request_is_a_plain_400(server, client):
    refused(server, lambda: client.images.edit(image=_truncated_png(), prompt=PROMPT, stream=True),
            openai.BadRequestError, 400, "invalid_image_file", "image")


# ---- keys and tenants ---------------------------------------------------------------------------


def test_bad_key_and_no_key(server):
    refused(server, lambda: server.client("pk-not-a-real-key").images.generate(prompt=PROMPT, size="64x64"),
            openai.AuthenticationError, 401, "invalid_api_key")
    refused(server, lambda: server.client("sk-some-openai-key").models.list(), openai.AuthenticationError, 401,
            "invalid_api_key")
    for headers in ({}, {"authorization": "Basic dXNlcjpwYXNz"}, {"authorization": "Bearer"},
                    {"authorization": f"Bearer {server.demo_key}x"}, {"authorization": "Bearer pk-"}):
        response = httpx.post(f"{server.api}/images/generations", json={"prompt": PROMPT}, headers=headers,
                              timeout=30)
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "invalid_api_key"
    # Every image route needs a key, and so does the model list.
    for method, path in (("POST", "/images/edits"), ("POST", "/images/variations"), ("GET", "/models"),
                         ("GET", "/images/img_000000000000000000000000/content")):
        assert httpx.request(method, f"{server.api}{path}", timeout=30).status_code == 401


def test_another_tenants_image_is_not_found(server, client):
    made = client.images.generate(prompt=PROMPT, size="64x64", quality="low")
    image_id = made.data[0].model_extra["id"]
    own = httpx.get(f"{server.api}/images/{image_id}/content", headers={"authorization": f"Bearer {server.demo_key}"},
                    timeout=30)
    assert own.status_code == 200
    other = server.client(server.key_for("tenant-b"))
    refused(server, lambda: other.get(f"/images/{image_id}/content", cast_to=object), openai.NotFoundError, 404,
            "not_found")
    refused(server, lambda: client.get("/images/img_ffffffffffffffffffffffff/content", cast_to=object),
            openai.NotFoundError, 404, "not_found")
    # Another tenant's image reads exactly like one that does not exist: nothing tells them apart.
    headers = {"authorization": f"Bearer {server.key_for('tenant-b')}"}
    theirs = httpx.get(f"{server.api}/images/{image_id}/content", headers=headers, timeout=30)
    missing_id = "img_" + "0" * 24
    missing = httpx.get(f"{server.api}/images/{missing_id}/content", headers=headers, timeout=30)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.text.replace(image_id, "ID") == missing.text.replace(missing_id, "ID")


def test_unknown_route_and_method(server, http):
    response = http.get("/v1/nothing-here")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    response = http.get("/v1/images/generations")
    assert response.status_code == 405 and "error" in response.json()


# ---- limits -------------------------------------------------------------------------------------


def test_request_too_large(strict_server):
    client = strict_server.client(strict_server.new_key("big-uploads"))
    big = scene_png(256, 256)  # about 200 KB of noise, over the strict server's 64 KiB
    assert len(big) > 64 * 1024
    error = refused(strict_server, lambda: client.images.edit(image=big, prompt=PROMPT), openai.APIStatusError,
                    413, "request_too_large")
    assert error.response.headers.get("x-request-id")
    # The limit holds for a body sent without a Content-Length (chunked) too.
    before = strict_server.state()

    def chunks():
        for _ in range(20):
            yield b"x" * 10_000

    response = httpx.post(f"{strict_server.api}/images/generations", content=chunks(),
                          headers={"authorization": f"Bearer {strict_server.new_key('chunked')}",
                                   "content-type": "application/json"}, timeout=30)
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "request_too_large"
    assert strict_server.state() == before
    # A small request with the same key still works.
    assert client.images.generate(prompt=PROMPT, size="64x64", quality="low").data


def test_rate_limit(strict_server):
    key = strict_server.new_key("limited")
    client = strict_server.client(key)
    for _ in range(2):
        assert client.images.generate(prompt=PROMPT, size="64x64", quality="low").data
    error = refused(strict_server, lambda: client.images.generate(prompt=PROMPT, size="64x64", quality="low"),
                    openai.RateLimitError, 429, "rate_limit_exceeded")
    assert int(error.response.headers["retry-after"]) >= 1
    assert error.type == "rate_limit_error"
    # The limit is per key: another key of the same tenant, and another tenant, are not limited.
    assert strict_server.client(strict_server.new_key("limited")).models.list().data
    assert strict_server.client(strict_server.new_key("someone-else")).models.list().data


def test_a_server_fault_is_a_counted_500_in_the_error_shape(strict_server):
    """Break one stored blob on purpose (a folder where its file should be) and read it back."""
    client = strict_server.client(strict_server.new_key("fault"))
    made = client.images.generate(prompt=PROMPT, size="64x64", quality="low")
    digest = hashlib.sha256(base64.b64decode(made.data[0].b64_json)).hexdigest()
    blob = strict_server.data_dir / "blobs" / digest[:2] / digest[2:4] / digest
    blob.unlink()
    blob.mkdir()
    with pytest.raises(openai.InternalServerError) as info:
        client.get(f"/images/{made.data[0].model_extra['id']}/content", cast_to=object)
    error = info.value
    assert error.status_code == 500 and error.type == "server_error"
    assert "Traceback" not in error.response.text and digest not in error.response.text
    assert error.response.headers.get("x-request-id")
    metrics = httpx.get(f"{strict_server.url}/metrics", timeout=10).text
    assert any('route="/v1/images/{image_id}/content"' in line and 'status="500"' in line
               for line in metrics.splitlines() if line.startswith("pictor_http_requests_total{"))


def test_nothing_returned_500(server, http):
    metrics = http.get("/metrics").text
    statuses = [line for line in metrics.splitlines() if line.startswith("pictor_http_requests_total{")]
    assert statuses
    assert not [line for line in statuses if 'status="5' in line], statuses
    assert "Traceback" not in server.log()
