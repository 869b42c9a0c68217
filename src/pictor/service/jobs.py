"""Async image jobs: accept now, run later, survive a crash.

A job is the body of an ordinary Images request kept in the database. Large data-URL payloads (edit inputs)
go to the blob store and the stored body names them by hash, so the table stays small. A few worker tasks
take jobs one at a time: highest priority first, then round-robin across tenants (the tenant served least
recently goes next, so one tenant's long queue cannot starve another's single job), then oldest first.

What the HTTP layer owns stays there: `JobParser` turns a stored body into an ImageJob with the same checks
as the synchronous endpoints, and the route renders results and errors.

Several processes may share one database: each claims jobs under its own name with a lease that a heartbeat renews
every third of `lease_s`. A job whose lease ran out (its process died) is queued again by any live process, at
start-up or by the same heartbeat, and runs from the same request (and seed, if one was given); a run that lost its
claim (taken over, or cancelled on another process) is stopped and finishes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable, Mapping
from typing import Any

from pictor.core import ImageJob
from pictor.service.errors import ServiceError
from pictor.service.images import ImageService, ImagesResult, PartialImage
from pictor.service.job_events import SUBMITTED, JobEvents
from pictor.service.timings import rounded
from pictor.storage import BlobNotFound, BlobStore, Principal
from pictor.storage.database import JOB_TERMINAL, JobRecord, JobStore, QueueHead

log = logging.getLogger(__name__)

JobParser = Callable[[str, dict[str, Any], str], ImageJob]  # (endpoint, request body, tenant id) -> ImageJob
PROGRESS_PREVIEWS = 3  # progress reports per image (at 1/4, 2/4, 3/4 of the steps; no preview pixels made)
MAX_ATTEMPTS = 3  # a job that was running during this many crashes is failed, not started again
IDLE_POLL_S = 2.0
LEASE_S = 30.0  # how long a claim holds without a heartbeat (settings: job_lease_s)
BLOB_MIN_CHARS = 256  # data URLs shorter than this stay inline
BLOB_KEY = "$blob"  # {"$blob": sha256, "$prefix": "data:image/png"} stands for a data URL in a stored body

INTERRUPTED = {"message": "The job was interrupted by server restarts too many times and was not started again.",
               "type": "server_error", "param": None, "code": "job_interrupted"}


def new_job_id() -> str:
    return f"job_{secrets.token_hex(12)}"


def process_name() -> str:
    """This process's name on the jobs it claims: host, pid and a random suffix (a pid is reused after a restart)."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(4)}"


def pick_next(heads: list[QueueHead], last_served: Mapping[str, int]) -> QueueHead:
    """The fairness rule among the queue heads (already the top priority): the tenant served least recently
    (never = first), then the oldest job."""
    return min(heads, key=lambda head: (last_served.get(head.tenant_id, -1), head.seq))


def externalise(body: Any, blobs: BlobStore, hashes: list[str]) -> Any:
    """The body with each large base64 data URL stored as a blob and replaced by a reference to it."""
    if isinstance(body, dict):
        return {key: externalise(value, blobs, hashes) for key, value in body.items()}
    if isinstance(body, list):
        return [externalise(value, blobs, hashes) for value in body]
    if isinstance(body, str) and len(body) >= BLOB_MIN_CHARS and body.startswith("data:") and ";base64," in body:
        prefix, payload = body.split(";base64,", 1)
        digest = blobs.put(base64.b64decode(payload))  # already validated by the parser
        hashes.append(digest)
        return {BLOB_KEY: digest, "$prefix": prefix}
    return body


def internalise(body: Any, blobs: BlobStore) -> Any:
    """The body as it was sent (raises BlobNotFound when an input has gone from the blob store)."""
    if isinstance(body, dict):
        if BLOB_KEY in body:
            return f"{body['$prefix']};base64,{base64.b64encode(blobs.get(body[BLOB_KEY])).decode()}"
        return {key: internalise(value, blobs) for key, value in body.items()}
    if isinstance(body, list):
        return [internalise(value, blobs) for value in body]
    return body


def error_object(error: ServiceError) -> dict[str, Any]:
    """The OpenAI error object, as the synchronous endpoints send it."""
    type_ = "server_error" if error.kind == "model_failure" else "invalid_request_error"
    return {"message": error.message, "type": type_, "param": error.param, "code": error.code,
            **(error.details or {})}


def result_summary(result: ImagesResult) -> dict[str, Any]:
    """What a finished job keeps: image ids and the response's fields. Bytes stay in the blob store, and the
    route renders b64_json or fresh signed URLs from this on every read."""
    return {"created": result.created, "size": result.size, "quality": result.quality,
            "background": result.background, "output_format": result.output_format, "usage": result.usage,
            "svg_usage": result.svg_usage,
            "timings_ms": rounded(result.steps_ms),
            "images": [{"id": item.artifact.id, "seed": item.seed, "revised_prompt": item.revised_prompt,
                        "unknown_words": item.unknown_words, "width": item.artifact.width,
                        "height": item.artifact.height, "validation": item.validation} for item in result.images]}


