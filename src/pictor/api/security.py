"""Who is calling (API key -> tenant), how often (a token bucket per key), and signed image links."""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from collections.abc import Callable, Mapping

from fastapi import Request

from pictor.api.errors import ApiError
from pictor.storage import Database, Principal

DEMO_TENANT = "demo"


def bearer_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


def authenticate(request: Request, database: Database, keyless_principal: Principal | None) -> Principal:
    key = bearer_key(request)
    if key is None:
        if keyless_principal is not None:
            return keyless_principal
        raise ApiError(401, "You didn't provide an API key. Send it as 'Authorization: Bearer KEY'.",
                       "invalid_request_error", None, "invalid_api_key")
    principal = database.authenticate(key)
    if principal is None:
        raise ApiError(401, "Incorrect API key provided.", "invalid_request_error", None, "invalid_api_key")
    return principal


class RateLimiter:
    """A token bucket per key: `per_minute` requests a minute, bursts up to the same number."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key_id: str) -> None:
        if self.per_minute <= 0:
            return
        now, rate = time.monotonic(), self.per_minute / 60.0
        with self._lock:
            tokens, last = self._buckets.get(key_id, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - last) * rate)
            if tokens < 1.0:
                retry = max(1, int((1.0 - tokens) / rate + 0.999))
                self._buckets[key_id] = (tokens, now)
                raise ApiError(429, f"Rate limit reached: {self.per_minute} requests per minute for this key.",
                               "rate_limit_error", None, "rate_limit_exceeded", {"retry-after": str(retry)})
            self._buckets[key_id] = (tokens - 1.0, now)


class LinkSigner:
    """HMAC-signed, expiring links to one tenant's image: a `url` response a browser can open.

    `links` builds them and `signed_tenant` checks them, so that every link has the same base, path and signature
    (api/dependencies.tenant_links, which every answer's links come from, tries the blob store's presigned link
    first).
    """

    def __init__(self, secret: bytes, lifetime_s: int, public_url: str | None = None):
        self.secret = secret
        self.lifetime_s = lifetime_s
        self.public_url = public_url  # the server's address as clients see it (behind a proxy); None: as asked

    def _signature(self, tenant_id: str, image_id: str, expires: int) -> str:
        message = f"{tenant_id}:{image_id}:{expires}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def query(self, tenant_id: str, image_id: str) -> str:
        expires = math.ceil(time.time()) + self.lifetime_s  # rounded up: a link lives at least lifetime_s
        return f"tenant={tenant_id}&expires={expires}&signature={self._signature(tenant_id, image_id, expires)}"

    def links(self, tenant_id: str, request_base: str) -> Callable[[str], str]:
        """Image id -> a signed link to the tenant's image, under the public URL when one is set, else under
        `request_base`: the address the asking request came to (a batch keeps the one it was created at)."""
        base = (self.public_url or request_base).rstrip("/")
        return lambda image_id: f"{base}/v1/images/{image_id}/content?{self.query(tenant_id, image_id)}"

    def verify(self, tenant_id: str, image_id: str, expires: int, signature: str) -> bool:
        if expires < time.time():
            return False
        return hmac.compare_digest(self._signature(tenant_id, image_id, expires), signature)

    def signed_tenant(self, image_id: str, query: Mapping[str, str]) -> str | None:
        """The tenant a link's query (`tenant`, `expires`, `signature`) names, if it is signed for this image and
        has not expired; None otherwise."""
        try:
            expires = int(query.get("expires", "0"))
        except ValueError:
            expires = 0
        tenant_id = query.get("tenant", "")
        return tenant_id if self.verify(tenant_id, image_id, expires, query.get("signature", "")) else None
