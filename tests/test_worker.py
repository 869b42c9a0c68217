"""The model worker: a request cancelled while the model works on it stops at the next step and frees the model."""

from __future__ import annotations

import threading
from concurrent.futures import wait

import numpy as np
import pytest

from pictor.engine.embedded_backend import EmbeddedBackend
from pictor.engine.protocol import EngineRequest
from pictor.engine.worker import ModelWorker, StepCancelled


@pytest.fixture(scope="module")
def worker():
    running = ModelWorker(EmbeddedBackend(), batch_wait_s=0.0)
    yield running
    running.close()


def test_a_request_cancelled_mid_run_stops_at_the_next_step(worker):
    started, steps = threading.Event(), []

    def on_step(step: int, total: int, preview) -> None:
        steps.append(step)
        started.set()

    slow = EngineRequest("generate", "a red star on a white background", 256, 256, seed=1, steps=50)
    future = worker.submit(slow, on_step)
    assert started.wait(60)
    assert future.cancel() is False  # already running: Future.cancel alone could not stop it
    wait([future], timeout=60)
    assert isinstance(future.exception(), StepCancelled)
    assert len(steps) < 50 and worker.stopped == 1

    # the worker is free and makes the next image whole
    done = worker.submit(EngineRequest("generate", "a blue circle on a white background", 64, 64, seed=2, steps=4))
    assert done.result(timeout=60).image.size == (64, 64)
    assert worker.stopped == 1


def test_a_call_goes_on_while_any_of_its_requests_is_still_wanted():
    batched = ModelWorker(EmbeddedBackend(batch_invariant=False), batch_wait_s=0.5, step_batching=False)
    try:
        steps: list[int] = []
        wanted = batched.submit(EngineRequest("generate", "a red star on a white background", 64, 64, seed=1, steps=8),
                                lambda step, total, preview: steps.append(step))
        dropped = batched.submit(EngineRequest("generate", "a red star on a white background", 64, 64, seed=2, steps=8),
                                 lambda step, total, preview: dropped.cancel())
        assert wanted.result(timeout=60).image.size == (64, 64)
        assert dropped.abandoned and batched.stopped == 0 and len(steps) == 8
    finally:
        batched.close()


def test_step_level_batching_lets_a_late_request_join_and_finish_first():
    backend = EmbeddedBackend(batch_invariant=False)
    stepped = ModelWorker(backend, batch_wait_s=0.0)
    assert stepped.step_level
    try:
        long_steps: list[int] = []
        late_started = threading.Event()
        long_request = EngineRequest("generate", "a red star in the top left on a white background", 64, 64, seed=1,
                                     steps=11)
        short_request = EngineRequest("generate", "a blue circle in the center on a white background", 64, 64,
                                      seed=2, steps=4)
        holder: dict = {}

        def on_long_step(step: int, total: int, preview) -> None:
            long_steps.append(step)
            if step == 2:  # early in its run, another request arrives
                holder["short"] = stepped.submit(short_request)
                late_started.set()

        long_future = stepped.submit(long_request, on_long_step)
        assert late_started.wait(60)
        short = holder["short"].result(timeout=60)
        assert not long_future.done() and len(long_steps) < 11  # it finished while the long one was still running
        long = long_future.result(timeout=60)
        assert long_steps == list(range(11))

        # joining another run changes a result only by the float noise of a bigger batch
        alone = EmbeddedBackend(batch_invariant=True).run([short_request, long_request])
        for joined, solo in ((short, alone[0]), (long, alone[1])):
            difference = np.abs(np.asarray(joined.image, dtype=int) - np.asarray(solo.image, dtype=int))
            assert difference.max() <= 3, difference.max()
    finally:
        stepped.close()


def test_previews_are_made_only_for_a_callback_that_wants_them():
    backend = EmbeddedBackend()
    request = EngineRequest("generate", "a red star on a white background", 64, 64, seed=1, steps=3)
    seen: list = []

    def listening(index: int, step: int, total: int, preview) -> None:
        seen.append(preview)

    listening.wants_previews = False
    plain = backend.run([request], listening)[0]
    assert seen == [None, None, None]
    seen.clear()
    del listening.wants_previews
    with_previews = backend.run([request], listening)[0]
    assert [preview.size for preview in seen] == [(96, 96)] * 3  # the model's working size; the service resizes
    assert plain.image.tobytes() == with_previews.image.tobytes()


@pytest.mark.parametrize("step_batching", [False, True])
def test_a_progress_only_callback_counts_every_step_without_previews(step_batching):
    """A callback with `wants_previews = False` (an async job's progress) is called at every step through the
    worker, one at a time or step-batched, with no preview made; one that wants previews beside it still gets them."""
    backend = EmbeddedBackend(batch_invariant=not step_batching)
    running = ModelWorker(backend, batch_wait_s=0.05, step_batching=step_batching)
    counted: list = []
    shown: list = []

    def counting(step: int, total: int, preview) -> None:
        counted.append((step, total, preview))

    def showing(step: int, total: int, preview) -> None:
        shown.append(preview)

    counting.wants_previews = False
    try:
        quiet = EngineRequest("generate", "a red star on a white background", 64, 64, seed=1, steps=4)
        loud = EngineRequest("generate", "a blue circle on a white background", 64, 64, seed=2, steps=4)
        first, second = running.submit(quiet, counting), running.submit(loud, showing)
        wait([first, second], timeout=60)
        assert first.result().image.size == second.result().image.size == (64, 64)
    finally:
        running.close()
    assert [(step, total) for step, total, _ in counted] == [(0, 4), (1, 4), (2, 4), (3, 4)]
    assert all(preview is None for _, _, preview in counted)
    assert [preview.size for preview in shown] == [(96, 96)] * 4
