"""Key roles through the API: every route needs one permission, each role holds a set of them; a request beyond
its role is a 403 `permission_denied` in the upstream error shape and changes nothing. Keys expire and rotate."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import openai
import pytest

from pictor.api.app import create_app
from pictor.api.permissions import ROLE_PERMISSIONS, ROLES, ROUTE_PERMISSIONS
from pictor.storage import Database, DataDir
from pictor.storage.tables import utcnow

from .helpers import run_cli

PUBLIC = {("GET", "/v1/provenance/trust_anchors")}


def key_with(server, role: str, **options) -> str:
    database = Database(DataDir.resolve(server.data_dir).database_url)
    try:
        tenant = database.ensure_tenant(f"roles-{role}")
        return database.create_key(tenant.id, label=role, role=role, **options).plaintext
    finally:
        database.close()


def test_every_route_names_the_permission_it_needs():
    routes = set()
    pending = list(create_app().router.routes)
    while pending:
        route = pending.pop()
        if getattr(route, "original_router", None) is not None:
            pending.extend(route.original_router.routes)
        elif getattr(route, "path", "").startswith("/v1/"):
            routes.update((method, route.path) for method in route.methods)
    assert routes - PUBLIC == set(ROUTE_PERMISSIONS), routes.symmetric_difference(set(ROUTE_PERMISSIONS) | PUBLIC)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_reaches_exactly_the_routes_of_its_permissions(server, http, role):
    key = key_with(server, role)
    before = server.state()
    for (method, path), permission in sorted(ROUTE_PERMISSIONS.items()):
        url = re.sub(r"\{[^}]+\}", "0", path)
        response = http.request(method, url, headers={"authorization": f"Bearer {key}"},
                                **({"json": {}} if method == "POST" else {}))
        if permission in ROLE_PERMISSIONS[role]:
            assert response.status_code != 403, (role, method, path, response.text)
        else:
            assert response.status_code == 403, (role, method, path, response.status_code, response.text)
            error = response.json()["error"]
            assert error["code"] == "permission_denied" and permission in error["message"]
    assert server.state() == before


def test_the_sdk_sees_a_permission_error(server):
    reader = server.client(key_with(server, "reader"))
    with pytest.raises(openai.PermissionDeniedError) as caught:
        reader.images.generate(prompt="a red circle", size="64x64")
    assert caught.value.code == "permission_denied"
    assert reader.models.list().data  # and reading still works


def test_an_auditor_reads_the_audit_log_but_makes_nothing(server, http):
    auditor = {"authorization": f"Bearer {key_with(server, 'auditor')}"}
    assert http.get("/v1/audit/checkpoint", headers=auditor).status_code == 200
    assert http.get("/v1/audit/consistency?old_size=0", headers=auditor).status_code == 200
    assert http.post("/v1/images/generations", json={"prompt": "a red circle"}, headers=auditor).status_code == 403
    member = {"authorization": f"Bearer {key_with(server, 'member')}"}
    assert http.get("/v1/audit/checkpoint", headers=member).status_code == 403


def test_an_expired_key_is_refused(server, http):
    key = key_with(server, "member", expires=utcnow() + timedelta(seconds=1))
    assert http.get("/v1/models", headers={"authorization": f"Bearer {key}"}).status_code == 200
    time.sleep(1.2)
    response = http.get("/v1/models", headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


def test_keys_rotate_with_a_grace_period_through_the_cli(server, http):
    made = run_cli("keys", "create", "--tenant", "rotating", "--role", "reader", "--data-dir", str(server.data_dir))
    old = made.stdout.strip()
    listed = run_cli("keys", "list", "--tenant", "rotating", "--data-dir", str(server.data_dir)).stdout
    key_id = listed.split()[0]
    assert "reader" in listed and "active" in listed
    rotated = run_cli("keys", "rotate", key_id, "--grace", "2s", "--data-dir", str(server.data_dir))
    assert rotated.returncode == 0, rotated.stderr
    new = rotated.stdout.strip()
    for key in (old, new):
        assert http.get("/v1/images", headers={"authorization": f"Bearer {key}"}).status_code == 200
    assert http.post("/v1/images/generations", json={"prompt": "a red circle"},
                     headers={"authorization": f"Bearer {new}"}).status_code == 403  # the role carried over
    time.sleep(2.2)
    assert http.get("/v1/images", headers={"authorization": f"Bearer {old}"}).status_code == 401
    assert http.get("/v1/images", headers={"authorization": f"Bearer {new}"}).status_code == 200
    assert "expired" in run_cli("keys", "list", "--tenant", "rotating", "--data-dir", str(server.data_dir)).stdout


def test_a_bad_duration_is_refused_by_the_cli(server):
    done = run_cli("keys", "create", "--tenant", "x", "--expires", "soon", "--data-dir", str(server.data_dir))
    assert done.returncode == 2 and "a number and a unit" in done.stderr


def test_admin_actions_are_audit_entries_and_the_log_still_verifies(server, http):
    def admin_entries() -> list[dict]:
        from .test_moderation import audit_entries

        # The server's background sweep may write keys that expired meanwhile (earlier tests' short-lived keys)
        # between these actions: those entries are the sweep's, not the actions under test.
        return [entry for entry in audit_entries(server) if entry["event"] == "admin" and entry["actor"] != "expiry"]

    before = len(admin_entries())
    directory = ("--data-dir", str(server.data_dir))
    key = run_cli("keys", "create", "--tenant", "audited", "--role", "member", *directory).stdout.strip()
    key_id = run_cli("keys", "list", "--tenant", "audited", *directory).stdout.split()[0]
    assert run_cli("tenants", "moderation", "--tenant", "audited", "--level", "strict", *directory).returncode == 0
    made = http.post("/v1/images/generations", json={"prompt": "a red circle", "size": "64x64"},
                     headers={"authorization": f"Bearer {key}"}).json()
    assert http.delete(f"/v1/images/{made['data'][0]['id']}/prompt",
                       headers={"authorization": f"Bearer {key}"}).status_code == 200
    assert run_cli("keys", "revoke", key_id, *directory).returncode == 0
    entries = admin_entries()[before:]
    assert [e["action"] for e in entries] == ["key_created", "tenant_moderation_changed", "prompt_erased",
                                              "key_revoked"]
    assert entries[0]["details"]["subject_key"] == key_id and entries[0]["details"]["role"] == "member"
    assert entries[0]["actor"].startswith("operator:") and entries[2]["actor"] == f"key:{key_id}"
    assert entries[2]["key_id"] == key_id and all(e["time"] for e in entries)
    verified = run_cli("audit", "verify", *directory)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_keys_expiry_is_written_to_the_audit_log_once(server):
    from .test_moderation import audit_entries

    key = key_with(server, "reader", expires=utcnow() + timedelta(seconds=1))
    database = Database(DataDir.resolve(server.data_dir).database_url)
    try:
        key_id = database.authenticate(key).key_id
    finally:
        database.close()
    time.sleep(1.2)
    for _ in range(2):
        assert run_cli("sweep", "--data-dir", str(server.data_dir)).returncode == 0
    expiries = [e for e in audit_entries(server) if e["event"] == "admin" and e["action"] == "key_expired"
                and e["details"]["subject_key"] == key_id]
    assert len(expiries) == 1 and expiries[0]["actor"] == "expiry"
