"""Server-Sent Events framing: the `event:` name always equals the payload's `type`."""

from __future__ import annotations

import json


def sse_event(payload: dict) -> bytes:
    return f"event: {payload['type']}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()
