"""Three `pictor serve` processes on one PostgreSQL and one S3 bucket, each with a data folder of its own and the
operator's shared keys (the audit checkpoint key and the C2PA chain). 200 async jobs are submitted across them and one
process is killed with SIGKILL mid-way: the others take over its jobs once their leases run out, every job ends once,
every image is readable from a survivor (whichever process made it), a client streaming a job's events from one
process hears a job that another runs, and `pictor audit verify` passes from either survivor's data folder.

With PICTOR_TEST_ENGINE=ray the processes' models run on one Ray Serve application (`pictor engine`) instead of in
each process; tests/cluster/test_ray_engine.py runs this module so, in a network namespace of its own."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from postgres_server import PostgresServer
from scratch_databases import ScratchDatabase
from seaweedfs_server import SeaweedServer

from pictor.governance import credentials

from .helpers import Server, run_cli, start_engine, start_server

JOBS = 200
SMALL = {"prompt": "a red circle on a blue background", "size": "64x64", "quality": "low"}
LEASE_S = 3  # short, so that the takeover comes within seconds of the kill
WATCHED = 3  # jobs at the end of the queue whose events are streamed from both survivors


@pytest.fixture
def engine_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """What makes the API processes call Ray Serve replicas, when PICTOR_TEST_ENGINE=ray; otherwise nothing."""
    if os.environ.get("PICTOR_TEST_ENGINE") != "ray":
        yield {}
        return
    process, address, _ = start_engine(tmp_path_factory.mktemp("engine"))
    try:
        yield {"PICTOR_ENGINE": "ray", "PICTOR_RAY_ADDRESS": address}
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # a clean Ray shutdown takes long; nothing here needs it
        process.wait()


@pytest.fixture
def database(postgres: PostgresServer) -> Iterator[ScratchDatabase]:
    url = postgres.create_database()
    yield ScratchDatabase("postgresql", url)
    postgres.drop_database(url)


def shared_keys(folder: Path) -> dict[str, str]:
    """The operator's keys, outside every data folder: an Ed25519 audit key and a C2PA chain (made as Pictor makes
    its own on first start)."""
    folder.mkdir()
    audit_key = folder / "audit-checkpoints.pem"
    audit_key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    credentials.load_or_create(folder / "c2pa")
    return {"PICTOR_AUDIT_SIGNING_KEY": str(audit_key),
            "PICTOR_SIGNING_CHAIN": str(folder / "c2pa" / credentials.LEAF_CERT),
            "PICTOR_SIGNING_KEY": str(folder / "c2pa" / credentials.LEAF_KEY),
            "PICTOR_SIGNING_ANCHORS": str(folder / "c2pa" / credentials.ROOT_CERT)}


def http(server: Server, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {key}"}, timeout=60)


def stream_events(server: Server, key: str, job_id: str, into: list[str]) -> None:
    """The event types of the job's stream from this server, until a terminal one."""
    with http(server, key) as client, client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=300) as answer:
        for line in answer.iter_lines():
            if line.startswith("data:"):
                into.append(json.loads(line.removeprefix("data:"))["type"])
                if into[-1] in ("job.succeeded", "job.failed", "job.cancelled"):
                    return


def statuses(database: ScratchDatabase) -> dict[str, int]:
    return dict(database.sql("SELECT status, COUNT(*) FROM image_jobs GROUP BY status"))


def running_on(database: ScratchDatabase, server: Server) -> list[str]:
    pattern = f"%:{server.process.pid}:%"
    return [job_id for (job_id,) in database.sql(
        "SELECT id FROM image_jobs WHERE status = 'running' AND claimed_by LIKE ?", pattern)]


