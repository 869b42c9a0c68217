"""The Batch API through the official SDK against a live server: files, a batch of small requests with a refusal
and a bad body, the output and error files, cancel, tenants, and a malformed file."""

from __future__ import annotations

import io
import json
import sqlite3
import time
from contextlib import closing

import openai
import pytest

from .helpers import decode

GENERATIONS = "/v1/images/generations"
SMALL = {"size": "64x64", "quality": "low"}
DONE = {"completed", "failed", "cancelled", "expired"}


def jsonl(lines: list[dict]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def line(custom_id: str, body: dict, url: str = GENERATIONS) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def upload(client: openai.OpenAI, lines: list[dict]):
    return client.files.create(file=("requests.jsonl", io.BytesIO(jsonl(lines))), purpose="batch")


def wait_for(client: openai.OpenAI, batch_id: str, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in DONE:
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.25)


def read_jsonl(client: openai.OpenAI, file_id: str | None) -> dict[str, dict]:
    assert file_id is not None
    rows = [json.loads(text) for text in client.files.content(file_id).text.splitlines()]
    return {row["custom_id"]: row for row in rows}


def test_a_batch_runs_every_line_and_reports_each_failure_in_the_error_file(client):
    requests = [line(f"ok-{i}", {"prompt": f"{i + 1} red circles on a blue background", **SMALL, "seed": i})
                for i in range(4)]
    requests += [line("refused", {"prompt": "explicit porn scene in a hotel room", **SMALL}),
                 line("unknown", {"prompt": "a green square", **SMALL, "bogus": 1})]
    source = upload(client, requests)
    assert source.id.startswith("file-") and source.object == "file" and source.purpose == "batch"
    assert source.bytes == len(jsonl(requests)) and source.filename == "requests.jsonl"
    assert client.files.retrieve(source.id).id == source.id

    batch = client.batches.create(input_file_id=source.id, endpoint=GENERATIONS, completion_window="24h",
                                  metadata={"campaign": "spring"})
    assert batch.id.startswith("batch_") and batch.object == "batch" and batch.input_file_id == source.id
    assert batch.status in ("validating", "in_progress") and batch.metadata == {"campaign": "spring"}
    assert batch.request_counts.total == 6 and batch.expires_at > batch.created_at

    done = wait_for(client, batch.id)
    assert done.status == "completed", done
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (6, 4, 2)
    assert done.completed_at >= done.in_progress_at >= done.created_at and done.finalizing_at

    outputs = read_jsonl(client, done.output_file_id)
    assert set(outputs) == {f"ok-{i}" for i in range(4)}
    for custom_id, row in outputs.items():
        assert row["id"].startswith("batch_req_") and row["error"] is None
        response = row["response"]
        assert response["status_code"] == 200 and response["request_id"]
        assert response["body"]["data"][0]["seed"] == int(custom_id.removeprefix("ok-"))
        assert decode(response["body"]["data"][0]["b64_json"]).size == (64, 64)

    errors = read_jsonl(client, done.error_file_id)
    assert set(errors) == {"refused", "unknown"}
    refused = errors["refused"]["response"]
    assert refused["status_code"] == 400 and refused["body"]["error"]["code"] == "moderation_blocked"
    unknown = errors["unknown"]["response"]
    assert unknown["status_code"] == 400 and unknown["body"]["error"]["code"] == "unknown_parameter"
    assert client.files.retrieve(done.output_file_id).purpose == "batch_output"

    listed = [item.id for item in client.batches.list(limit=100)]
    assert batch.id in listed


def test_a_batch_of_two_hundred_images(client):
    """The volume a data team sends: 200 lines in one file, every image made once, each with its own seed and id."""
    requests = [line(f"n-{i:03d}", {"prompt": f"a {colour} {shape} on a white background", **SMALL, "seed": 1000 + i})
                for i, (colour, shape) in enumerate((c, s) for c in ("red", "blue", "green", "purple", "black")
                                                    for s in ("circle", "square", "star", "heart") for _ in range(10))]
    assert len(requests) == 200
    batch = client.batches.create(input_file_id=upload(client, requests).id, endpoint=GENERATIONS,
                                  completion_window="24h")
    done = wait_for(client, batch.id, timeout=600)
    assert done.status == "completed" and done.request_counts.completed == 200 and done.request_counts.failed == 0
    outputs = read_jsonl(client, done.output_file_id)
    assert sorted(outputs) == [f"n-{i:03d}" for i in range(200)]
    images = [row["response"]["body"]["data"][0] for row in outputs.values()]
    assert len({image["id"] for image in images}) == 200
    assert sorted(image["seed"] for image in images) == list(range(1000, 1200))
    assert {decode(image["b64_json"]).size for image in images} == {(64, 64)}


def test_a_batch_can_be_cancelled(client):
    heavy = {"prompt": "three green squares", "size": "1024x1024", "quality": "high"}
    source = upload(client, [line(f"job-{i}", heavy) for i in range(8)])
    batch = client.batches.create(input_file_id=source.id, endpoint=GENERATIONS, completion_window="24h")
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled")
    done = wait_for(client, batch.id)
    assert done.status == "cancelled" and done.cancelled_at and done.cancelling_at
    counts = done.request_counts
    assert counts.total == 8 and counts.completed + counts.failed == 8 and counts.failed >= 1
    errors = read_jsonl(client, done.error_file_id)
    assert any(row["error"] and row["error"]["code"] == "batch_cancelled" for row in errors.values())


def test_files_and_batches_belong_to_their_tenant(server, client):
    source = upload(client, [line("one", {"prompt": "a red circle", **SMALL})])
    batch = client.batches.create(input_file_id=source.id, endpoint=GENERATIONS, completion_window="24h")
    other = server.client(key=server.key_for("batch-other"))
    for call in (lambda: other.files.retrieve(source.id), lambda: other.files.content(source.id),
                 lambda: other.batches.retrieve(batch.id), lambda: other.batches.cancel(batch.id),
                 lambda: other.files.delete(source.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    with pytest.raises(openai.NotFoundError):
        other.batches.create(input_file_id=source.id, endpoint=GENERATIONS, completion_window="24h")
    assert batch.id not in [item.id for item in other.batches.list()]
    assert source.id not in [item.id for item in other.files.list()]
    assert wait_for(client, batch.id).status == "completed"


@pytest.mark.parametrize(("content", "words"), [
    (b'{"custom_id": "a", "method": "POST", "url": "/v1/images/generations", "body": {}}\nnot json\n', "Line 2"),
    (jsonl([line("a", {"prompt": "x"}), line("a", {"prompt": "y"})]), "Line 2"),
    (jsonl([line("a", {"prompt": "x"}, url="/v1/images/edits")]), "Line 1"),
    (jsonl([{"custom_id": "a", "method": "GET", "url": GENERATIONS, "body": {}}]), "Line 1"),
    (jsonl([{"method": "POST", "url": GENERATIONS, "body": {}}]), "custom_id"),
])
def test_a_malformed_file_is_refused(client, content, words):
    source = client.files.create(file=("bad.jsonl", io.BytesIO(content)), purpose="batch")
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(input_file_id=source.id, endpoint=GENERATIONS, completion_window="24h")
    assert words in caught.value.body["message"] and caught.value.body["code"] == "invalid_file"


def test_file_endpoints(client):
    source = upload(client, [line("one", {"prompt": "a red circle", **SMALL})])
    assert source.id in [item.id for item in client.files.list(purpose="batch")]
    assert client.files.content(source.id).content == jsonl([line("one", {"prompt": "a red circle", **SMALL})])
    assert client.files.delete(source.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(source.id)
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("x.jsonl", io.BytesIO(b"{}\n")), purpose="fine-tune")


def test_a_batch_survives_a_restart(tmp_path):
    from .helpers import start_server

    first = start_server(tmp_path)
    try:
        client = first.client()
        source = upload(client, [line(f"r-{i}", {"prompt": "a red circle", **SMALL, "seed": i}) for i in range(3)])
        batch = client.batches.create(input_file_id=source.id, endpoint=GENERATIONS, completion_window="24h")
        wait_for_line_jobs(first, batch.id, 3)
    finally:
        first.process.kill()  # no clean stop
        first.process.wait(timeout=10)
    # As if the kill had come while the lines were being queued: line 0's job exists, but the line does not say so.
    with closing(sqlite3.connect(first.data_dir / "pictor.db")) as db, db:
        db.execute("UPDATE batches SET status = 'validating' WHERE id = ?", (batch.id,))
        db.execute("UPDATE batch_items SET job_id = NULL WHERE batch_id = ? AND line = 0", (batch.id,))
    second = start_server(tmp_path)
    try:
        client = second.client(key=first.demo_key)
        done = wait_for(client, batch.id)
        assert done.status == "completed" and done.request_counts.completed == 3, done
        assert set(read_jsonl(client, done.output_file_id)) == {"r-0", "r-1", "r-2"}
        with closing(sqlite3.connect(second.data_dir / "pictor.db")) as db:  # line 0 was linked, not made again
            jobs = db.execute("SELECT count(*) FROM image_jobs WHERE metadata LIKE ?", (f'%{batch.id}%',)).fetchone()[0]
            images = db.execute("SELECT count(*) FROM images").fetchone()[0]
        assert (jobs, images) == (3, 3)
    finally:
        second.stop()


def wait_for_line_jobs(server, batch_id: str, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with closing(sqlite3.connect(server.data_dir / "pictor.db")) as db:
            linked = db.execute("SELECT count(job_id) FROM batch_items WHERE batch_id = ?", (batch_id,)).fetchone()[0]
        if linked == count:
            return
        assert time.monotonic() < deadline, linked
        time.sleep(0.05)


def test_a_batch_of_variations(client):
    """Variations travel as JSON in a batch line: the image as a data URL, as in an edits line."""
    import base64

    from .helpers import scene_png

    data_url = "data:image/png;base64," + base64.b64encode(scene_png(64, 64, 5)).decode()
    variations = "/v1/images/variations"
    requests = [line(f"v-{i}", {"image": {"image_url": data_url}, **SMALL, "seed": i}, variations) for i in range(3)]
    requests.append(line("no-image", {**SMALL}, variations))
    batch = client.batches.create(input_file_id=upload(client, requests).id, endpoint=variations,
                                  completion_window="24h")
    done = wait_for(client, batch.id)
    assert (done.status, done.request_counts.completed, done.request_counts.failed) == ("completed", 3, 1), done
    outputs = read_jsonl(client, done.output_file_id)
    assert sorted(outputs) == ["v-0", "v-1", "v-2"]
    for custom_id, row in outputs.items():
        made = row["response"]["body"]["data"][0]
        assert made["seed"] == int(custom_id.removeprefix("v-")) and decode(made["b64_json"]).size == (64, 64)
    errors = read_jsonl(client, done.error_file_id)
    assert errors["no-image"]["response"]["body"]["error"]["param"] == "image"


def test_a_line_whose_job_is_cancelled_counts_as_failed(client, http):
    """A batch line is a job like any other: cancelling that job fails the line (counted, and said in the error
    file), while the rest of the batch completes."""
    from pictor.service.batches import line_job_id

    heavy = {"size": "512x512", "quality": "high", "n": 2}
    requests = [line(f"h-{i}", {"prompt": "three blue squares on a white background", **heavy}) for i in range(2)]
    requests.append(line("cancelled", {"prompt": "a red heart", **SMALL}))
    batch = client.batches.create(input_file_id=upload(client, requests).id, endpoint=GENERATIONS,
                                  completion_window="24h")
    job_id = line_job_id(batch.id, 2)
    deadline = time.monotonic() + 60
    while (answer := http.post(f"/v1/jobs/{job_id}/cancel")).status_code == 404:  # not queued yet
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert answer.json()["status"] == "cancelled", answer.text
    done = wait_for(client, batch.id)
    counts = done.request_counts
    assert (done.status, counts.total, counts.completed, counts.failed) == ("completed", 3, 2, 1), done
    errors = read_jsonl(client, done.error_file_id)
    error = errors["cancelled"]["error"]
    assert error["code"] == "request_cancelled" and job_id in error["message"]
    assert sorted(read_jsonl(client, done.output_file_id)) == ["h-0", "h-1"]
