"""Live Pictor servers on loopback, started with the real `pictor serve`, shared by the API tests.

Each server is a subprocess with its own temporary data folder; the tests talk to it only over HTTP
(the official `openai` SDK and httpx), create keys through the CLI or the storage API, and inspect the
data folder (rows in the images table, files in the blob folder) to prove that refused requests leave
nothing behind.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from openai import OpenAI

from .helpers import Server, start_server


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[Server]:
    """The main server: default settings, the embedded model, a demo key printed on first start."""
    running = start_server(tmp_path_factory.mktemp("server"))
    assert running.demo_key.startswith("pk-"), running.log()
    yield running
    metrics = httpx.get(f"{running.url}/metrics", timeout=10).text
    running.stop()
    assert 'status="5' not in metrics, "a request got a 5xx answer"
    assert "Traceback" not in running.log(), running.log()


@pytest.fixture(scope="session")
def strict_server(tmp_path_factory) -> Iterator[Server]:
    """A server with tight limits: 2 requests a minute per key, request bodies of at most 64 KiB, links that
    expire after two seconds."""
    running = start_server(tmp_path_factory.mktemp("strict"),
                           {"PICTOR_RATE_LIMIT_PER_MINUTE": "2", "PICTOR_MAX_REQUEST_BYTES": str(64 * 1024),
                            "PICTOR_URL_LIFETIME_S": "2"})
    yield running
    running.stop()


@pytest.fixture(scope="session")
def client(server: Server) -> OpenAI:
    return server.client()


@pytest.fixture(scope="session")
def http(server: Server) -> Iterator[httpx.Client]:
    """A plain HTTP client with the demo key (for what the SDK cannot send)."""
    with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {server.demo_key}"},
                      timeout=120) as plain:
        yield plain


