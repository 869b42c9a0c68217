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
from typing import Generic, ParamSpec, TypeVar

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


class Deferred(Generic[R]):
    """Work started on the CPU pool whose result is wanted later, by code that is itself on the pool. Whoever
    comes first runs it: a pool worker, or the caller of `result` if no worker has begun it yet, so waiting for it
    never leaves a core idle behind a queue of other requests' work. Meant for work that releases the GIL (hashing,
    compression): Python-heavy work beside Python-heavy work only takes turns."""

    def __init__(self, work: Callable[[], R]):
        self._work = work
        self._claimed = threading.Lock()
        self._done = threading.Event()
        self._value: R | None = None
        self._error: BaseException | None = None

    def start(self) -> Deferred[R]:
        _executor().submit(contextvars.copy_context().run, self._run)
        return self

    def result(self) -> R:
        """The work's result (or its exception), running it here if nobody has started it."""
        self._run()
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def _run(self) -> None:
        if not self._claimed.acquire(blocking=False):
            return  # running or done elsewhere
        try:
            self._value = self._work()
        except BaseException as error:
            self._error = error
        finally:
            self._done.set()
