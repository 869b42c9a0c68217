"""Streaming over a long job: a client that goes away cancels its work; keep-alive comments while nothing is due."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest

from .helpers import Server, start_server

PROMPT = "a green triangle in the top left on a white background"


def _serving(tmp_path_factory, name: str, env: dict[str, str]) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp(name), env)
    yield running
    running.stop()
    assert "Traceback" not in running.log(), running.log()


@pytest.fixture(scope="module")
def keepalive_server(tmp_path_factory) -> Iterator[Server]:
    yield from _serving(tmp_path_factory, "keepalive", {"PICTOR_SSE_KEEPALIVE_S": "0.2"})


def _metric(server: Server, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return sum(float(value) for value in re.findall(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.M))


def _quick(http: httpx.Client) -> None:
    body = {"prompt": PROMPT, "size": "64x64", "quality": "low"}
    assert http.post("/v1/images/generations", json=body).status_code == 200


def test_disconnect_mid_stream_cancels_the_work(keepalive_server):
    server = keepalive_server
    headers = {"authorization": f"Bearer {server.demo_key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=120) as http:
        _quick(http)  # one plain image: how much a stored image adds
        before = server.state()
        _quick(http)
        one = tuple(b - a for a, b in zip(before, server.state()))
        assert one[0] == 1
        start, dropped = server.state(), _metric(server, "pictor_engine_requests_dropped")
        stopped = _metric(server, "pictor_engine_calls_stopped")
        body = {"prompt": PROMPT, "size": "1024x1024", "quality": "high", "n": 4, "stream": True,
                "partial_images": 1}
        with http.stream("POST", "/v1/images/generations", json=body) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("event: "):
                    assert line == "event: image_generation.partial_image"
                    break
        # The connection is closed: the image the model was making stops at its next step, the rest are skipped,
        # and a request queued behind them runs.
        _quick(http)
        deadline = time.monotonic() + 30
        while "stream closed before its result" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.1)
    assert "stream closed before its result" in server.log()
    assert tuple(b - a for a, b in zip(start, server.state())) == one  # only the quick request was stored
    assert _metric(server, "pictor_engine_requests_dropped") - dropped == 3  # images 2..4 never ran
    assert _metric(server, "pictor_engine_calls_stopped") - stopped == 1  # image 1 stopped part way
    assert _metric(server, "pictor_queue_depth") == 0


def test_keep_alive_comments_while_no_event_is_due(keepalive_server):
    server = keepalive_server
    # A large image: storing it (watermark, signature, blob) takes longer than the keep-alive interval.
    body = {"prompt": PROMPT, "size": "2048x2048", "quality": "high", "stream": True}
    with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {server.demo_key}"},
                      timeout=120) as http, http.stream("POST", "/v1/images/generations", json=body) as response:
        assert response.status_code == 200
        text = response.read().decode()
    frames = [frame for frame in text.split("\n\n") if frame.strip()]
    assert frames[0] == ": keep-alive"
    assert frames[-1].startswith("event: image_generation.completed")
    assert all(frame == ": keep-alive" or frame.startswith("event: ") for frame in frames)


def test_job_events_send_keep_alive_comments_at_the_configured_interval(keepalive_server):
    server = keepalive_server
    with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {server.demo_key}"},
                      timeout=120) as http:
        # Large images: storing them (watermark, signature, blobs) takes longer than the keep-alive interval.
        body = {"request": {"prompt": PROMPT, "size": "2048x2048", "quality": "high", "n": 4}}
        job = http.post("/v1/jobs", json=body).json()
        with http.stream("GET", f"/v1/jobs/{job['id']}/events") as response:
            text = response.read().decode()
    frames = [frame for frame in text.split("\n\n") if frame.strip()]
    assert ": keep-alive" in frames, frames[:5]
    assert frames[-1].startswith("event: job.succeeded")


@pytest.fixture(scope="module")
def batching_server(tmp_path_factory) -> Iterator[Server]:
    yield from _serving(tmp_path_factory, "batching", {"PICTOR_BATCH_INVARIANT": "false"})


def test_disconnect_leaves_a_step_batch_and_the_others_finish(batching_server):
    """With step-level batching the four images of a request run side by side in one batch: when the client goes
    away they all leave it at the next step, and a request that shares the batch finishes as usual."""
    server = batching_server
    headers = {"authorization": f"Bearer {server.demo_key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=120) as http:
        _quick(http)
        start, stopped = server.state(), _metric(server, "pictor_engine_calls_stopped")
        body = {"prompt": PROMPT, "size": "1024x1024", "quality": "max", "n": 4, "stream": True,
                "partial_images": 3}
        with http.stream("POST", "/v1/images/generations", json=body) as response:
            assert response.status_code == 200
            partials = 0
            for line in response.iter_lines():
                if line.startswith("event: "):
                    assert line == "event: image_generation.partial_image"
                    partials += 1
                    if partials == 2:  # part way: all four images are in the running batch
                        break
        _quick(http)  # joins the batch (or what is left of it) and finishes
        deadline = time.monotonic() + 30
        while _metric(server, "pictor_engine_calls_stopped") - stopped < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
    assert _metric(server, "pictor_engine_calls_stopped") - stopped == 4  # each image left at its next step
    assert server.state()[0] - start[0] == 1  # only the quick request's image was stored
    assert _metric(server, "pictor_queue_depth") == 0
