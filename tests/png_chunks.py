"""Reading PNG chunks in tests (where a C2PA manifest lives in a PNG: its `caBX` chunk)."""

from __future__ import annotations

import struct


def png_chunk(data: bytes, kind: bytes) -> bytes:
    """The whole chunk (length, type, data, CRC) of the first `kind` chunk."""
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        if data[pos + 4:pos + 8] == kind:
            return data[pos:pos + 12 + length]
        pos += 12 + length
    raise AssertionError(f"no {kind!r} chunk")
