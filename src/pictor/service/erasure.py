"""Erasing an image's prompt from everything that kept it, the stored files of batches included.

The database rows (the image, its salt, the session turn, the job's request and result) are emptied by
`Database.erase_prompt`; the lines of a batch's input, output and error files that ran the image's job are
rewritten here without their prompt fields, and the old bytes are removed when nothing else holds them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pictor.storage import BlobStore, Database
from pictor.storage.batches import BatchStore
from pictor.storage.database import ImageRecord, without_prompts


def erase_prompt(database: Database, blobs: BlobStore, tenant_id: str, image_id: str) -> ImageRecord:
    """Erase one of the tenant's images' prompt everywhere (NotFound for another tenant's)."""
    database.get_image(tenant_id, image_id)  # the tenant's, or not found
    jobs = database.jobs_that_made(tenant_id, image_id)
    record = database.erase_prompt(image_id)
    scrub_batch_files(database, blobs, tenant_id, jobs)
    return record


def scrub_batch_files(database: Database, blobs: BlobStore, tenant_id: str, job_ids: Sequence[str]) -> int:
    """Rewrite the batch files that hold these jobs' lines without their prompt fields; returns how many files
    changed."""
    store = BatchStore(database)
    changed_files = 0
    for file_id, custom_ids in store.batch_lines_of_jobs(tenant_id, job_ids):
        record = store.get_file(tenant_id, file_id)
        lines, changed = [], False
        for line in blobs.get(record.content_hash).decode("utf-8", errors="replace").splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                lines.append(line)
                continue
            if isinstance(item, dict) and item.get("custom_id") in custom_ids:
                scrubbed = without_prompts(item)
                changed |= scrubbed != item
                line = json.dumps(scrubbed, ensure_ascii=False)
            lines.append(line)
        if not changed:
            continue
        data = ("\n".join(lines) + "\n").encode("utf-8")
        old = store.replace_file_content(tenant_id, file_id, blobs.put(data), len(data))
        if not store.holds_blob(old):
            blobs.delete(old)
        changed_files += 1
    return changed_files
