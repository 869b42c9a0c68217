"""A real `pictor serve` whose blobs are in S3 (PICTOR_BLOB_URL, a real SeaweedFS on loopback): what it makes and
what it is sent are stored in the bucket under their digests and nothing in the data folder; `url` answers are
Pictor's signed links, or with PICTOR_BLOB_PRESIGNED_URLS the bucket's own presigned links."""

from __future__ import annotations

import base64
import io
import json
import time
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from api.helpers import Server, alpha_mask, png_bytes, scene_png, start_server
from seaweedfs_server import SeaweedServer

from pictor.core import sha256_hex

LIFETIME_S = 600  # not the default, so that the presigned links' lifetime is seen to come from url_lifetime_s


@pytest.fixture(scope="module")
def prefix() -> str:
    return f"api-{uuid.uuid4().hex[:12]}"


def _serve(tmp_path_factory: pytest.TempPathFactory, seaweedfs: SeaweedServer, prefix: str,
           **settings: str) -> Iterator[Server]:
    environment = {**seaweedfs.environment, "PICTOR_BLOB_URL": f"s3://{seaweedfs.bucket}/{prefix}",
                   "PICTOR_URL_LIFETIME_S": str(LIFETIME_S), **settings}
    server = start_server(tmp_path_factory.mktemp("s3-server"), extra_env=environment)
    yield server
    server.stop()
    assert "Traceback" not in server.log(), server.log()


@pytest.fixture(scope="module")
def served(tmp_path_factory, seaweedfs: SeaweedServer, prefix: str) -> Iterator[Server]:
    """Pictor on the bucket, serving `url` answers itself."""
    yield from _serve(tmp_path_factory, seaweedfs, prefix)


@pytest.fixture(scope="module")
def presigning(tmp_path_factory, seaweedfs: SeaweedServer, prefix: str) -> Iterator[Server]:
    """A second Pictor on the same bucket and prefix, answering `url` with the bucket's presigned links."""
    yield from _serve(tmp_path_factory, seaweedfs, prefix, PICTOR_BLOB_PRESIGNED_URLS="true")


def in_bucket(seaweedfs: SeaweedServer, prefix: str, data: bytes) -> bool:
    """Whether the bucket holds exactly these bytes under their digest (read with the test's own client)."""
    digest = sha256_hex(data)
    if f"{prefix}/{digest}" not in seaweedfs.keys(prefix):
        return False
    return seaweedfs.client().get_object(Bucket=seaweedfs.bucket, Key=f"{prefix}/{digest}")["Body"].read() == data


def authorised(server: Server) -> dict[str, str]:
    return {"authorization": f"Bearer {server.demo_key}"}