class JobRunner:
    """Queue, workers and live events for async jobs. Start it inside the event loop; stop it before the
    model workers close."""

    def __init__(self, service: ImageService, store: JobStore, blobs: BlobStore, workers: int = 2,
                 lease_s: float = LEASE_S, owner: str | None = None,
                 observe_steps: Callable[[dict[str, float]], None] | None = None):
        self.service = service
        self.store = store
        self.blobs = blobs
        self.workers = max(1, workers)
        self.lease_s = lease_s
        self.owner = owner or process_name()
        self.observe_steps = observe_steps  # each finished job's time per step (the server's histogram)
        self._parse: JobParser | None = None
        self._wake = asyncio.Event()
        self._pick = asyncio.Lock()  # one worker chooses at a time, so the round-robin state stays consistent
        self._served: dict[str, int] = {}  # tenant -> tick of its last started job
        self._tick = 0
        self._workers: list[asyncio.Task] = []
        self._running: dict[str, asyncio.Task] = {}  # job id -> the task running it
        self._cancelled: set[str] = set()  # running jobs a client cancelled or another process took (vs. a stop)
        self._heartbeat: asyncio.Task | None = None
        self.events = JobEvents(store, self.owner, self._heard_elsewhere, lambda job_id: job_id in self._running)
        self._background: set[asyncio.Task] = set()

    # ---- lifecycle -----------------------------------------------------------------------------

    def start(self, parse: JobParser) -> None:
        self._parse = parse
        self._take_over_expired()
        self._wake = asyncio.Event()
        self._workers = [asyncio.create_task(self._work(), name=f"job-worker-{i}") for i in range(self.workers)]
        self._heartbeat = asyncio.create_task(self._keep_leases(), name="job-leases")
        self.events.start()

    async def stop(self) -> None:
        """Cancel the workers; a job they were running goes back to the queue (it runs again next start)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        await self.events.stop()

    def _heard_elsewhere(self, job_id: str, event: str) -> None:
        """Another process's job event: a submission wakes the idle workers; a cancel stops this process's run."""
        if event == SUBMITTED:
            self._wake.set()
        elif event == "job.cancelled":
            self._stop_run(job_id)

    # ---- leases --------------------------------------------------------------------------------

    def _take_over_expired(self) -> int:
        """Queue again the running jobs whose lease ran out (a dead process's); returns how many were queued."""
        requeued, failed = self.store.requeue_expired(MAX_ATTEMPTS, INTERRUPTED)
        if requeued or failed:
            log.warning("jobs interrupted by a stop: %d queued again, %d failed", requeued, failed)
        return requeued

    async def _keep_leases(self) -> None:
        """Every third of the lease: renew this process's claims, stop runs whose claim is gone, and take over
        the jobs of processes that stopped renewing theirs."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self._renew()
                if await asyncio.to_thread(self._take_over_expired):
                    self._wake.set()
            except Exception:  # a database blip: the next beat tries again, well within the lease
                log.exception("renewing job leases failed")

    async def _renew(self) -> None:
        running = list(self._running)
        held = await asyncio.to_thread(self.store.renew_leases, self.owner, running, self.lease_s)
        for job_id in set(running) - held:
            record = await asyncio.to_thread(self.store.get_job, None, job_id)
            if record.status not in ("succeeded", "failed"):  # (those are this run's own finish)
                log.warning("job %s is no longer claimed by this process (%s): its run stops", job_id, record.status)
                self._stop_run(job_id)

    def _stop_run(self, job_id: str) -> None:
        """Stop this process's run of a job that is cancelled or claimed elsewhere; it finishes nothing."""
        task = self._running.get(job_id)
        if task is not None:
            self._cancelled.add(job_id)
            task.cancel()

    # ---- the API's operations ------------------------------------------------------------------

    async def submit(self, principal: Principal, endpoint: str, request: dict[str, Any], priority: int = 0,
                     metadata: Mapping[str, Any] | None = None, job_id: str | None = None) -> JobRecord:
        """Every check of the synchronous endpoint now (a bad request or a refusal raises here), then queue it.
        `job_id` names the job (a batch line's own, so that a resumed batch finds what it queued before a crash)."""
        assert self._parse is not None, "JobRunner.start() was not called"
        job = self._parse(endpoint, request, principal.tenant_id)
        await self.service.prepare(job, principal)
        if self.service.quotas is not None:
            await asyncio.to_thread(self.service.quotas.check_holdings, principal.tenant_id, queued_jobs=1)
        hashes: list[str] = []
        stored = await asyncio.to_thread(externalise, request, self.blobs, hashes)
        record = await asyncio.to_thread(self.store.add_job, job_id or new_job_id(), principal.tenant_id,
                                         principal.key_id, endpoint, stored, hashes, priority, metadata or {})
        self._wake.set()
        self._publish(record.id, SUBMITTED)  # wakes idle runners of other processes
        return record

    def cancel(self, tenant_id: str, job_id: str) -> JobRecord:
        """Queued: cancelled at once. Running: marked cancelled and its task stopped, so nothing it made is kept
        (unless it was already storing, the last few milliseconds)."""
        record = self.store.get_job(tenant_id, job_id)
        if record.status in ("queued", "running") and self.store.finish_job(
                job_id, "cancelled", from_status=(record.status,), tenant_id=tenant_id):
            self._stop_run(job_id)
            self._publish(job_id, "job.cancelled")
        return self.store.get_job(tenant_id, job_id)

    def subscribe(self, job_id: str) -> asyncio.Queue:
        """A queue of the job's events (`job.running`, `job.progress`, `job.succeeded`...), from any process."""
        return self.events.subscribe(job_id)

    def unsubscribe(self, job_id: str, queue: asyncio.Queue) -> None:
        self.events.unsubscribe(job_id, queue)

    def _publish(self, job_id: str, event: str) -> None:
        self.events.publish(job_id, event)

    # ---- the workers ---------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            record = await self._next()
            task = asyncio.create_task(self._execute(record), name=record.id)
            self._running[record.id] = task
            try:
                await asyncio.wait({task})  # a cancelled job ends its own task, not this worker
            except asyncio.CancelledError:  # the server is stopping
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise
            finally:
                self._running.pop(record.id, None)
                self._cancelled.discard(record.id)

    async def _next(self) -> JobRecord:
        async with self._pick:
            while True:
                self._wake.clear()  # before looking, so a submit during the look is not missed
                record = await asyncio.to_thread(self.claim_next)
                if record is not None:
                    return record
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_POLL_S)

    def _at_running_cap(self, tenant_id: str) -> bool:
        """Whether the tenant runs as many jobs as its `running_jobs` quota allows (its queue then waits; other
        tenants' jobs go ahead)."""
        quotas = getattr(self.service, "quotas", None)
        return quotas is not None and quotas.at_running_cap(tenant_id)

    def claim_next(self) -> JobRecord | None:
        """Start the next job by the fairness rule (None: nothing queued). One caller at a time."""
        while heads := [head for head in self.store.queue_heads() if not self._at_running_cap(head.tenant_id)]:
            head = pick_next(heads, self._served)
            record = self.store.claim_job(head.job_id, self.owner, self.lease_s)
            if record is not None:
                self._tick += 1
                self._served[head.tenant_id] = self._tick
                return record
        return None  # (a head that was cancelled meanwhile is simply looked past)

    async def _execute(self, record: JobRecord) -> None:
        self._publish(record.id, "job.running")
        principal = Principal(tenant_id=record.tenant_id, tenant_name="", key_id=record.key_id)  # name: unused here
        try:
            request = await asyncio.to_thread(internalise, record.request, self.blobs)
            assert self._parse is not None
            job = self._parse(record.endpoint, request, record.tenant_id)
            plan = await self.service.prepare(job, principal)
            result = await self.service.run(plan, principal, on_partial=self._progress_sink(record.id, job.n),
                                            partial_images=PROGRESS_PREVIEWS, encode_partials=False,
                                            rate_limited=False)
        except asyncio.CancelledError:
            if record.id not in self._cancelled:  # a server stop, not a client: run it again next time
                await asyncio.shield(asyncio.to_thread(self.store.finish_job, record.id, "queued", owner=self.owner))
            raise
        except BlobNotFound as error:
            self._fail(record, {"message": f"An input image of this job is no longer stored ({error}); it cannot "
                                           "be resumed.", "type": "server_error", "param": None,
                                "code": "job_inputs_lost"})
        except ServiceError as error:
            self._fail(record, error_object(error))
        except Exception as error:  # e.g. a stored request that no longer validates after an upgrade
            log.exception("job %s failed", record.id)
            self._fail(record, {"message": f"The job failed: {error}", "type": "server_error", "param": None,
                                "code": "job_failed"})
        else:
            if self.observe_steps is not None:
                self.observe_steps(result.steps_ms)
            if await asyncio.to_thread(self.store.finish_job, record.id, "succeeded", result=result_summary(result),
                                       owner=self.owner):
                self._publish(record.id, "job.succeeded")

    def _fail(self, record: JobRecord, error: dict[str, Any]) -> None:
        if self.store.finish_job(record.id, "failed", error=error, owner=self.owner):
            self._publish(record.id, "job.failed")

    def _progress_sink(self, job_id: str, n: int) -> Callable[[PartialImage], None]:
        """Progress from the model's step callbacks: each preview marks a quarter of one image's steps."""
        done = [0] * n

        def on_partial(partial: PartialImage) -> None:
            done[partial.image_index] = partial.partial_index + 1
            progress = round(sum(done) / (n * (PROGRESS_PREVIEWS + 1)), 3)
            task = asyncio.create_task(asyncio.to_thread(self.store.set_job_progress, job_id, progress))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            task.add_done_callback(lambda _: self._publish(job_id, "job.progress"))

        return on_partial


def is_terminal(status: str) -> bool:
    return status in JOB_TERMINAL
