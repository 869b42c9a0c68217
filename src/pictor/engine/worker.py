"""One worker per model: a queue in front, one thread that owns the model behind it.

Request handlers only enqueue and await a future, so no lock is ever held while a model runs.
Requests that arrive within a short window are handed to the backend together (it batches those
that can share a forward pass). A request cancelled while it waits is dropped; one cancelled while
the model works on it stops at the model's next step, once nothing else in its call is still wanted.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from PIL import Image

from pictor.engine.protocol import Backend, EngineRequest, EngineResult, StepObserver, wants_previews

log = logging.getLogger(__name__)


class StepCancelled(Exception):
    """Raised from a step callback to stop a model call whose every request was cancelled meanwhile."""


class EngineFuture(Future):
    """A future that remembers a cancel() that came after the model started on it (Future.cancel alone is then a
    no-op), so that the worker can stop the work at its next step instead of finishing an image nobody wants."""

    def __init__(self) -> None:
        super().__init__()
        self.abandoned = False

    def cancel(self) -> bool:
        self.abandoned = True
        return super().cancel()


@dataclass
class _Item:
    request: EngineRequest
    future: EngineFuture
    on_step: Callable[[int, int, Image.Image | None], None] | None  # (step, total, preview): a StepObserver or not


class ModelWorker:
    def __init__(self, backend: Backend, max_batch: int = 8, batch_wait_s: float = 0.004, step_batching: bool = True):
        self.backend = backend
        self.max_batch = max_batch
        self.batch_wait_s = batch_wait_s
        self.batch_invariant = getattr(backend, "batch_invariant", False)  # one call per image, whatever comes along
        # Step-level batching: where the backend can advance runs one step at a time (begin/advance/finish), a
        # request that arrives while others are being made joins their next forward pass at its own first step,
        # instead of waiting for the whole batch to end. Only when batches may change results (not batch_invariant).
        self.step_level = (step_batching and not self.batch_invariant
                           and all(hasattr(backend, name) for name in ("begin", "advance", "finish")))
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._thread = threading.Thread(target=self._step_loop if self.step_level else self._loop,
                                        name=f"model-{backend.name}", daemon=True)
        self.model_seconds = 0.0  # busy time, for metrics
        self.dropped = 0  # requests cancelled before they ran (their client went away), for metrics
        self.stopped = 0  # model calls stopped part way because every request in them was cancelled, for metrics
        self._thread.start()

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def submit(self, request: EngineRequest,
               on_step: Callable[[int, int, Image.Image | None], None] | None = None) -> EngineFuture:
        """Enqueue; the future resolves to an EngineResult (or the backend's exception). Cancelling it drops the
        request, or stops the model call it is in at the next step (see EngineFuture)."""
        future = EngineFuture()
        self._queue.put(_Item(request, future, on_step))
        return future

    def close(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _take_batch(self, first: _Item) -> tuple[list[_Item], bool]:
        # A batch-invariant backend makes one call per image whatever arrives with it: waiting for company would
        # only delay the first (by batch_wait_s, on every lone request). Those already queued still come along.
        wait = 0.0 if self.batch_invariant else self.batch_wait_s
        batch, deadline, stop = [first], time.monotonic() + wait, False
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                stop = True
                break
            batch.append(item)
        return batch, stop

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._take_batch(first)
            if self.batch_invariant:
                # One pipeline call per image anyway: start each only when its turn comes, so a request
                # cancelled meanwhile (a streaming client that went away) is dropped, not run.
                for item in batch:
                    if item.future.set_running_or_notify_cancel():
                        self._run([item])
                    else:
                        self.dropped += 1
            else:
                live = [item for item in batch if item.future.set_running_or_notify_cancel()]
                self.dropped += len(batch) - len(live)
                if live:
                    self._run(live)
            if stop:
                return

    def _step_loop(self) -> None:
        """Runs advance a step at a time together; new requests join between steps, finished ones leave."""
        active: list[tuple[_Item, object, float]] = []  # (item, the backend's run, when it began)
        stop = False
        while not (stop and not active):
            arrivals: list[_Item | None] = [] if active or stop else [self._queue.get()]
            while len(active) + len(arrivals) < self.max_batch:
                try:
                    arrivals.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for item in arrivals:
                if item is None:
                    stop = True
                elif not item.future.set_running_or_notify_cancel():
                    self.dropped += 1
                else:
                    try:
                        active.append((item, self.backend.begin(item.request, self._preview_sink(item)),
                                       time.perf_counter()))
                    except Exception as error:
                        log.exception("model %s could not start a request", self.backend.name)
                        item.future.set_exception(error)
            still = [entry for entry in active if not entry[0].future.abandoned]
            if len(still) < len(active):
                self.stopped += len(active) - len(still)
                for item, _, _ in active:
                    if item.future.abandoned:
                        item.future.set_exception(StepCancelled())
                active = still
            if not active:
                continue
            started = time.perf_counter()
            try:
                self.backend.advance([run for _, run, _ in active])
            except Exception as error:  # a model failure fails the requests in this step, not the worker
                log.exception("model %s failed on a step of %d runs", self.backend.name, len(active))
                for item, _, _ in active:
                    item.future.set_exception(error)
                active = []
                continue
            finally:
                self.model_seconds += time.perf_counter() - started
            for entry in [entry for entry in active if entry[1].done]:
                item, run, began = entry
                active.remove(entry)
                try:
                    result = self.backend.finish(run)
                except Exception as error:
                    item.future.set_exception(error)
                    continue
                result.model_seconds = time.perf_counter() - began
                item.future.set_result(result)

    @staticmethod
    def _preview_sink(item: _Item):
        callback = item.on_step
        if callback is None:
            return None

        def on_step(index: int, step: int, total: int, preview: Image.Image | None) -> None:
            callback(step, total, preview)

        return StepObserver(on_step, wants_previews(callback))

    def _run(self, items: list[_Item]) -> None:
        def on_step(index: int, step: int, total: int, preview: Image.Image | None) -> None:
            if all(item.future.abandoned for item in items):
                raise StepCancelled
            callback = items[index].on_step
            # A callback that only counts steps (progress) says so with `wants_previews = False`: it is called
            # every step without a preview, and none is made for it.
            if callback is not None and (preview is not None or not wants_previews(callback)):
                callback(step, total, preview)

        observer = StepObserver(on_step, any(wants_previews(item.on_step) for item in items))

        started = time.perf_counter()
        try:
            results: list[EngineResult] = self.backend.run([i.request for i in items], observer)
        except StepCancelled:
            self.stopped += 1
            log.info("model %s stopped a call of %d cancelled request(s) part way", self.backend.name, len(items))
            for item in items:
                item.future.set_exception(StepCancelled())
            return
        except Exception as error:  # a model failure fails these requests, not the worker
            log.exception("model %s failed on a batch of %d", self.backend.name, len(items))
            for item in items:
                item.future.set_exception(error)
            return
        finally:
            elapsed = time.perf_counter() - started
            self.model_seconds += elapsed
        for item, result in zip(items, results):
            result.model_seconds = elapsed
            item.future.set_result(result)
