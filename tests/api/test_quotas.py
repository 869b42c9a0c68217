"""Tenant quotas through the API: set by the operator's CLI, enforced before any work (429 `insufficient_quota`
naming the quota, nothing stored), reported by GET /v1/usage, and shared through the database."""

from __future__ import annotations

import sqlite3
import time

import openai
import pytest

from pictor.service.quotas import QuotaKeeper
from pictor.storage import Database, DataDir

from .helpers import run_cli


def quota(server, tenant: str, *options: str) -> None:
    done = run_cli("tenants", "quota", "--tenant", tenant, *options, "--data-dir", str(server.data_dir))
    assert done.returncode == 0, done.stderr


@pytest.fixture
def tenant_client(server, request):
    name = f"quota-{request.node.name[:40]}"
    return name, server.client(server.key_for(name))


def test_images_per_day_refuse_the_request_that_would_pass_them(server, tenant_client):
    name, client = tenant_client
    quota(server, name, "--images-per-day", "3")
    client.images.generate(prompt="a red circle", size="64x64", n=2)
    before = server.state()
    with pytest.raises(openai.RateLimitError) as caught:
        client.images.generate(prompt="a red circle", size="64x64", n=2)
    body = caught.value.body
    assert caught.value.status_code == 429 and body["code"] == "insufficient_quota"
    assert body["type"] == "insufficient_quota" and "images_per_day" in body["message"]
    assert body["quota"] == {"name": "images_per_day", "limit": 3, "used": 2}
    assert server.state() == before
    client.images.generate(prompt="a red circle", size="64x64", n=1)  # exactly up to the quota
    usage = client.get("/usage", cast_to=object)
    assert usage["used"]["images_per_day"] == 3 and usage["quotas"]["images_per_day"] == 3


def test_a_streamed_request_over_quota_is_a_plain_429(server, tenant_client, http):
    name, _ = tenant_client
    quota(server, name, "--steps-per-day", "1")
    response = http.post("/v1/images/generations", json={"prompt": "a red circle", "size": "64x64", "stream": True},
                         headers={"authorization": f"Bearer {server.key_for(name)}"})
    assert response.status_code == 429 and response.json()["error"]["quota"]["name"] == "steps_per_day"


def test_holdings_quotas_refuse_sessions_jobs_and_files(server, tenant_client, http):
    name, _ = tenant_client
    quota(server, name, "--sessions", "1", "--queued-jobs", "0", "--files", "1")
    headers = {"authorization": f"Bearer {server.key_for(name)}"}
    assert http.post("/v1/sessions", json={}, headers=headers).status_code == 200
    refused = http.post("/v1/sessions", json={}, headers=headers)
    assert refused.status_code == 429 and refused.json()["error"]["quota"]["name"] == "sessions"
    job = http.post("/v1/jobs", json={"request": {"prompt": "a red circle", "size": "64x64"}}, headers=headers)
    assert job.status_code == 429 and job.json()["error"]["quota"]["name"] == "queued_jobs"
    line = b'{"custom_id": "a", "method": "POST", "url": "/v1/images/generations", "body": {"prompt": "x"}}\n'
    assert http.post("/v1/files", data={"purpose": "batch"}, files={"file": ("a.jsonl", line)},
                     headers=headers).status_code == 200
    second = http.post("/v1/files", data={"purpose": "batch"}, files={"file": ("b.jsonl", line)}, headers=headers)
    assert second.status_code == 429 and second.json()["error"]["quota"]["name"] == "files"
    quota(server, name, "--files", "off", "--stored-bytes", "10")
    third = http.post("/v1/files", data={"purpose": "batch"}, files={"file": ("c.jsonl", line)}, headers=headers)
    assert third.status_code == 429 and third.json()["error"]["quota"]["name"] == "stored_bytes"


def test_reservations_are_shared_through_the_database_and_never_overshoot(server):
    """Two keepers (as two processes would hold) on one database: the conditional update lets exactly the
    quota through."""
    url = DataDir.resolve(server.data_dir).database_url
    first, second = Database(url), Database(url)
    try:
        tenant = first.ensure_tenant("quota-shared")
        first.update_tenant_settings(tenant.id, {"quotas": {"images_per_day": 5}})
        keepers = [QuotaKeeper(first), QuotaKeeper(second)]
        admitted = 0
        for attempt in range(8):
            try:
                keepers[attempt % 2].admit(tenant.id, None, 1, 10, None)
                admitted += 1
            except Exception as error:
                assert getattr(error, "code", None) == "insufficient_quota"
        assert admitted == 5
        reservation = keepers[0].admit(tenant.id, None, 0, 0, None)
        keepers[1].release(tenant.id, (reservation[0], 2, 20))
        assert keepers[0].report(tenant.id)["used"]["images_per_day"] == 3
    finally:
        first.close()
        second.close()


