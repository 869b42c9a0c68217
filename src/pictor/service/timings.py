"""Where one request's time goes: milliseconds per named step (summed when a step runs more than once, as
marking and encoding do for each image of a request). The server sends them as Server-Timing and counts them
in a histogram per step, so an operator sees every step of the path, not just the model."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class StepTimes:
    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    def add(self, name: str, ms: float) -> None:
        self.ms[name] = self.ms.get(name, 0.0) + ms

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, (time.perf_counter() - started) * 1000)


def rounded(steps_ms: dict[str, float]) -> dict[str, float]:
    """Steps to a tenth of a millisecond, as a stream's completed event and a job's result carry them."""
    return {name: round(ms, 1) for name, ms in steps_ms.items()}
