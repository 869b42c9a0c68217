"""A job's live events for whoever listens, in whichever process runs the job.

Events of jobs this process runs go straight to its listeners. Listeners of jobs run elsewhere hear them through the
database: on PostgreSQL a notice per event (storage/job_notices.py), which also wakes idle runners when a job is
submitted and stops a run cancelled on another process; on SQLite (one machine) by reading the job row a few times a
second. Events only say "look again": the stream reads the job row for what to send.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable

from pictor.storage.database import JobNotFound, JobStore
from pictor.storage.job_notices import JobNotices

log = logging.getLogger(__name__)

SUBMITTED = "job.submitted"  # wakes runners; listeners are not told (the job is already `queued` when they look)
ROW_POLL_S = 0.5


class JobEvents:
    """Listeners per job id, and the way to other processes. `on_remote(job_id, event)` hears other processes'
    events (the runner wakes on submissions and stops runs cancelled elsewhere); `runs_here(job_id)` says which
    jobs this process runs (their events need no polling)."""

    def __init__(self, store: JobStore, origin: str, on_remote: Callable[[str, str], None],
                 runs_here: Callable[[str], bool]) -> None:
        self.store = store
        self.origin = origin
        self._on_remote = on_remote
        self._runs_here = runs_here
        self._listeners: dict[str, set[asyncio.Queue]] = {}
        self._notices: JobNotices | None = None
        self._poller: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        engine = self.store.engine
        if engine.dialect.name == "postgresql":
            self._notices = JobNotices(engine, self._heard)
            self._notices.start()
        else:
            self._poller = asyncio.create_task(self._poll_rows(), name="job-rows")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        if self._notices is not None:
            await asyncio.to_thread(self._notices.close)

    def subscribe(self, job_id: str) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue()
        self._listeners.setdefault(job_id, set()).add(queue)
        return queue

    def unsubscribe(self, job_id: str, queue: asyncio.Queue) -> None:
        listeners = self._listeners.get(job_id, set())
        listeners.discard(queue)
        if not listeners:
            self._listeners.pop(job_id, None)

    def publish(self, job_id: str, event: str) -> None:
        """Tell this process's listeners now, and other processes through the database (PostgreSQL). Any thread."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a worker thread (a cancel through asyncio.to_thread): the queues are the loop's
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self.publish, job_id, event)
                return
        if event != SUBMITTED:
            self._deliver(job_id, event)
        if self._notices is not None and self._loop is not None:
            payload = json.dumps({"origin": self.origin, "job": job_id, "event": event})
            self._loop.run_in_executor(None, self._send, payload)  # (failures are logged in _send)

    def _send(self, payload: str) -> None:
        try:
            assert self._notices is not None
            self._notices.send(payload)
        except Exception:  # listeners elsewhere then learn it from the row (the stream's next look) or not at all
            log.warning("job notice not sent", exc_info=True)

    def _deliver(self, job_id: str, event: str) -> None:
        for queue in self._listeners.get(job_id, ()):
            queue.put_nowait(event)

    def _heard(self, payload: str) -> None:
        """A notice, on the listening thread: handed to the event loop unless this process sent it."""
        try:
            notice = json.loads(payload)
        except ValueError:
            return
        if notice.get("origin") != self.origin and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed while stopping
                self._loop.call_soon_threadsafe(self._remote, str(notice.get("job")), str(notice.get("event")))

    def _remote(self, job_id: str, event: str) -> None:
        if event != SUBMITTED:
            self._deliver(job_id, event)
        self._on_remote(job_id, event)

    async def _poll_rows(self) -> None:
        """SQLite: the listened jobs that another process runs, read until they change."""
        seen: dict[str, tuple[str, float]] = {}
        while True:
            await asyncio.sleep(ROW_POLL_S)
            watched = [job_id for job_id in self._listeners if not self._runs_here(job_id)]
            seen = {job_id: state for job_id, state in seen.items() if job_id in watched}
            for job_id in watched:
                try:
                    record = await asyncio.to_thread(self.store.get_job, None, job_id)
                except JobNotFound:
                    continue
                before, now = seen.get(job_id), (record.status, record.progress)
                seen[job_id] = now
                if before is None or before[0] != now[0]:
                    self._deliver(job_id, f"job.{record.status}")  # the stream skips a status it already sent
                elif before[1] != now[1]:
                    self._deliver(job_id, "job.progress")
