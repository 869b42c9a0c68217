"""`pictor batch run FILE`: a JSONL of Images requests through the Batch API, with a progress bar, resumable.

The batch's id is kept in a small state file beside the output, so running the same command again after an
interruption (of this command, or of the server) follows the same batch to its end instead of starting anew.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pictor.commands.remote import PictorClient, RemoteError

POLL_S = 0.5
ENDED = ("completed", "failed", "cancelled", "expired")


@dataclass
class BatchOutcome:
    batch_id: str
    status: str
    total: int
    completed: int
    failed: int
    output: Path | None  # the output JSONL (one line per succeeded request)
    errors: Path | None  # the error JSONL (one line per refused or failed request)
    images: list[Path] = field(default_factory=list)  # image files written, when an image folder was asked for
    resumed: bool = False


def _endpoint(data: bytes) -> str:
    """The one endpoint every line names (the server checks each line again, naming any bad one)."""
    for raw in data.decode("utf-8", errors="replace").splitlines():
        if raw.strip():
            try:
                url = json.loads(raw).get("url")
            except (json.JSONDecodeError, AttributeError):
                raise RemoteError("the first request line is not a JSON object") from None
            if not isinstance(url, str):
                raise RemoteError("the first request line has no 'url'")
            return url
    raise RemoteError("the requests file is empty")


def _state(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _start_or_resume(client: PictorClient, requests: Path, data: bytes, state_path: Path,
                     metadata: dict[str, str]) -> tuple[dict[str, Any], bool]:
    digest = hashlib.sha256(data).hexdigest()
    state = _state(state_path)
    if state.get("sha256") == digest and state.get("batch_id"):
        try:
            batch = client.get(f"/v1/batches/{state['batch_id']}")
        except RemoteError:
            batch = None  # another server or data folder: start afresh
        if batch is not None and batch["status"] not in ("failed", "cancelled", "expired"):
            return batch, True
    uploaded = client.upload(requests.name, data)
    batch = client.post("/v1/batches", {"input_file_id": uploaded["id"], "endpoint": _endpoint(data),
                                        "completion_window": "24h", "metadata": metadata or None})
    state_path.parent.mkdir(parents=True, exist_ok=True)
    state_path.write_text(json.dumps({"batch_id": batch["id"], "sha256": digest, "input_file_id": uploaded["id"]}))
    return batch, False


def _save_images(client: PictorClient, rows: list[dict[str, Any]], folder: Path) -> list[Path]:
    """Each succeeded line's images as files named after its custom_id (b64_json, or fetched from its link)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for row in rows:
        body = row["response"]["body"]
        extension = body.get("output_format", "png")
        for index, item in enumerate(body.get("data", [])):
            data = (base64.b64decode(item["b64_json"]) if item.get("b64_json")
                    else client.content(item["url"]))
            path = folder / f"{row['custom_id']}_{index}.{extension}"
            path.write_bytes(data)
            written.append(path)
    return written


def run_batch(client: PictorClient, requests: Path, output: Path, errors: Path | None = None,
              images: Path | None = None, metadata: dict[str, str] | None = None,
              on_progress: Callable[[int, int], None] | None = None) -> BatchOutcome:
    """Upload `requests`, run them as one batch (or follow the batch an earlier run started), wait for the end,
    and write the output and error files; `on_progress(done, total)` as lines finish."""
    data = requests.read_bytes()
    state_path = output.with_name(output.name + ".batch.json")
    batch, resumed = _start_or_resume(client, requests, data, state_path, metadata or {})
    while batch["status"] not in ENDED:
        counts = batch["request_counts"]
        if on_progress is not None:
            on_progress(counts["completed"] + counts["failed"], counts["total"])
        time.sleep(POLL_S)
        batch = client.get(f"/v1/batches/{batch['id']}")
    counts = batch["request_counts"]
    if on_progress is not None:
        on_progress(counts["completed"] + counts["failed"], counts["total"])
    outcome = BatchOutcome(batch["id"], batch["status"], counts["total"], counts["completed"], counts["failed"],
                           None, None, resumed=resumed)
    rows: list[dict[str, Any]] = []
    if batch.get("output_file_id"):
        content = client.content(f"/v1/files/{batch['output_file_id']}/content")
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(content)
        outcome.output = output
        rows = [json.loads(line) for line in content.decode().splitlines() if line.strip()]
    if batch.get("error_file_id"):
        errors = errors or output.with_name(output.stem + ".errors.jsonl")
        errors.write_bytes(client.content(f"/v1/files/{batch['error_file_id']}/content"))
        outcome.errors = errors
    if images is not None:
        outcome.images = _save_images(client, rows, images)
    return outcome
