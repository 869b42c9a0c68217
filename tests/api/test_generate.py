"""POST /v1/images/generations through the official SDK: sizes, formats, alpha, urls, seeds, concurrency."""

from __future__ import annotations

import asyncio
import base64
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import numpy as np
import pytest

from .helpers import decode, pixels

PROMPT = "a red circle in the center on a white background"


def test_two_images_with_resolved_fields_and_usage(client):
    result = client.images.generate(prompt=PROMPT, n=2, size="64x64", quality="low")
    assert len(result.data) == 2
    for item in result.data:
        image = decode(item.b64_json)
        assert image.format == "PNG" and image.size == (64, 64) and image.mode == "RGB"
        assert item.url is None
    ids = [item.model_extra["id"] for item in result.data]
    assert len(set(ids)) == 2 and all(i.startswith("img_") for i in ids)
    # Top-level fields carry the resolved values, never "auto".
    assert (result.size, result.quality, result.background, result.output_format) == ("64x64", "low", "opaque", "png")
    assert result.created > 0
    usage = result.usage
    assert usage.input_tokens == usage.input_tokens_details.text_tokens + usage.input_tokens_details.image_tokens
    assert usage.input_tokens_details.text_tokens > 0 and usage.input_tokens_details.image_tokens == 0
    assert usage.output_tokens == usage.output_tokens_details.image_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


def test_defaults_resolve_auto(client):
    result = client.images.generate(prompt=PROMPT, quality="low")
    assert (result.size, result.quality, result.background, result.output_format) == \
        ("1024x1024", "low", "opaque", "png")
    assert decode(result.data[0].b64_json).size == (1024, 1024)
    auto_quality = client.images.generate(prompt=PROMPT, size="64x64", quality="auto", background="auto")
    assert (auto_quality.quality, auto_quality.background) == ("medium", "opaque")


@pytest.mark.parametrize("size, expected", [("auto", (1024, 1024)), ("1536x1024", (1536, 1024)),
                                            ("256x256", (256, 256)), ("1024x1536", (1024, 1536)),
                                            ("96x160", (96, 160))])
def test_sizes(client, size, expected):
    result = client.images.generate(prompt=PROMPT, size=size, quality="low")
    assert decode(result.data[0].b64_json).size == expected
    assert result.size == f"{expected[0]}x{expected[1]}"


