"""The request path's CPU-bound steps (decoding, policy on images, the scene reader, result-cache pixels, marking,
encoding and signing) run on one pool of worker threads, as many as the machine has cores, never on the event
loop. Concurrent requests overlap there; what waits on a database or a blob store stays on asyncio's default
threads, so slow I/O never holds a core's place.

Why not the default executor for all of it: it runs up to cores + 4 threads, and every extra thread that
wants the GIL for Python-heavy work (the judge, the watermark's bookkeeping) makes the event loop wait longer
for its own turn, which is what a health check feels."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def cpu_workers() -> int:
    """The cores this process may use (its affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # platforms without affinity
        return max(1, os.cpu_count() or 1)


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=cpu_workers(), thread_name_prefix="pictor-cpu")
        return _pool


async def run_on_cores(work: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """`work(*args, **kwargs)` on the CPU pool, with the caller's context variables (as asyncio.to_thread)."""
    context = contextvars.copy_context()
    call = functools.partial(context.run, work, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_executor(), call)
