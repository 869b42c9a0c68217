"""Deleting images through the API and by retention: bytes and prompt gone, a tombstone in lineage and provenance,
an admin audit entry, and the audit log still verifies."""

from __future__ import annotations

import json

import httpx

from .helpers import run_cli
from .test_moderation import audit_entries


def make(http, headers, prompt="a purple heart in the middle on a white background") -> dict:
    response = http.post("/v1/images/generations", json={"prompt": prompt, "size": "64x64"}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["data"][0]


def test_a_deleted_image_keeps_only_its_tombstone(server, http):
    headers = {"authorization": f"Bearer {server.key_for('deleting')}"}
    parent = make(http, headers, "a navy square on the left on a white background")
    blob = server.data_dir / "blobs"
    before_files = server.blob_files()
    assert http.delete(f"/v1/images/{parent['id']}", headers=headers).json()["deleted"] is True
    assert server.blob_files() == before_files - 1
    content = http.get(f"/v1/images/{parent['id']}/content", headers=headers)
    assert content.status_code == 404 and content.json()["error"]["code"] == "image_deleted"
    lineage = http.get(f"/v1/images/{parent['id']}/lineage", headers=headers)
    assert lineage.status_code == 200 and lineage.json()["id"] == parent["id"]
    provenance = http.get(f"/v1/images/{parent['id']}/provenance", headers=headers)
    assert provenance.status_code == 200 and provenance.json()["deleted"] > 0
    assert provenance.json()["c2pa"] is None and "navy" not in json.dumps(provenance.json())
    listed = http.get("/v1/images", headers=headers).json()["data"]
    assert parent["id"] not in [item["id"] for item in listed]
    again = http.delete(f"/v1/images/{parent['id']}", headers=headers)
    assert again.status_code == 200
    deletions = [e for e in audit_entries(server) if e["event"] == "admin" and e["action"] == "image_deleted"
                 and e["details"]["image_id"] == parent["id"]]
    assert len(deletions) == 1 and deletions[0]["details"]["bytes_removed"] is True
    other = http.delete(f"/v1/images/{parent['id']}", headers={"authorization": f"Bearer {server.demo_key}"})
    assert other.status_code == 404  # another tenant's image is not found
    assert blob.is_dir()
    verified = run_cli("audit", "verify", "--data-dir", str(server.data_dir))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_signed_link_to_a_deleted_image_stops_working(server, http):
    headers = {"authorization": f"Bearer {server.key_for('deleting')}"}
    made = http.post("/v1/images/generations", json={"prompt": "a red circle", "size": "64x64",
                                                     "response_format": "url"}, headers=headers).json()["data"][0]
    assert httpx.get(made["url"], timeout=30).status_code == 200
    http.delete(f"/v1/images/{made['id']}", headers=headers)
    assert httpx.get(made["url"], timeout=30).status_code == 404


def test_retention_deletes_what_has_outlived_it(server, http):
    headers = {"authorization": f"Bearer {server.key_for('retained')}"}
    kept_elsewhere = make(http, {"authorization": f"Bearer {server.key_for('not-retained')}"})
    old = [make(http, headers)["id"] for _ in range(2)]
    directory = ("--data-dir", str(server.data_dir))
    assert run_cli("tenants", "retention", "--tenant", "retained", "--days", "0", *directory).returncode == 0
    swept = run_cli("sweep", *directory)
    assert swept.returncode == 0 and "deleted 2 images" in swept.stdout, swept.stdout + swept.stderr
    for image_id in old:
        assert http.get(f"/v1/images/{image_id}/content", headers=headers).status_code == 404
    other = http.get(f"/v1/images/{kept_elsewhere['id']}/content",
                     headers={"authorization": f"Bearer {server.key_for('not-retained')}"})
    assert other.status_code == 200
    actors = {e["actor"] for e in audit_entries(server) if e["event"] == "admin" and e["action"] == "image_deleted"
              and e["details"]["image_id"] in old}
    assert actors == {"retention"}
    assert run_cli("tenants", "retention", "--tenant", "retained", "--days", "off", *directory).returncode == 0
    assert run_cli("audit", "verify", *directory).returncode == 0
