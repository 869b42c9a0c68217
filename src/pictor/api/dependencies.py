"""The routes' FastAPI dependencies: the built components (see pictor.assembly, the composition root), the caller,
and signed links to the caller's images."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from pictor.api.errors import ApiError
from pictor.api.permissions import allows, permission_for
from pictor.api.security import authenticate
from pictor.assembly import Components
from pictor.storage import Principal

__all__ = ["Caller", "Components", "components", "image_links", "principal", "tenant_links"]


def components(request: Request) -> Components:
    return request.app.state.components


def principal(request: Request) -> Principal:
    """The authenticated caller, allowed by its key's role to call the route that matched (a 403 naming the
    permission otherwise); also where each key's rate limit is applied."""
    parts = components(request)
    started = time.perf_counter()
    caller = getattr(request.state, "authenticated", None) or authenticate(request, parts.database,
                                                                           parts.keyless_principal)
    route = getattr(request.scope.get("route"), "path", request.url.path)
    needed = permission_for(request.method, route)
    if not allows(caller.role, needed):
        raise ApiError(403, f"This key's role ({caller.role}) does not have the '{needed or 'unlisted route'}' "
                            "permission this request needs.", "invalid_request_error", None, "permission_denied")
    parts.limiter.check(caller.key_id or caller.tenant_id)
    request.state.principal = caller
    request.state.auth_ms = (time.perf_counter() - started) * 1000  # a step of Server-Timing
    return caller


Caller = Annotated[Principal, Depends(principal)]


def tenant_links(parts: Components, tenant_id: str, request_base: str) -> Callable[[str], str]:
    """Image id -> a link to one of the tenant's images: the blob store's presigned link where the settings ask for
    one, else Pictor's own signed link (LinkSigner). The one builder of every `url` an answer carries."""
    signed = parts.signer.links(tenant_id, request_base)
    return lambda image_id: parts.presigned_link(tenant_id, image_id) or signed(image_id)


def image_links(request: Request, caller: Principal) -> Callable[[str], str]:
    """The caller's image links, under the address this request came to (when no public URL is set)."""
    return tenant_links(components(request), caller.tenant_id, str(request.base_url))
