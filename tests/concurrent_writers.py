"""Concurrent writers for the race tests: the same work in several threads started together."""

from __future__ import annotations

import threading
from collections.abc import Callable


def run_writers(work: Callable[[int], None], writers: int = 8) -> None:
    """`work(writer)` in `writers` threads released at once (a barrier); fails with the first error any raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def run(writer: int) -> None:
        start.wait()
        try:
            work(writer)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(writer,)) for writer in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, f"{len(errors)} of {writers} writers failed, the first with {errors[0]!r}"
