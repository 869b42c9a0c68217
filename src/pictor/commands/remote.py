"""Talk to a Pictor server over its public HTTP API, or start one in this process for the length of a command.

The CLI's batch and dataset commands go through the same API as any client (files, batches, signed links), so
what they make is governed, signed and audited exactly like an interactive request, and a batch they start is
resumed by the server after a restart like any other.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

STARTUP_TIMEOUT_S = 300


class RemoteError(RuntimeError):
    """The server answered with an error: its status and message."""


@dataclass
class PictorClient:
    base_url: str  # e.g. http://127.0.0.1:8000 (without /v1)
    api_key: str
    timeout: float = 120.0

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.base_url.rstrip("/"), timeout=self.timeout,
                                 headers={"Authorization": f"Bearer {self.api_key}"})

    def close(self) -> None:
        self.http.close()

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:300]
            raise RemoteError(f"{response.request.method} {response.request.url.path}: "
                              f"{response.status_code} {message}")
        return response.json()

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        return self._json(self.http.get(path, params=params or None))

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._json(self.http.post(path, json=body))

    def upload(self, name: str, data: bytes, purpose: str = "batch") -> dict[str, Any]:
        return self._json(self.http.post("/v1/files", files={"file": (name, data, "application/jsonl")},
                                         data={"purpose": purpose}))

    def content(self, path_or_url: str) -> bytes:
        response = self.http.get(path_or_url)
        if response.status_code >= 400:
            self._json(response)
        return response.content

    def default_model(self) -> str:
        models = self.get("/v1/models")["data"]
        if not models:
            raise RemoteError("the server offers no model")
        return models[0]["id"]


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def local_server(settings: Any, tenant: str) -> Iterator[PictorClient]:
    """A Pictor server on a free loopback port in a thread, and a client with a fresh key for `tenant`.

    The key is revoked and the server shut down (a running job goes back to the queue, a batch resumes at the
    next start) when the block ends, also on Ctrl-C.
    """
    import uvicorn

    from pictor.api.app import create_app
    from pictor.assembly import Installation

    installation = Installation.open(settings)  # the key's records; the server builds the rest (create_app)
    database = installation.database
    key = database.create_key(database.ensure_tenant(tenant).id, label="cli")
    settings = settings.model_copy(update={"host": "127.0.0.1", "port": _free_port()})
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host=settings.host, port=settings.port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="pictor-local-server", daemon=True)
    thread.start()
    client = PictorClient(f"http://{settings.host}:{settings.port}", key.plaintext)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RemoteError("the local Pictor server did not start")
            time.sleep(0.05)
        yield client
    finally:
        client.close()
        server.should_exit = True
        thread.join(60)
        database.revoke_key(key.info.id)
        installation.close()