def test_jobs_survive_a_killed_process_among_several(database: ScratchDatabase, seaweedfs: SeaweedServer,
                                                    engine_env: dict[str, str], tmp_path: Path) -> None:
    started = time.monotonic()
    env = {**engine_env, "PICTOR_DATABASE_URL": database.url, "PICTOR_BLOB_URL": f"s3://{seaweedfs.bucket}/{uuid.uuid4().hex[:12]}",
           **seaweedfs.environment, **shared_keys(tmp_path / "operator-keys"),
           "PICTOR_JOB_LEASE_S": str(LEASE_S), "PICTOR_JOB_WORKERS": "2"}
    servers: list[Server] = []
    try:
        for name in ("a", "b", "c"):
            (tmp_path / name).mkdir()
            servers.append(start_server(tmp_path / name, env))
        key = servers[0].demo_key  # made once, by the first process, in the shared database
        survivors, victim = servers[:2], servers[2]

        clients = [http(server, key) for server in servers]

        def submit(i: int) -> str:
            # The watched jobs (the last ones) at a lower priority: queued behind the rest when their streams open.
            body = {"request": {**SMALL, "seed": i}, "priority": 1 if i < JOBS - WATCHED else 0}
            answer = clients[i % 3].post("/v1/jobs", json=body)
            assert answer.status_code == 202, answer.text
            return answer.json()["id"]

        with ThreadPoolExecutor(6) as pool:  # several at once, so that a queue builds up before the kill
            submitted = list(pool.map(submit, range(JOBS - WATCHED)))
        watched = [submit(i) for i in range(JOBS - WATCHED, JOBS)]
        submitted += watched
        streams: list[tuple[str, Server, list[str]]] = [(job_id, server, []) for job_id in watched
                                                         for server in survivors]
        watchers = [threading.Thread(target=stream_events, args=(server, key, job_id, events), daemon=True)
                    for job_id, server, events in streams]
        for watcher in watchers:
            watcher.start()
        submitted_at = time.monotonic()
        for client in clients:
            client.close()

        deadline = time.monotonic() + 240
        while statuses(database).get("succeeded", 0) < JOBS // 4 or not running_on(database, victim):
            assert time.monotonic() < deadline, (statuses(database), victim.log()[-3000:])
            time.sleep(0.05)
        victim.process.kill()
        victim.process.wait(timeout=20)
        killed_at, killed_wall = time.monotonic(), time.time()
        cut_short = set(running_on(database, victim))
        assert cut_short

        deadline = time.monotonic() + 480
        while {"queued", "running"} & statuses(database).keys():
            assert time.monotonic() < deadline, statuses(database)
            time.sleep(0.25)
        finished_at = time.monotonic()

        rows = database.sql("SELECT id, status, attempts, result, error FROM image_jobs")
        assert len(rows) == JOBS
        failed = {job_id: error for job_id, status, _, _, error in rows if status != "succeeded"}
        assert not failed, failed  # (a failure would at least carry its reason; none is expected here)
        taken_over = {job_id for job_id, _, attempts, _, _ in rows if attempts > 1}
        assert cut_short <= taken_over, (cut_short, taken_over)

        images = [item["id"] for *_, result, _ in rows
                  for item in (json.loads(result) if isinstance(result, str) else result)["images"]]
        assert len(images) == len(set(images)) == JOBS  # one image per job: each job finished once
        with http(survivors[1], key) as client:  # every image, whichever process made it, from one survivor
            for image_id in images:
                content = client.get(f"/v1/images/{image_id}/content")
                assert content.status_code == 200 and content.content.startswith(b"\x89PNG"), image_id

        for watcher in watchers:
            watcher.join(timeout=60)
        for job_id, server, events in streams:  # both survivors' clients heard each job, whoever ran it
            assert events[0] == "job.queued" and events[-1] == "job.succeeded", (job_id, server.url, events)
            assert "job.running" in events, (job_id, server.url, events)

        for server in survivors:
            server.stop()
            assert "Traceback" not in server.log(), server.log()
        for server in survivors:  # either data folder: the checkpoints are signed with the shared key
            verified = run_cli("audit", "verify", "--data-dir", str(server.data_dir), env=env)
            assert verified.returncode == 0, verified.stdout + verified.stderr
        done_before_kill = sum(1 for *_, finished in database.sql(
            "SELECT id, finished FROM image_jobs") if finished is not None and finished.timestamp() < killed_wall)
        print(f"\n{len(submitted)} jobs on 3 processes (submitted {submitted_at - started:.0f} s after the start); one "
              f"killed at {killed_at - started:.0f} s with {len(cut_short)} running and {done_before_kill} done; "
              f"{len(taken_over)} taken over; all done {finished_at - killed_at:.0f} s after the kill, "
              f"{time.monotonic() - started:.0f} s in all")
    finally:
        for server in servers:
            server.stop()
