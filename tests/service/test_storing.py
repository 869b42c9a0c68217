"""Storing (service/storing): outputs marked, signed and stored with their records and audit entries in one
transaction; a failure part-way stores no record and closes its audit reservations."""

from __future__ import annotations

import asyncio

import pytest
from PIL import Image

from pictor.core import ImageJob, JobKind, sha256_hex
from pictor.engine.protocol import EngineResult

from .conftest import world_png


def prepared(built, principal, **fields):
    return asyncio.run(built.service.prepare(ImageJob(tenant_id=principal.tenant_id, **fields), principal))


def test_an_edit_is_stored_with_its_upload_as_parent_and_a_verifiable_audit_entry(built, principal):
    source = world_png()
    plan = prepared(built, principal, kind=JobKind.EDIT, prompt="make the red circle blue", images=(source,))
    made = Image.new("RGB", (plan.width, plan.height), (10, 200, 10))
    produced = built.service.outputs.store(plan, principal, [EngineResult(made, seed=4)])
    artifact = produced[0].artifact
    record = built.database.get_image(principal.tenant_id, artifact.id)
    upload = built.database.find_image(principal.tenant_id, sha256_hex(source))
    assert upload is not None and record.parents == (upload.id,)
    assert record.params["mask_blend_px"] == 0 and record.params["auto_mask"] is True
    assert built.blobs.get(record.content_hash) == artifact.data
    verified = built.provenance.verify(principal, artifact.data)
    assert verified["c2pa"]["validation_state"] in ("Trusted", "Valid")
    # The same input again is the tenant's own image now: it is the parent, and no second upload is recorded.
    again = built.service.outputs.store(plan, principal, [EngineResult(made, seed=5)])
    assert built.database.get_image(principal.tenant_id, again[0].artifact.id).parents == (upload.id,)
    assert built.governance.audit.verify().ok


def test_a_failure_part_way_stores_no_record_and_closes_the_reservations(built, principal):
    plan = prepared(built, principal, kind=JobKind.GENERATE, prompt="a red circle", size="64x64", n=2)
    before = len(built.database.list_images(principal.tenant_id, limit=10000))
    audited = len(built.database.audit_entries())
    good = EngineResult(Image.new("RGB", (64, 64), (200, 10, 10)), seed=1)
    broken = EngineResult(None, seed=2)  # type: ignore[arg-type]  # marking it fails, after the first was signed
    with pytest.raises(Exception):  # noqa: B017 - whatever the marks raise: the point is what is left behind
        built.service.outputs.store(plan, principal, [good, broken])
    assert len(built.database.list_images(principal.tenant_id, limit=10000)) == before
    assert len(built.database.audit_entries()) == audited + 2  # both reservations, closed as failed entries
    assert built.governance.audit.verify().ok