def content(server: Server, image_id: str) -> bytes:
    answer = httpx.get(f"{server.api}/images/{image_id}/content", headers=authorised(server), timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.content


def test_generated_and_edited_images_and_the_edits_inputs_are_in_the_bucket(served, seaweedfs, prefix):
    client = served.client()
    made = client.images.generate(prompt="a red circle in the center on a white background", size="64x64",
                                  quality="low")
    made_bytes = base64.b64decode(made.data[0].b64_json)
    assert in_bucket(seaweedfs, prefix, made_bytes)
    assert content(served, made.data[0].id) == made_bytes

    upload, mask = scene_png(64, 64, seed=7), png_bytes(alpha_mask(64, 64, (0, 0, 32, 32)))
    edited = client.images.edit(image=("in.png", upload, "image/png"), mask=("mask.png", mask, "image/png"),
                                prompt="make the background blue", quality="low")
    edited_bytes = base64.b64decode(edited.data[0].b64_json)
    for data in (edited_bytes, upload, mask):
        assert in_bucket(seaweedfs, prefix, data)
    assert content(served, edited.data[0].id) == edited_bytes
    assert served.blob_files() == 0  # nothing went to the data folder


def test_url_answers_are_served_through_pictor(served, seaweedfs, prefix):
    made = served.client().images.generate(prompt="a blue square on the left", size="64x64", quality="low",
                                           response_format="url").data[0]
    assert made.url.startswith(f"{served.api}/images/{made.id}/content?")
    answer = httpx.get(made.url, timeout=30)
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    assert in_bucket(seaweedfs, prefix, answer.content)


def test_presigned_url_answers_are_the_buckets_own_links(presigning, seaweedfs, prefix):
    client = presigning.client()
    made = client.images.generate(prompt="a green triangle at the top", size="64x64", quality="low",
                                  response_format="url").data[0]
    edited = client.images.edit(image=("in.png", scene_png(64, 64, seed=8), "image/png"), quality="low",
                                prompt="make the background yellow", response_format="url").data[0]
    for item in (made, edited):
        link = urlsplit(item.url)
        assert f"{link.scheme}://{link.netloc}" == seaweedfs.endpoint
        assert link.path == f"/{seaweedfs.bucket}/{prefix}/{sha256_hex(content(presigning, item.id))}"
        assert parse_qs(link.query)["X-Amz-Expires"] == [str(LIFETIME_S)]
        answer = httpx.get(item.url, timeout=30)  # no key: the link is the permission
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
        assert answer.content == content(presigning, item.id)
    assert presigning.blob_files() == 0


def test_a_presigned_link_to_a_deleted_image_stops_working(presigning):
    made = presigning.client().images.generate(prompt="a purple heart in the middle", size="64x64", quality="low",
                                               response_format="url").data[0]
    assert httpx.get(made.url, timeout=30).status_code == 200
    deleted = httpx.delete(f"{presigning.api}/images/{made.id}", headers=authorised(presigning), timeout=30)
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert httpx.get(made.url, timeout=30).status_code == 404  # its bytes left the bucket with it


def test_a_sessions_image_links_are_presigned_too(presigning, seaweedfs, prefix):
    headers = authorised(presigning)
    session_id = httpx.post(f"{presigning.api}/sessions", json={"size": "64x64"}, headers=headers,
                            timeout=30).json()["id"]
    made = httpx.post(f"{presigning.api}/sessions/{session_id}/turns", json={"text": "a red circle", "seed": 7},
                      headers=headers, timeout=60)
    assert made.status_code == 200, made.text
    session = httpx.get(f"{presigning.api}/sessions/{session_id}", headers=headers, timeout=30).json()
    image = session["turns"][0]["image"]
    assert image["url"].startswith(f"{seaweedfs.endpoint}/{seaweedfs.bucket}/{prefix}/")
    assert httpx.get(image["url"], timeout=30).content == content(presigning, image["id"])


def test_a_batch_files_and_its_url_answers_are_in_the_bucket(presigning, seaweedfs, prefix):
    client = presigning.client()
    requests = json.dumps({"custom_id": "one", "method": "POST", "url": "/v1/images/generations",
                           "body": {"prompt": "a blue circle", "size": "64x64", "quality": "low",
                                    "response_format": "url"}}).encode() + b"\n"
    source = client.files.create(file=("requests.jsonl", io.BytesIO(requests)), purpose="batch")
    assert in_bucket(seaweedfs, prefix, requests)
    batch = client.batches.create(input_file_id=source.id, endpoint="/v1/images/generations",
                                  completion_window="24h")
    deadline = time.monotonic() + 120
    while (batch := client.batches.retrieve(batch.id)).status not in ("completed", "failed", "cancelled"):
        assert time.monotonic() < deadline, batch
        time.sleep(0.25)
    assert batch.status == "completed", batch
    output = client.files.content(batch.output_file_id).content
    item = json.loads(output)["response"]["body"]["data"][0]
    assert item["url"].startswith(f"{seaweedfs.endpoint}/{seaweedfs.bucket}/{prefix}/")
    assert httpx.get(item["url"], timeout=30).content == content(presigning, item["id"])
