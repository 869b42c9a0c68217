"""A NUL character is refused wherever text enters: the path, the query string, JSON bodies and form fields.

No field of the API has a use for one, and databases disagree on them (PostgreSQL refuses NUL in text, so a
prompt, user or title carrying one would otherwise fail deep inside a request, or be stored and break every later
search of the tenant's images). Refused here with a 400 that names the field, before any route sees it.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pictor.api.errors import error_response

_ESCAPED_NUL = re.compile(rb"\\u0000", re.IGNORECASE)  # how JSON spells a NUL inside a string
CODE = "invalid_character"


def nul_path(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string (or key) in a parsed JSON value that holds a NUL; None if none does."""
    if isinstance(value, str):
        return path or "body" if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return where
            if (found := nul_path(item, where)) is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            if (found := nul_path(item, f"{path}[{index}]")) is not None:
                return found
    return None


def form_nul_field(fields: dict[str, str]) -> str | None:
    """The first multipart text field (name or value) that holds a NUL."""
    return next((name for name, value in fields.items() if "\x00" in name or "\x00" in value), None)


def refusal(param: str | None):
    where = f"'{param}'" if param else "the request"
    return error_response(400, f"{where} contains a NUL character, which no field accepts.", param=param, code=CODE)


class NulGuard:
    """ASGI middleware: 400 for a NUL in the path or query, or in a JSON body's strings (see the module)."""

    BODY_METHODS = ("POST", "PUT", "PATCH")

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"")
        if "\x00" in scope["path"] or b"\x00" in unquote_to_bytes(query):
            await refusal("query" if b"%00" in query.lower() or b"\x00" in query else "path")(scope, receive, send)
            return
        content_type = dict(scope["headers"]).get(b"content-type", b"").lower()
        if scope["method"] not in self.BODY_METHODS or not content_type.startswith(b"application/json"):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        body = b""
        while True:  # the body is bounded by BodyLimit, outside this middleware
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        if _ESCAPED_NUL.search(body):
            try:
                param = nul_path(json.loads(body))
            except ValueError:
                param = None  # not JSON after all: the route's own parsing answers it
            if param is not None:
                await refusal(param)(scope, receive, send)
                return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)
