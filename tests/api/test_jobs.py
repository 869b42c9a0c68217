"""Async jobs (POST /v1/jobs) against a live server: results, errors, tenants, cancel, events, fairness, and a
kill -9 in the middle of a queue."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import time
from contextlib import closing

import httpx
import pytest

from pictor.service.jobs import INTERRUPTED, MAX_ATTEMPTS, JobRunner
from pictor.storage import Database, LocalBlobStore
from pictor.storage.database import JobStore

from .helpers import decode, run_cli, scene_png, start_server

TERMINAL = {"succeeded", "failed", "cancelled"}
SMALL = {"prompt": "a red circle on a blue background", "size": "64x64", "quality": "low"}
HEAVY = {"prompt": "three green squares", "size": "1024x1024", "quality": "high", "n": 4}


def submit(http: httpx.Client, request: dict, **options) -> dict:
    answer = http.post("/v1/jobs", json={"request": request, **options})
    assert answer.status_code == 202, answer.text
    return answer.json()


def wait_for(http: httpx.Client, job_id: str, statuses=TERMINAL, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def other_tenant(server, name: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {server.key_for(name)}"}, timeout=60)


def test_a_job_returns_what_the_synchronous_endpoint_returns(server, http):
    job = submit(http, {**SMALL, "n": 2, "seed": 7}, metadata={"campaign": "spring"}, priority=3)
    assert job["id"].startswith("job_") and job["object"] == "image.job"
    assert (job["status"], job["progress"], job["priority"], job["endpoint"]) == \
        ("queued", 0, 3, "/v1/images/generations")
    assert isinstance(job["created_at"], int) and job["metadata"] == {"campaign": "spring"}
    done = wait_for(http, job["id"])
    assert done["status"] == "succeeded" and done["progress"] == 1 and done["error"] is None, done
    direct = http.post("/v1/images/generations", json={**SMALL, "n": 2, "seed": 7}).json()
    result = done["result"]
    assert set(result) == set(direct) and set(result["data"][0]) == set(direct["data"][0])
    assert [item["seed"] for item in result["data"]] == [7, 8]
    assert decode(result["data"][0]["b64_json"]).size == (64, 64)
    for made, same in zip(result["data"], direct["data"]):  # the same seed makes the same pixels
        assert server.model_output_hash(made["id"]) == server.model_output_hash(same["id"])


def test_url_results_are_fresh_signed_links(http):
    done = wait_for(http, submit(http, {**SMALL, "response_format": "url"})["id"])
    url = done["result"]["data"][0]["url"]
    assert "b64_json" not in done["result"]["data"][0]
    image = httpx.get(url, timeout=30)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"


@pytest.mark.parametrize("request_body", [{**SMALL, "size": "12x12"}, {**SMALL, "bogus": 1}, {"size": "64x64"},
                                          {**SMALL, "n": 11}, {**SMALL, "output_compression": 50},
                                          {**SMALL, "model": "no-such-model"}])
def test_a_bad_request_is_refused_at_submission_like_the_synchronous_one(server, http, request_body):
    before = http.get("/v1/jobs", params={"limit": 100}).json()["data"]
    refused = http.post("/v1/jobs", json={"request": request_body})
    direct = http.post("/v1/images/generations", json=request_body)
    assert refused.status_code == direct.status_code and refused.status_code in (400, 404)
    assert refused.json() == direct.json()
    assert http.get("/v1/jobs", params={"limit": 100}).json()["data"] == before


def test_the_content_policy_refuses_at_submission(server, http):
    before = server.state()
    refused = http.post("/v1/jobs", json={"request": {**SMALL, "prompt": "explicit porn scene in a hotel room"}})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "moderation_blocked"
    assert server.state() == before


@pytest.mark.parametrize(("body", "param"), [({"request": SMALL, "priority": 10}, "priority"),
                                             ({"request": SMALL, "endpoint": "/v1/images/upscale"}, "endpoint"),
                                             ({"request": SMALL, "endpoint": "/v1/images/variations"}, "image"),
                                             ({"request": {**SMALL, "stream": True}}, "stream"),
                                             ({"request": SMALL, "extra": 1}, "extra"),
                                             ({"request": SMALL, "metadata": {"k": 1}}, "metadata.k")])
def test_the_job_envelope_is_checked(http, body, param):
    refused = http.post("/v1/jobs", json=body)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == param, refused.text


def test_an_edit_job_keeps_its_input_as_a_blob(server, http):
    data_url = "data:image/png;base64," + base64.b64encode(scene_png()).decode()
    job = submit(http, {"prompt": "make the background green", "images": [{"image_url": data_url}],
                        "quality": "low"}, endpoint="/v1/images/edits")
    done = wait_for(http, job["id"])
    assert done["status"] == "succeeded", done
    assert decode(done["result"]["data"][0]["b64_json"]).size == (64, 64)
    with closing(sqlite3.connect(server.data_dir / "pictor.db")) as db:
        stored, hashes = db.execute("SELECT request, input_hashes FROM image_jobs WHERE id = ?",
                                    (job["id"],)).fetchone()
    assert "base64," not in stored and len(json.loads(hashes)) == 1


def test_a_variation_job_makes_variations_of_its_image(server, http):
    data_url = "data:image/png;base64," + base64.b64encode(scene_png(128, 128, 3)).decode()
    job = submit(http, {"image": {"image_url": data_url}, "n": 2, "size": "128x128", "seed": 12},
                 endpoint="/v1/images/variations")
    assert job["endpoint"] == "/v1/images/variations"
    done = wait_for(http, job["id"])
    assert done["status"] == "succeeded", done
    made = done["result"]["data"]
    assert [decode(item["b64_json"]).size for item in made] == [(128, 128)] * 2
    direct = http.post("/v1/images/variations", data={"n": "2", "size": "128x128", "seed": "12"},
                       files={"image": ("in.png", scene_png(128, 128, 3), "image/png")}).json()["data"]
    for from_job, from_route in zip(made, direct):  # the same request, the same model output
        assert server.model_output_hash(from_job["id"]) == server.model_output_hash(from_route["id"])
    lineage = http.get(f"/v1/images/{made[0]['id']}/lineage").json()
    assert [edge["operation"] for edge in lineage["edges"]] == ["variation"], lineage
    assert len(lineage["ancestors"]) == 1
    refused = http.post("/v1/jobs", json={"endpoint": "/v1/images/variations",
                                          "request": {"image": {"image_url": "data:image/png;base64,AAAA"}}})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "image", refused.text


def test_another_tenants_job_is_not_found(server, http):
    job = submit(http, SMALL)
    with other_tenant(server, "jobs-other") as other:
        for answer in (other.get(f"/v1/jobs/{job['id']}"), other.post(f"/v1/jobs/{job['id']}/cancel"),
                       other.get(f"/v1/jobs/{job['id']}/events")):
            assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
        assert job["id"] not in [item["id"] for item in other.get("/v1/jobs").json()["data"]]
    assert wait_for(http, job["id"])["status"] == "succeeded"


def test_listing_is_newest_first_with_a_limit(http):
    ids = [submit(http, SMALL)["id"] for _ in range(3)]
    listing = http.get("/v1/jobs", params={"limit": 2}).json()
    assert listing["object"] == "list" and listing["has_more"] is True
    assert [item["id"] for item in listing["data"]] == ids[::-1][:2]
    assert all(item["result"] is None for item in listing["data"])  # results only when reading one job
    for job_id in ids:
        wait_for(http, job_id)


def test_cancel_a_queued_and_a_running_job(server, http):
    rows = server.image_rows()
    running = submit(http, HEAVY)
    wait_for(http, running["id"], {"running"} | TERMINAL)
    cancelled = http.post(f"/v1/jobs/{running['id']}/cancel").json()
    assert cancelled["status"] == "cancelled" and cancelled["result"] is None
    blockers = [submit(http, HEAVY)["id"] for _ in range(2)]  # both workers busy...
    queued = submit(http, SMALL)  # ...so this one waits
    assert http.post(f"/v1/jobs/{queued['id']}/cancel").json()["status"] == "cancelled"
    for job_id in blockers:
        assert wait_for(http, job_id)["status"] == "succeeded"
    assert http.get(f"/v1/jobs/{queued['id']}").json()["status"] == "cancelled"
    assert http.get(f"/v1/jobs/{running['id']}").json()["status"] == "cancelled"
    assert server.image_rows() == rows + 8  # the blockers' images; nothing from the cancelled jobs


def read_events(http: httpx.Client, job_id: str) -> list[dict]:
    events = []
    with http.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return events


def test_events_follow_a_job_to_its_end(http):
    blocker = submit(http, HEAVY)
    blocker2 = submit(http, HEAVY)
    job = submit(http, {**SMALL, "size": "512x512", "quality": "high", "n": 2})
    events = read_events(http, job["id"])
    kinds = [event["type"] for event in events]
    assert kinds[0] == "job.queued" and kinds[-1] == "job.succeeded", kinds
    assert "job.running" in kinds and "job.progress" in kinds, kinds
    order = {"job.queued": 0, "job.running": 1, "job.progress": 1, "job.succeeded": 2}
    assert [order[kind] for kind in kinds] == sorted(order[kind] for kind in kinds)
    progress = [event["job"]["progress"] for event in events if event["type"] == "job.progress"]
    assert progress == sorted(progress) and 0 < progress[0] < 1
    assert len(events[-1]["job"]["result"]["data"]) == 2
    assert read_events(http, job["id"])[0]["type"] == "job.succeeded"  # a finished job: one event, then the end
    for other in (blocker, blocker2):
        wait_for(http, other["id"])


def test_fairness_priority_then_round_robin_then_age(scratch_db):
    database = Database(scratch_db.url)
    store = JobStore(database)
    tenants = {name: database.create_tenant(name).id for name in "ABC"}
    names = {}

    def add(name: str, label: str, priority: int = 0) -> None:
        record = store.add_job(f"job_{label}", tenants[name], None, "/v1/images/generations", SMALL, [], priority, {})
        names[record.id] = label

    for i in range(1, 6):
        add("A", f"A{i}")
    add("B", "B1")
    add("C", "C1")
    add("C", "C2")
    add("A", "A-urgent", priority=5)
    store.finish_job("job_A3", "cancelled", from_status=("queued",))
    runner = JobRunner(None, store, None)  # type: ignore[arg-type]  (only the queue is used)
    order = []
    while (record := runner.claim_next()) is not None:
        order.append(names[record.id])
    assert order == ["A-urgent", "B1", "C1", "A1", "C2", "A2", "A4", "A5"]
    database.close()


def test_a_killed_server_finishes_every_job_after_restart(tmp_path, scratch_db):
    """SIGKILL while jobs are queued and running; the restarted server runs them all, and the audit log verifies
    (on SQLite and on PostgreSQL)."""
    env = {"PICTOR_JOB_WORKERS": "1", "PICTOR_DATABASE_URL": scratch_db.url}
    first = start_server(tmp_path, env)
    key = first.demo_key
    headers = {"authorization": f"Bearer {key}"}
    data_url = "data:image/png;base64," + base64.b64encode(scene_png(128, 128)).decode()
    requests = [({**HEAVY, "seed": 1234}, "/v1/images/generations"), (HEAVY, "/v1/images/generations"),
                ({"prompt": "make the circle red", "images": [{"image_url": data_url}], "n": 2},
                 "/v1/images/edits"), (HEAVY, "/v1/images/generations"), (SMALL, "/v1/images/generations")]
    try:
        with httpx.Client(base_url=first.url, headers=headers, timeout=60) as http:
            ids = [submit(http, body, endpoint=endpoint)["id"] for body, endpoint in requests]
            wait_for(http, ids[0], {"running"}, timeout=60)
            assert {http.get(f"/v1/jobs/{job_id}").json()["status"] for job_id in ids[1:]} == {"queued"}
    finally:
        first.process.kill()
        first.process.wait(timeout=20)
    left = dict(scratch_db.sql("SELECT id, status FROM image_jobs"))
    assert "running" in left.values() and set(left.values()) <= {"running", "queued", "succeeded"}, left

    second = start_server(tmp_path, env)
    try:
        with httpx.Client(base_url=second.url, headers=headers, timeout=60) as http:
            done = [wait_for(http, job_id, timeout=180) for job_id in ids]
        assert [job["status"] for job in done] == ["succeeded"] * len(ids), [job["error"] for job in done]
        assert [item["seed"] for item in done[0]["result"]["data"]] == [1234, 1235, 1236, 1237]  # the same seed
        assert len(done[2]["result"]["data"]) == 2 and decode(done[2]["result"]["data"][0]["b64_json"]).size == \
            (128, 128)
        assert "jobs interrupted by a stop: 1 queued again" in second.log()
    finally:
        second.stop()
    verified = run_cli("audit", "verify", "--data-dir", str(second.data_dir),
                       env={"PICTOR_DATABASE_URL": scratch_db.url})
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "Traceback" not in second.log(), second.log()


def test_jobs_that_cannot_be_resumed_fail_with_a_reason(tmp_path, scratch_db):
    """A job interrupted by too many crashes, and one whose input blob has gone, end `failed`, never stuck."""
    database = Database(scratch_db.url)
    store = JobStore(database)
    tenant = database.create_tenant("T").id
    store.add_job("job_crashy", tenant, None, "/v1/images/generations", SMALL, [], 0, {})
    for _ in range(MAX_ATTEMPTS):
        assert store.claim_job("job_crashy") is not None
        store.requeue_expired(MAX_ATTEMPTS, INTERRUPTED)  # what each start-up after a crash does
    crashy = store.get_job(tenant, "job_crashy")
    assert crashy.status == "failed" and crashy.error["code"] == "job_interrupted"

    lost = {"prompt": "x", "images": [{"image_url": {"$blob": "0" * 64, "$prefix": "data:image/png"}}]}
    store.add_job("job_lost", tenant, None, "/v1/images/edits", lost, ["0" * 64], 0, {})
    runner = JobRunner(None, store, LocalBlobStore(tmp_path / "blobs"))  # type: ignore[arg-type]
    asyncio.run(runner._execute(store.claim_job("job_lost", runner.owner, 30)))
    failed = store.get_job(tenant, "job_lost")
    assert failed.status == "failed" and failed.error["code"] == "job_inputs_lost", failed.error
    database.close()


def test_progress_only_rises_while_reports_race(scratch_db):
    """Progress reports of a job's images are written from threads and may land out of order: the stored value
    never goes back (a restart's new run starts again from 0 when it claims the job)."""
    database = Database(scratch_db.url)
    store = JobStore(database)
    tenant = database.create_tenant("P").id
    store.add_job("job_p", tenant, None, "/v1/images/generations", SMALL, [], 0, {})
    assert store.claim_job("job_p") is not None
    for value, expected in ((0.5, 0.5), (0.25, 0.5), (0.75, 0.75)):
        store.set_job_progress("job_p", value)
        assert store.get_job(tenant, "job_p").progress == expected
    assert store.finish_job("job_p", "queued")
    assert store.claim_job("job_p").progress == 0
    store.set_job_progress("job_p", 0.25)
    assert store.get_job(tenant, "job_p").progress == 0.25
