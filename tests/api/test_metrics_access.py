"""Who may read /metrics: loopback clients by default, a bearer token, everyone, or no one (`metrics_access`)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from starlette.requests import Request

from pictor.api.errors import ApiError
from pictor.api.routes.system import check_metrics_access
from pictor.config import Settings

from .helpers import Server, start_server


def request_from(host: str, authorization: str | None = None) -> Request:
    headers = [(b"authorization", authorization.encode())] if authorization else []
    return Request({"type": "http", "method": "GET", "path": "/metrics", "headers": headers, "client": (host, 5000),
                    "query_string": b""})


def test_by_default_only_this_machine_reads_metrics():
    settings = Settings()
    check_metrics_access(request_from("127.0.0.1"), settings)
    check_metrics_access(request_from("::1"), settings)
    with pytest.raises(ApiError) as refused:
        check_metrics_access(request_from("10.1.2.3"), settings)
    assert refused.value.status == 403


def test_open_and_off():
    check_metrics_access(request_from("10.1.2.3"), Settings(metrics_access="open"))
    with pytest.raises(ApiError) as refused:
        check_metrics_access(request_from("127.0.0.1"), Settings(metrics_access="off"))
    assert refused.value.status == 404


@pytest.fixture(scope="module")
def token_server(tmp_path_factory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("metrics"), {"PICTOR_METRICS_ACCESS": "token",
                                                                "PICTOR_METRICS_TOKEN": "s3cret-metrics"})
    yield running
    running.stop()


def test_a_metrics_token_is_asked_for_over_http(token_server):
    assert httpx.get(f"{token_server.url}/metrics", timeout=30).status_code == 401
    wrong = httpx.get(f"{token_server.url}/metrics", headers={"authorization": "Bearer nope"}, timeout=30)
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    right = httpx.get(f"{token_server.url}/metrics", headers={"authorization": "Bearer s3cret-metrics"}, timeout=30)
    assert right.status_code == 200 and "pictor_" in right.text
