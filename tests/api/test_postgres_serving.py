"""`pictor serve` on PostgreSQL: two server processes on one database and one data folder (blobs and signing keys),
as past one machine, making images, edits and jobs over HTTP, concurrently, into one audit log that
`pictor audit verify` proves whole. What is in the database is read through a connection of the test's own."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from postgres_server import PostgresServer
from scratch_databases import ScratchDatabase

from .helpers import Server, alpha_mask, decode, png_bytes, run_cli, scene, start_server

SMALL = {"prompt": "a red circle on a blue background", "size": "64x64", "quality": "low"}


@pytest.fixture(scope="module")
def database(postgres: PostgresServer) -> Iterator[ScratchDatabase]:
    url = postgres.create_database()
    yield ScratchDatabase("postgresql", url)
    postgres.drop_database(url)


@pytest.fixture(scope="module")
def servers(database: ScratchDatabase, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    """Two `pictor serve` processes on the database, sharing one data folder (and so its keys: see the README on
    several processes)."""
    root = tmp_path_factory.mktemp("postgres")
    env = {"PICTOR_DATABASE_URL": database.url}
    first = start_server(root, env, log_name="first.log")
    second = start_server(root, env, data_dir=first.data_dir, log_name="second.log")
    second.demo_key = first.demo_key  # the demo key is made once, by the process that found no keys
    yield first, second
    for server in (first, second):
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        server.stop()
        assert 'status="5' not in metrics, f"a request got a 5xx answer:\n{server.log()}"
        assert "Traceback" not in server.log(), server.log()


def http(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {server.demo_key}"}, timeout=120)


def test_the_first_start_made_the_schema_and_the_demo_key_in_postgresql(servers, database: ScratchDatabase):
    first, _ = servers
    assert first.demo_key.startswith("pk-"), first.log()
    assert database.sql("SELECT version_num FROM alembic_version")
    assert database.count("api_keys") == 1


def test_an_image_made_by_one_process_is_served_and_edited_by_the_other(servers, database: ScratchDatabase):
    first, second = servers
    made = first.client().images.generate(**SMALL, n=2, extra_body={"seed": 11})
    image_id = made.data[0].model_extra["id"]
    with http(second) as client:
        content = client.get(f"/v1/images/{image_id}/content")
    assert content.status_code == 200 and content.content == base64.b64decode(made.data[0].b64_json)
    assert database.sql("SELECT seed FROM images WHERE id = ?", image_id) == [(11,)]

    source = scene(64, 64, seed=5)
    mask = alpha_mask(64, 64, (16, 16, 40, 40))
    edited = second.client().images.edit(image=("in.png", png_bytes(source), "image/png"), prompt="a green star",
                                         mask=("mask.png", png_bytes(mask), "image/png"), quality="low")
    keep = np.asarray(mask.getchannel("A")) == 255
    before, after = np.asarray(source), np.asarray(decode(edited.data[0].b64_json))
    assert np.array_equal(before[keep], after[keep]) and not np.array_equal(before[~keep], after[~keep])
    edit_id = edited.data[0].model_extra["id"]
    parents = database.sql("SELECT COUNT(*) FROM image_parents WHERE child_id = ?", edit_id)
    assert parents == [(1,)]  # the upload, recorded as the edit's parent


def test_a_job_submitted_to_one_process_is_run_once_and_read_from_both(servers, database: ScratchDatabase):
    first, second = servers
    with http(first) as one, http(second) as other:
        submitted = [one.post("/v1/jobs", json={"request": {**SMALL, "seed": seed}}) for seed in (1, 2, 3, 4)]
        assert all(answer.status_code == 202 for answer in submitted), [answer.text for answer in submitted]
        ids = [answer.json()["id"] for answer in submitted]
        deadline = time.monotonic() + 120
        while {other.get(f"/v1/jobs/{job_id}").json()["status"] for job_id in ids} != {"succeeded"}:
            assert time.monotonic() < deadline, [other.get(f"/v1/jobs/{job_id}").json() for job_id in ids]
            time.sleep(0.2)
        done = [one.get(f"/v1/jobs/{job_id}").json() for job_id in ids]
    assert [job["result"]["data"][0]["seed"] for job in done] == [1, 2, 3, 4]
    attempts = database.sql("SELECT id, attempts FROM image_jobs WHERE status = 'succeeded'")
    assert {job_id: count for job_id, count in attempts if job_id in ids} == dict.fromkeys(ids, 1)


def test_concurrent_requests_to_both_processes_all_land_in_one_gapless_log(servers, database: ScratchDatabase):
    async def burst(server: Server, seeds: range) -> list:
        async with server.async_client() as client:
            return await asyncio.gather(*[client.images.generate(**SMALL, extra_body={"seed": seed})
                                          for seed in seeds])

    async def both() -> list:
        first, second = servers
        return [*await asyncio.gather(burst(first, range(100, 108)), burst(second, range(200, 208)))]

    results = [result for batch in asyncio.run(both()) for result in batch]
    assert len(results) == 16 and all(len(result.data) == 1 for result in results)
    rows = database.sql("SELECT idx, status FROM audit_entries ORDER BY idx")
    assert [index for index, _ in rows] == list(range(len(rows)))
    assert {status for _, status in rows} == {"final"}


def test_pictor_audit_verify_proves_the_log_of_both_processes(servers, database: ScratchDatabase):
    first, _ = servers
    verified = run_cli("audit", "verify", "--data-dir", str(first.data_dir),
                       env={"PICTOR_DATABASE_URL": database.url})
    assert verified.returncode == 0, verified.stdout + verified.stderr
    entries = database.count("audit_entries")
    assert entries >= 16 + 4 + 3 and f"{entries} entries" in verified.stdout, verified.stdout
