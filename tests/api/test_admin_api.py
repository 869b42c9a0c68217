"""The tenant admin API through HTTP: an admin key manages its tenant's keys and settings, sees its quotas, and
every change is an admin audit entry; other roles and other tenants' keys are refused."""

from __future__ import annotations

from .test_moderation import audit_entries
from .test_roles import key_with


def test_an_admin_manages_its_tenants_keys(server, http):
    admin = {"authorization": f"Bearer {key_with(server, 'admin')}"}
    made = http.post("/v1/admin/keys", json={"role": "reader", "label": "dashboard", "expires_in_days": 30},
                     headers=admin)
    assert made.status_code == 200, made.text
    reader = made.json()
    assert reader["role"] == "reader" and reader["key"].startswith("pk-") and reader["expires_at"]
    as_reader = {"authorization": f"Bearer {reader['key']}"}
    assert http.get("/v1/images", headers=as_reader).status_code == 200
    assert http.post("/v1/images/generations", json={"prompt": "a red circle"}, headers=as_reader).status_code == 403
    listed = http.get("/v1/admin/keys", headers=admin).json()
    assert reader["id"] in [key["id"] for key in listed["data"]] and "key" not in listed["data"][0]
    rotated = http.post(f"/v1/admin/keys/{reader['id']}/rotate", json={"grace_hours": 0}, headers=admin).json()
    assert rotated["role"] == "reader" and rotated["replaces"] == reader["id"]
    assert http.get("/v1/images", headers=as_reader).status_code == 401  # no grace: the old key ends now
    fresh = {"authorization": f"Bearer {rotated['key']}"}
    assert http.get("/v1/images", headers=fresh).status_code == 200
    assert http.post(f"/v1/admin/keys/{rotated['id']}/revoke", headers=admin).json()["revoked_at"]
    assert http.get("/v1/images", headers=fresh).status_code == 401
    actions = [e["action"] for e in audit_entries(server) if e["event"] == "admin"
               and e["details"].get("subject_key") in (reader["id"], rotated["id"])]
    assert actions == ["key_created", "key_rotated", "key_revoked"]


def test_an_admin_sets_its_tenants_policy_level_badge_and_retention(server, http):
    admin = {"authorization": f"Bearer {key_with(server, 'admin')}"}
    changed = http.patch("/v1/admin/settings", json={"moderation_level": "strict",
                                                     "badge": {"text": "AI", "corner": "top-left"},
                                                     "retention_days": 30}, headers=admin)
    assert changed.status_code == 200, changed.text
    settings = changed.json()
    assert settings["moderation_level"] == "strict" and settings["badge"]["text"] == "AI"
    assert settings["retention_days"] == 30 and settings["quotas"] == {}
    refused = http.post("/v1/images/generations", json={"prompt": "a sexy woman in a red dress", "size": "64x64"},
                        headers=admin)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "moderation_blocked"
    off = http.patch("/v1/admin/settings", json={"badge": None, "retention_days": None, "moderation_level": None},
                     headers=admin).json()
    assert off["badge"] is None and off["retention_days"] is None and off["moderation_level"] is None
    bad = http.patch("/v1/admin/settings", json={"quotas": {"images_per_day": 10**9}}, headers=admin)
    assert bad.status_code == 400  # a tenant does not set its own quotas
    changes = [e for e in audit_entries(server) if e["event"] == "admin" and e["action"] == "tenant_settings_changed"]
    assert changes and changes[-1]["actor"].startswith("key:")


def test_the_admin_api_is_for_admins_of_their_own_tenant(server, http):
    member = {"authorization": f"Bearer {key_with(server, 'member')}"}
    refused = http.get("/v1/admin/keys", headers=member)
    assert refused.status_code == 403 and "admin" in refused.json()["error"]["message"]
    other_tenants_key = http.get("/v1/admin/keys", headers={"authorization": f"Bearer {server.demo_key}"})
    some_key = other_tenants_key.json()["data"][0]["id"]
    admin = {"authorization": f"Bearer {key_with(server, 'admin')}"}
    assert http.post(f"/v1/admin/keys/{some_key}/revoke", headers=admin).status_code == 404
