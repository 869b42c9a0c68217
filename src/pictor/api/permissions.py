"""What each key role may do: every `/v1` route needs one permission, and each role holds a set of them.

One table for the whole API, read by the authentication dependency from the route that matched, so a route
cannot be added without saying who may call it (a route missing here is refused to everyone; a test checks
that every route is listed).
"""

from __future__ import annotations

ROLES = ("admin", "member", "reader", "auditor")

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset({"generate", "read", "provenance", "audit", "erase", "admin"}),
    "member": frozenset({"generate", "read", "provenance", "erase"}),
    "reader": frozenset({"read", "provenance"}),
    "auditor": frozenset({"provenance", "audit"}),
}

ROUTE_PERMISSIONS: dict[tuple[str, str], str] = {
    **{("POST", path): "generate" for path in (
        "/v1/images/generations", "/v1/images/edits", "/v1/images/variations", "/v1/jobs", "/v1/jobs/{job_id}/cancel",
        "/v1/batches", "/v1/batches/{batch_id}/cancel", "/v1/files", "/v1/responses", "/v1/sessions",
        "/v1/sessions/{session_id}/turns", "/v1/sessions/{session_id}/undo")},
    ("DELETE", "/v1/files/{file_id}"): "generate",
    **{("GET", path): "read" for path in (
        "/v1/images", "/v1/images/{image_id}/content", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/events",
        "/v1/batches", "/v1/batches/{batch_id}", "/v1/files", "/v1/files/{file_id}", "/v1/files/{file_id}/content",
        "/v1/responses/{response_id}", "/v1/sessions/{session_id}", "/v1/models", "/v1/models/{name}",
        "/v1/usage")},
    ("POST", "/v1/provenance/verify"): "provenance",
    ("GET", "/v1/images/{image_id}/provenance"): "provenance",
    ("GET", "/v1/images/{image_id}/lineage"): "provenance",
    ("GET", "/v1/audit/entries/{index}/proof"): "provenance",
    ("GET", "/v1/audit/checkpoint"): "audit",
    ("GET", "/v1/audit/consistency"): "audit",
    ("DELETE", "/v1/images/{image_id}/prompt"): "erase",
    ("DELETE", "/v1/images/{image_id}"): "erase",
    **{(method, path): "admin" for method, path in (
        ("GET", "/v1/admin/keys"), ("POST", "/v1/admin/keys"), ("POST", "/v1/admin/keys/{key_id}/revoke"),
        ("POST", "/v1/admin/keys/{key_id}/rotate"), ("GET", "/v1/admin/settings"), ("PATCH", "/v1/admin/settings"))},
}


def permission_for(method: str, path: str) -> str | None:
    """The permission a route needs (None: not listed, which no role holds)."""
    return ROUTE_PERMISSIONS.get((method.upper(), path))


def allows(role: str, permission: str | None) -> bool:
    return permission is not None and permission in ROLE_PERMISSIONS.get(role, frozenset())