@pytest.mark.parametrize("output_format, pillow_format", [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
def test_output_formats_are_real(client, output_format, pillow_format):
    result = client.images.generate(prompt=PROMPT, size="128x128", quality="low", output_format=output_format)
    assert result.output_format == output_format
    image = decode(result.data[0].b64_json)
    assert image.format == pillow_format and image.size == (128, 128)


def test_output_compression_changes_jpeg_size(client):
    sizes = {}
    for compression in (10, 95):
        result = client.images.generate(prompt=PROMPT, size="256x256", quality="low", output_format="jpeg",
                                        output_compression=compression, extra_body={"seed": 3})
        data = base64.b64decode(result.data[0].b64_json)
        assert decode(result.data[0].b64_json).format == "JPEG"
        sizes[compression] = len(data)
    assert sizes[10] < sizes[95]


def test_output_compression_changes_webp_size(client):
    sizes = {}
    for compression in (10, 100):  # 100 is lossless WebP
        result = client.images.generate(prompt=PROMPT, size="128x128", quality="low", output_format="webp",
                                        output_compression=compression, extra_body={"seed": 3})
        sizes[compression] = len(base64.b64decode(result.data[0].b64_json))
    assert sizes[10] < sizes[100]


@pytest.mark.parametrize("output_format", ["png", "webp"])
def test_transparent_background_has_real_alpha(client, output_format):
    result = client.images.generate(prompt="a big blue square in the center on a white background", size="128x128",
                                    quality="low", background="transparent", output_format=output_format,
                                    extra_body={"seed": 11})
    assert result.background == "transparent"
    image = decode(result.data[0].b64_json)
    assert image.mode == "RGBA" and image.format == output_format.upper()
    alpha = np.asarray(image.getchannel("A"))
    assert (alpha < 255).any(), "no transparent pixel"
    assert (alpha == 255).any(), "no opaque pixel"


def test_opaque_background_is_opaque(client):
    result = client.images.generate(prompt=PROMPT, size="64x64", quality="low", background="opaque")
    assert result.background == "opaque"
    assert decode(result.data[0].b64_json).mode == "RGB"


def test_seed_is_echoed_and_reproduces_the_bytes(client):
    first = client.images.generate(prompt=PROMPT, n=2, size="64x64", quality="low", extra_body={"seed": 1234})
    again = client.images.generate(prompt=PROMPT, n=2, size="64x64", quality="low", extra_body={"seed": 1234})
    seeds = [item.model_extra["seed"] for item in first.data]
    assert seeds[0] == 1234 and len(set(seeds)) == 2
    assert [item.model_extra["seed"] for item in again.data] == seeds
    assert [pixels(item.b64_json) for item in first.data] == [pixels(item.b64_json) for item in again.data]
    # Each item's seed alone reproduces that item, so any one result can be remade.
    second = client.images.generate(prompt=PROMPT, size="64x64", quality="low", extra_body={"seed": seeds[1]})
    assert pixels(second.data[0].b64_json) == pixels(first.data[1].b64_json)
    # Another seed, another image, where the prompt leaves room (colour, size and place of the circle are free).
    free = "a circle on a white background"
    one = client.images.generate(prompt=free, size="64x64", quality="low", extra_body={"seed": 98})
    other = client.images.generate(prompt=free, size="64x64", quality="low", extra_body={"seed": 99})
    assert pixels(other.data[0].b64_json) != pixels(one.data[0].b64_json)


@pytest.mark.parametrize("size", ["64x64", "1024x1024"])
def test_each_seed_reproduces_its_image_alone(server, client, size):
    """A seed echoed back reproduces exactly that image, whatever else shared the model's batch (the model's pixels;
    at 1024 px each image also carries a watermark naming it)."""
    batch = client.images.generate(prompt=PROMPT, n=4, size=size, quality="low", extra_body={"seed": 42})
    for item in batch.data:
        alone = client.images.generate(prompt=PROMPT, size=size, quality="low",
                                       extra_body={"seed": item.model_extra["seed"]})
        assert server.model_output_hash(alone.data[0].model_extra["id"]) == \
            server.model_output_hash(item.model_extra["id"]), item.model_extra["seed"]


def test_without_a_seed_one_is_chosen_and_reported(client):
    result = client.images.generate(prompt=PROMPT, size="64x64", quality="low")
    seed = result.data[0].model_extra["seed"]
    assert isinstance(seed, int) and seed >= 0
    again = client.images.generate(prompt=PROMPT, size="64x64", quality="low", extra_body={"seed": seed})
    assert pixels(again.data[0].b64_json) == pixels(result.data[0].b64_json)


def test_upstream_model_names_and_legacy_values_are_accepted(client):
    result = client.images.generate(prompt=PROMPT, model="gpt-image-1", size="64x64", quality="standard",
                                    user="end-user-7", moderation="low")
    assert result.quality == "medium"
    result = client.images.generate(prompt=PROMPT, model="pictor-embedded", size="64x64", quality="hd",
                                    style="vivid")
    assert result.quality == "high"


def test_url_response_is_a_working_link(server, client):
    result = client.images.generate(prompt=PROMPT, n=2, size="64x64", quality="low", response_format="url")
    for item in result.data:
        assert item.b64_json is None and item.url.startswith(server.url)
        response = httpx.get(item.url, timeout=30)  # no API key: the link itself is the credential
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        image = decode(base64.b64encode(response.content).decode())
        assert image.size == (64, 64)


def test_url_for_jpeg_serves_jpeg(client):
    result = client.images.generate(prompt=PROMPT, size="64x64", quality="low", response_format="url",
                                    output_format="jpeg")
    response = httpx.get(result.data[0].url, timeout=30)
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert response.content[:3] == b"\xff\xd8\xff"


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_tampered_links_are_refused(server, client):
    url = client.images.generate(prompt=PROMPT, size="64x64", quality="low", response_format="url").data[0].url
    query = dict(parse_qsl(urlsplit(url).query))
    flipped = query["signature"][:-1] + ("0" if query["signature"][-1] != "0" else "1")
    other_image = client.images.generate(prompt=PROMPT, size="64x64", quality="low").data[0].model_extra["id"]
    tampered = [
        _with_query(url, signature=flipped),
        _with_query(url, expires=str(int(query["expires"]) + 1000)),
        _with_query(url, expires="not-a-number"),
        _with_query(url, tenant="ten_0000000000000000"),
        url.replace(urlsplit(url).path, f"/v1/images/{other_image}/content"),
    ]
    for link in tampered:
        response = httpx.get(link, timeout=30)
        assert response.status_code == 403, (link, response.text)
        assert response.json()["error"]["code"] == "invalid_signature"
    # Without a signature the content route wants an API key.
    unsigned = urlunsplit(urlsplit(url)._replace(query=""))
    assert httpx.get(unsigned, timeout=30).status_code == 401
    assert httpx.get(url, timeout=30).status_code == 200


def test_image_content_with_the_api_key(server, client, http):
    result = client.images.generate(prompt=PROMPT, size="64x64", quality="low", output_format="webp")
    image_id = result.data[0].model_extra["id"]
    response = http.get(f"/v1/images/{image_id}/content")
    assert response.status_code == 200 and response.headers["content-type"] == "image/webp"
    assert response.content == base64.b64decode(result.data[0].b64_json)


def test_a_generated_image_is_recorded_once_per_output(server, client):
    before_rows, before_blobs = server.state()
    client.images.generate(prompt=PROMPT, n=2, size="64x64", quality="low", extra_body={"seed": 777001})
    rows, blobs = server.state()
    assert rows == before_rows + 2
    assert blobs == before_blobs + 2


def test_eight_concurrent_requests_with_async_client(server):
    async def main() -> list:
        async with server.async_client() as aclient:
            return await asyncio.gather(*[
                aclient.images.generate(prompt=PROMPT, size="64x64", quality="low", extra_body={"seed": 500 + i})
                for i in range(10)
            ])

    results = asyncio.run(main())
    assert len(results) == 10
    for i, result in enumerate(results):
        assert len(result.data) == 1
        assert result.data[0].model_extra["seed"] == 500 + i
        assert decode(result.data[0].b64_json).size == (64, 64)
    # Batched together or not, each result depends only on its own seed.
    alone = server.client().images.generate(prompt=PROMPT, size="64x64", quality="low", extra_body={"seed": 503})
    assert pixels(alone.data[0].b64_json) == pixels(results[3].data[0].b64_json)


def test_expired_link_is_refused(strict_server):
    """The strict server's links live two seconds."""
    client = strict_server.client(strict_server.new_key("links"))
    url = client.images.generate(prompt=PROMPT, size="64x64", quality="low", response_format="url").data[0].url
    assert httpx.get(url, timeout=30).status_code == 200
    expires = int(dict(parse_qsl(urlsplit(url).query))["expires"])
    time.sleep(max(0.0, expires - time.time()) + 1.1)
    response = httpx.get(url, timeout=30)
    assert response.status_code == 403 and response.json()["error"]["code"] == "invalid_signature"
