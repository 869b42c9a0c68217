"""GET /v1/models, /healthz, /readyz, /metrics, and the request id on every response."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .helpers import scene_png
from .test_jobs import submit, wait_for


def test_models_list_the_embedded_model_with_capabilities(client):
    models = client.models.list().data
    ids = [model.id for model in models]
    assert "pictor-embedded" in ids
    card = next(model for model in models if model.id == "pictor-embedded")
    assert card.object == "model" and card.owned_by == "pictor"
    capabilities = card.model_extra["capabilities"]
    assert set(capabilities["tasks"]) >= {"generate", "edit", "inpaint", "variation"}
    assert capabilities["transparent_background"] is True and capabilities["previews"] is True
    assert capabilities["max_side"] >= 1536 and capabilities["native_resolution"] > 0
    assert len(card.model_extra["weights_sha256"]) == 64
    assert client.models.retrieve("pictor-embedded").id == "pictor-embedded"


def test_health_and_readiness_need_no_key(server):
    health = httpx.get(f"{server.url}/healthz", timeout=10)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_requests_latency_and_images(server, client, http):
    before = _samples(http.get("/metrics").text)
    client.images.generate(prompt="a red circle", n=2, size="64x64", quality="low")
    client.images.edit(image=scene_png(), prompt="make it blue", quality="low")
    with pytest.raises(openai.BadRequestError):
        client.images.generate(prompt="a red circle", n=11)
    with pytest.raises(openai.AuthenticationError):
        server.client("pk-wrong").models.list()
    http.get("/v1/no-such-route")
    response = http.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    after = _samples(response.text)

    def grew(name: str, by: float = 1, **labels: str) -> None:
        assert _value(after, name, **labels) - _value(before, name, **labels) >= by, (name, labels)

    generations = "/v1/images/generations"
    grew("pictor_http_requests_total", route=generations, method="POST", status="200")
    grew("pictor_http_requests_total", route=generations, method="POST", status="400")
    grew("pictor_http_requests_total", route="/v1/images/edits", method="POST", status="200")
    grew("pictor_http_requests_total", route="/v1/models", method="GET", status="401")
    grew("pictor_http_requests_total", route="unmatched", method="GET", status="404")
    grew("pictor_http_request_seconds_count", by=2, route=generations)
    grew("pictor_http_request_seconds_bucket", by=2, route=generations, le="+Inf")
    assert _value(after, "pictor_http_request_seconds_sum", route=generations) > 0
    grew("pictor_images_total", by=2, model="pictor-embedded", kind="generate")
    grew("pictor_images_total", by=1, model="pictor-embedded", kind="edit")
    assert ("pictor_queue_depth", (("model", "pictor-embedded"),)) in after
    assert _value(after, "pictor_model_busy_seconds", model="pictor-embedded") > 0
    # Routes are labelled by their template, never by the raw path (bounded label values).
    assert not any("img_" in str(labels) for _, labels in after)


def test_every_response_has_a_request_id(server, client, http):
    responses = [
        http.get("/healthz"), http.get("/readyz"), http.get("/metrics"), http.get("/v1/models"),
        http.post("/v1/images/generations", json={"prompt": "a red circle", "size": "64x64", "quality": "low"}),
        http.post("/v1/images/generations", json={"prompt": "a red circle", "n": 99}),
        http.post("/v1/images/edits", data={"prompt": "x"}, files={"image": ("a.txt", b"text", "text/plain")}),
        http.get("/v1/nowhere"),
        httpx.get(f"{server.api}/models", timeout=10),
        http.get("/v1/images/img_ffffffffffffffffffffffff/content"),
    ]
    ids = [response.headers.get("x-request-id") for response in responses]
    assert all(ids), [(r.request.url, r.status_code) for r in responses]
    assert len(set(ids)) == len(ids)
    # A caller's own id is kept, so logs on both sides can be joined.
    echoed = http.get("/healthz", headers={"x-request-id": "trace-abc-123"})
    assert echoed.headers["x-request-id"] == "trace-abc-123"
    raw = client.images.with_raw_response.generate(prompt="a red circle", size="64x64", quality="low")
    assert raw.headers.get("x-request-id")


def test_logs_are_json_lines_with_the_request_id(server, http):
    import json

    http.get("/healthz", headers={"x-request-id": "log-check-42"})
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    assert any(line.get("request_id") == "log-check-42" and line.get("route") == "/healthz" for line in lines)


def test_server_timing_reports_model_time_apart_from_the_whole(http):
    started = time.perf_counter()
    response = http.post("/v1/images/generations", json={"prompt": "a red circle", "size": "256x256", "quality": "low"})
    elapsed_ms = (time.perf_counter() - started) * 1000
    assert response.status_code == 200
    steps = {}
    for part in response.headers["server-timing"].split(","):
        name, _, duration = part.strip().partition(";dur=")
        steps[name] = float(duration)
    assert next(iter(steps)) == "model" and 0 < steps["model"] < elapsed_ms
    # Every step of the path is named, and all of them together fit in the request's time.
    for step in ("auth", "policy", "quota", "decode", "queue", "validation", "watermark", "encode", "sign", "audit",
                 "store", "response"):
        assert step in steps and steps[step] >= 0, (step, steps)
    # `total` is the server's own time for the request: every step fits in it, and it fits in the client's.
    total = steps.pop("total")
    assert sum(steps.values()) <= total < elapsed_ms
    metrics = http.get("/metrics").text
    for step in ("model", "queue", "encode", "sign", "store"):
        assert f'pictor_request_step_seconds_count{{step="{step}"}}' in metrics


PATH_STEPS = ("model", "policy", "quota", "decode", "queue", "validation", "watermark", "encode", "sign", "audit",
              "store")


def step_count(http: httpx.Client, step: str) -> float:
    line = f'pictor_request_step_seconds_count{{step="{step}"}}'
    found = [row for row in http.get("/metrics").text.splitlines() if row.startswith(line)]
    return float(found[0].split()[-1]) if found else 0.0


def test_streams_and_jobs_report_their_steps_too(http):
    """A stream's status line has gone before its steps are known, and a job answers later: both say them in their
    results, and both are counted in the per-step histogram."""
    before = step_count(http, "encode")
    body = {"prompt": "a red circle", "size": "256x256", "quality": "low"}
    with http.stream("POST", "/v1/images/generations", json={**body, "stream": True, "partial_images": 1}) as answer:
        events = [json.loads(line[6:]) for line in answer.iter_lines() if line.startswith("data: ")]
    (completed,) = [event for event in events if event["type"] == "image_generation.completed"]
    assert set(PATH_STEPS) <= set(completed["timings_ms"]), completed["timings_ms"]
    assert all(ms >= 0 for ms in completed["timings_ms"].values())
    job = wait_for(http, submit(http, body)["id"])
    assert job["status"] == "succeeded", job
    assert set(PATH_STEPS) <= set(job["timings_ms"]), job["timings_ms"]
    assert step_count(http, "encode") == before + 2