def test_a_refused_request_counts_nothing(server, tenant_client, http):
    name, client = tenant_client
    quota(server, name, "--images-per-day", "2")
    with pytest.raises(openai.BadRequestError):  # refused before admission: nothing counted
        client.images.generate(prompt="explicit porn scene", size="64x64")
    assert client.get("/usage", cast_to=object)["used"]["images_per_day"] == 0


def test_work_per_minute_is_a_rate_limit_counting_pixels_and_steps(server, tenant_client):
    """A tenant's work_per_minute: images x megapixels x steps, charged in the database, a 429 rate_limit_exceeded
    with Retry-After beyond it; a request bigger than the whole limit says so."""
    name, client = tenant_client
    quota(server, name, "--work-per-minute", "3")
    if time.time() % 60 > 45:  # all of it within one minute's window
        time.sleep(61 - time.time() % 60)
    client.images.generate(prompt="a red circle", size="256x256", quality="low")  # 0.07 MP x 6 steps: 1 unit
    with pytest.raises(openai.RateLimitError) as too_big:
        client.images.generate(prompt="a red circle", size="1024x1024", quality="low")  # 7 units
    assert too_big.value.code == "rate_limit_exceeded" and "units of work" in too_big.value.body["message"]
    assert "retry-after" not in too_big.value.response.headers
    client.images.generate(prompt="a blue circle", size="256x256", quality="low")
    client.images.generate(prompt="a green circle", size="256x256", quality="low")
    with pytest.raises(openai.RateLimitError) as limited:
        client.images.generate(prompt="a pink circle", size="256x256", quality="low")
    assert limited.value.body["type"] == "rate_limit_error"
    assert 1 <= int(limited.value.response.headers["retry-after"]) <= 60
    quota(server, name, "--work-per-minute", "off")


def test_a_tenant_at_its_running_jobs_quota_waits_for_a_running_one_to_end(server, tenant_client, http):
    name, _ = tenant_client
    quota(server, name, "--running-jobs", "1")
    headers = {"authorization": f"Bearer {server.key_for(name)}"}
    tenant_id = Database(DataDir.resolve(server.data_dir).database_url).tenant_by_name(name).id
    # A job of the tenant's that another process runs: it holds a live lease, so no process takes it over.
    with sqlite3.connect(server.data_dir / "pictor.db") as db:
        db.execute("INSERT INTO image_jobs (id, tenant_id, endpoint, request, input_hashes, priority, status, progress,"
                   " attempts, metadata, created, claimed_by, lease_expires) VALUES ('job_elsewhere', ?,"
                   " '/v1/images/generations', '{}', '[]', 0, 'running', 0, 1, '{}', '2026-01-01 00:00:00',"
                   " 'another-host:1:abc', '2999-01-01 00:00:00')", (tenant_id,))
    job = http.post("/v1/jobs", json={"request": {"prompt": "a red circle", "size": "64x64"}}, headers=headers).json()
    time.sleep(3)
    assert http.get(f"/v1/jobs/{job['id']}", headers=headers).json()["status"] == "queued"
    assert http.get("/v1/usage", headers=headers).json()["used"]["running_jobs"] == 1
    with sqlite3.connect(server.data_dir / "pictor.db") as db:
        db.execute("UPDATE image_jobs SET status = 'succeeded' WHERE id = 'job_elsewhere'")
    deadline = time.monotonic() + 60
    while http.get(f"/v1/jobs/{job['id']}", headers=headers).json()["status"] != "succeeded":
        assert time.monotonic() < deadline, "the job never ran"
        time.sleep(0.2)
    quota(server, name, "--running-jobs", "off")


def test_daily_quotas_reset_with_the_utc_day(server):
    """A day's usage is its own row: the next day starts from nothing (the API counts on today's UTC date)."""
    database = Database(DataDir.resolve(server.data_dir).database_url)
    try:
        tenant = database.ensure_tenant("quota-days")
        assert database.reserve_usage(tenant.id, "2026-01-01", 3, 30, 3, None) is None
        assert database.reserve_usage(tenant.id, "2026-01-01", 1, 10, 3, None) == "images"
        assert database.reserve_usage(tenant.id, "2026-01-02", 3, 30, 3, None) is None
        assert database.usage(tenant.id, "2026-01-02")["images"] == 3
    finally:
        database.close()
