"""Batches in the upstream shape: a JSONL file of Images requests, one async job per line, an output file.

`create` checks the file's structure (a malformed file is refused whole, naming the line) and records the batch
and its lines. A background loop then does the rest, from the database alone, so it picks up where it was after
a restart: it queues the lines of `validating` batches (a line whose body the synchronous endpoint would refuse,
e.g. an unknown parameter or a content-policy block, is recorded as that line's error, not the batch's), and
finalises batches whose jobs have all ended: the output file (successes) and the error file (failures, and lines
cancelled or expired) in the upstream output format, written together with the final status.
Batch jobs run below every interactive job (priority -1; interactive jobs use 0..9).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pictor.service.errors import InvalidRequest
from pictor.service.jobs import JobRunner
from pictor.storage import BlobStore, Principal
from pictor.storage.batches import BatchItem, BatchRecord, BatchStore, NewFile
from pictor.storage.database import JobNotFound, JobRecord

log = logging.getLogger(__name__)

BATCH_PRIORITY = -1
WINDOW_S = {"24h": 24 * 3600}
MAX_LINES = 50_000
MAX_CUSTOM_ID = 256
POLL_S = 0.5

Explain = Callable[[Exception], Awaitable[tuple[int, dict[str, Any]] | None]]  # an error -> (HTTP status, error object)
Render = Callable[[BatchRecord, JobRecord], dict[str, Any]]  # a succeeded job -> the endpoint's response body


@dataclass(frozen=True)
class BatchLine:
    custom_id: str
    body: dict[str, Any]


def new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(12)}"


def line_job_id(batch_id: str, line: int) -> str:
    """A batch line's job id, the same every time it is asked for: queuing a line is then idempotent."""
    return f"job_{hashlib.sha256(f'{batch_id}:{line}'.encode()).hexdigest()[:24]}"


def parse_lines(data: bytes, endpoint: str) -> list[BatchLine]:
    """The requests of a batch input file; InvalidRequest (naming the line) for anything malformed."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("The input file is not UTF-8 text.", "input_file_id", "invalid_file") from None
    lines: list[BatchLine] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue

        def bad(problem: str, number: int = number) -> InvalidRequest:
            return InvalidRequest(f"Line {number} of the input file {problem}", "input_file_id", "invalid_file")

        try:
            item = json.loads(raw)
        except json.JSONDecodeError as error:
            raise bad(f"is not valid JSON ({error.msg}).") from None
        if not isinstance(item, dict):
            raise bad("is not a JSON object.")
        extra = sorted(set(item) - {"custom_id", "method", "url", "body"})
        if extra:
            raise bad(f"has unknown fields: {', '.join(extra)}.")
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id or len(custom_id) > MAX_CUSTOM_ID:
            raise bad(f"needs 'custom_id', a string of 1 to {MAX_CUSTOM_ID} characters.")
        if custom_id in seen:
            raise bad(f"repeats the custom_id '{custom_id}'; each must be unique.")
        if item.get("method") != "POST":
            raise bad("needs \"method\": \"POST\".")
        if item.get("url") != endpoint:
            raise bad(f"has url {item.get('url')!r}; every line must use the batch's endpoint '{endpoint}'.")
        if not isinstance(item.get("body"), dict):
            raise bad("needs 'body', a JSON object (the request body).")
        seen.add(custom_id)
        lines.append(BatchLine(custom_id, item["body"]))
        if len(lines) > MAX_LINES:
            raise InvalidRequest(f"The input file has more than {MAX_LINES} requests.", "input_file_id",
                                 "invalid_file")
    if not lines:
        raise InvalidRequest("The input file has no requests.", "input_file_id", "invalid_file")
    return lines


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows).encode()


def error_status(error: Mapping[str, Any]) -> int:
    return 500 if error.get("type") == "server_error" else 400


class BatchRunner:
    """Creates batches and drives them to an end. Start after the JobRunner; stop before it."""

    def __init__(self, jobs: JobRunner, store: BatchStore, blobs: BlobStore):
        self.jobs = jobs
        self.store = store
        self.blobs = blobs
        self._explain: Explain | None = None
        self._render: Render | None = None
        self._loop: asyncio.Task | None = None
        self._wake = asyncio.Event()

    def start(self, explain: Explain, render: Render) -> None:
        self._explain, self._render = explain, render
        self._wake = asyncio.Event()
        self._loop = asyncio.create_task(self._drive(), name="batch-driver")

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
            self._loop = None

    # ---- the API's operations ------------------------------------------------------------------

    def create(self, principal: Principal, input_file_id: str, endpoint: str, completion_window: str,
               metadata: Mapping[str, Any], extra: Mapping[str, Any]) -> BatchRecord:
        source = self.store.get_file(principal.tenant_id, input_file_id)
        if source.purpose != "batch":
            raise InvalidRequest(f"File {input_file_id} has purpose '{source.purpose}', not 'batch'.",
                                 "input_file_id", "invalid_file")
        lines = parse_lines(self.blobs.get(source.content_hash), endpoint)
        now = int(time.time())
        record = self.store.add_batch(new_id("batch_"), principal.tenant_id, principal.key_id, input_file_id,
                                      endpoint, completion_window, metadata, extra,
                                      {"expires_at": now + WINDOW_S[completion_window]},
                                      [line.custom_id for line in lines])
        self._wake.set()
        return record

    def cancel(self, tenant_id: str, batch_id: str) -> BatchRecord:
        self.store.set_status(batch_id, "cancelling", ("validating", "in_progress"), tenant_id=tenant_id)
        self._wake.set()
        return self.store.get_batch(tenant_id, batch_id)

    # ---- the background loop -------------------------------------------------------------------

    async def _drive(self) -> None:
        while True:
            try:
                for batch in await asyncio.to_thread(self.store.active_batches):
                    await self._advance(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("batch driver step failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S)

    async def _advance(self, batch: BatchRecord) -> None:
        if batch.status == "validating":
            await self._enqueue(batch)
            return
        counts = await asyncio.to_thread(self.store.counts, batch.id)
        open_ = counts.get("queued", 0) + counts.get("running", 0) + counts.get("pending", 0)
        if batch.status == "in_progress" and time.time() > batch.times.get("expires_at", float("inf")):
            await self._stop_jobs(batch)
            await self._finalise(batch, "expired")
        elif batch.status == "cancelling":
            await self._stop_jobs(batch)
            await self._finalise(batch, "cancelled")
        elif batch.status == "finalizing" or (open_ == 0 and await asyncio.to_thread(
                self.store.set_status, batch.id, "finalizing", ("in_progress",))):
            await self._finalise(batch, "completed")  # (finalizing already: a restart cut the finalisation short)

    async def _enqueue(self, batch: BatchRecord) -> None:
        """Queue each line not yet queued or refused; then the batch is in progress."""
        assert self._explain is not None
        principal = Principal(tenant_id=batch.tenant_id, tenant_name="", key_id=batch.key_id)
        try:
            source = await asyncio.to_thread(self.store.get_file, batch.tenant_id, batch.input_file_id)
            lines = parse_lines(await asyncio.to_thread(self.blobs.get, source.content_hash), batch.endpoint)
        except Exception as error:
            failure = {"code": "invalid_file", "message": f"The input file can no longer be read: {error}",
                       "param": "input_file_id", "line": None}
            await asyncio.to_thread(self.store.set_status, batch.id, "failed", ("validating",), errors=[failure])
            return
        for item in await asyncio.to_thread(self.store.pending_items, batch.id):
            current = await asyncio.to_thread(self.store.get_batch, None, batch.id)
            if current.status != "validating":  # cancelled meanwhile
                return
            line = lines[item.line]
            job_id = line_job_id(batch.id, item.line)
            queued = await asyncio.to_thread(self._queued_job, batch.tenant_id, job_id)
            if queued is not None:  # queued before a crash cut this loop short: link it, do not make it again
                await asyncio.to_thread(self.store.set_item, item.seq, job_id=queued.id)
                continue
            try:
                job = await self.jobs.submit(principal, batch.endpoint, line.body, BATCH_PRIORITY,
                                             {"batch_id": batch.id, "custom_id": line.custom_id}, job_id=job_id)
            except Exception as error:
                explained = await self._explain(error)
                if explained is None:
                    log.exception("batch %s line %d could not be queued", batch.id, item.line)
                    explained = (500, {"message": "The request could not be queued.", "type": "server_error",
                                       "param": None, "code": "server_error"})
                status, body = explained
                await asyncio.to_thread(self.store.set_item, item.seq, status_code=status, error=body)
            else:
                await asyncio.to_thread(self.store.set_item, item.seq, job_id=job.id)
        await asyncio.to_thread(self.store.set_status, batch.id, "in_progress", ("validating",))

    def _queued_job(self, tenant_id: str, job_id: str) -> JobRecord | None:
        try:
            return self.jobs.store.get_job(tenant_id, job_id)
        except JobNotFound:
            return None

    async def _stop_jobs(self, batch: BatchRecord) -> None:
        for item in await asyncio.to_thread(self.store.items_with_jobs, batch.id):
            if item.job is not None and item.job.status in ("queued", "running"):
                await asyncio.to_thread(self.jobs.cancel, batch.tenant_id, item.job.id)

    async def _finalise(self, batch: BatchRecord, final: str) -> None:
        items = await asyncio.to_thread(self.store.items_with_jobs, batch.id)
        if final == "cancelled" and any(item.job is not None and item.job.status == "running" for item in items):
            return  # a running job is being stopped; look again next round
        outputs, errors = await asyncio.to_thread(self._lines, batch, items, final)
        files = []
        for rows, kind in ((outputs, "output"), (errors, "error")):
            if not rows:
                files.append(None)
                continue
            data = jsonl(rows)
            digest = await asyncio.to_thread(self.blobs.put, data)
            files.append(NewFile(new_id("file-"), f"{batch.id}_{kind}.jsonl", len(data), digest))
        source = {"cancelled": ("cancelling",), "expired": ("in_progress",)}.get(final, ("finalizing",))
        if await asyncio.to_thread(self.store.finish_batch, batch.id, final, source, "batch_output", *files):
            log.info("batch %s %s: %d succeeded, %d failed", batch.id, final, len(outputs), len(errors))

    def _lines(self, batch: BatchRecord, items: list[BatchItem],
               final: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(output rows, error rows) in the upstream batch output format."""
        assert self._render is not None
        outputs, errors = [], []
        for item in items:
            row: dict[str, Any] = {"id": new_id("batch_req_"), "custom_id": item.custom_id, "response": None,
                                   "error": None}
            job = item.job
            if item.status_code is not None:  # refused when queued, as the synchronous endpoint would refuse it
                row["response"] = {"status_code": item.status_code, "request_id": None,
                                   "body": {"error": item.error}}
            elif job is not None and job.status == "succeeded":
                row["response"] = {"status_code": 200, "request_id": job.id, "body": self._render(batch, job)}
                outputs.append(row)
                continue
            elif job is not None and job.status == "failed" and job.error is not None:
                row["response"] = {"status_code": error_status(job.error), "request_id": job.id,
                                   "body": {"error": job.error}}
            elif job is not None and job.status == "cancelled" and final == "completed":  # its own job, cancelled
                row["error"] = {"code": "request_cancelled", "message": f"This request's job ({job.id}) was cancelled "
                                                                        "before it was completed."}
            else:  # cancelled, expired, or never queued
                code = "batch_expired" if final == "expired" else "batch_cancelled"
                row["error"] = {"code": code, "message": f"The batch was {final} before this request was "
                                                         "completed."}
            errors.append(row)
        return outputs, errors
