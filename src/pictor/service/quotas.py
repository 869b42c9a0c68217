"""Per-tenant quotas: what a tenant may use per UTC day (images, denoising steps) and hold at once (queued and
running jobs, sessions, files, stored bytes). Set by the operator (`pictor tenants quota`), kept in the tenant's
settings under "quotas", enforced through the database so that every process sharing it holds the same line.

A request beyond a quota is refused before any work with a 429 `insufficient_quota` naming the quota.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from pictor.service.errors import ServiceError
from pictor.storage import Database

QUOTA_NAMES = ("images_per_day", "steps_per_day", "running_jobs", "queued_jobs", "sessions", "files", "stored_bytes",
               "work_per_minute")


class QuotaExceeded(ServiceError):
    kind = "quota_exceeded"

    def __init__(self, quota: str, limit: int, used: int):
        super().__init__(f"This request would pass the tenant's '{quota}' quota ({used} used of {limit}); "
                         "ask the tenant's admin to raise it, or wait for it to reset (daily quotas at 00:00 UTC).",
                         None, "insufficient_quota", {"quota": {"name": quota, "limit": limit, "used": used}})


@dataclass(frozen=True)
class Quotas:
    images_per_day: int | None = None
    steps_per_day: int | None = None
    running_jobs: int | None = None
    queued_jobs: int | None = None
    sessions: int | None = None
    files: int | None = None
    stored_bytes: int | None = None
    work_per_minute: int | None = None  # a rate limit: see work_units

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Quotas:
        raw = settings.get("quotas") or {}
        return cls(**{name: int(raw[name]) for name in QUOTA_NAMES if raw.get(name) is not None})

    def to_dict(self) -> dict[str, int | None]:
        return asdict(self)


class RateLimited(ServiceError):
    kind = "rate_limited"

    def __init__(self, message: str, retry_after: int | None):
        super().__init__(message, None, "rate_limit_exceeded")
        self.retry_after = retry_after


def work_units(images: int, width: int, height: int, steps: int) -> int:
    """What a request costs a rate limit: images x megapixels x steps, rounded up (one 1024x1024 image at 11
    steps is 12; ten of them at 4096x4096 are 1,846)."""
    return max(1, math.ceil(images * width * height / 1_000_000 * steps))


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


class QuotaKeeper:
    """Checks and counts a tenant's quotas in the database."""

    def __init__(self, database: Database):
        self.database = database

    def quotas(self, tenant_id: str) -> Quotas:
        return Quotas.from_settings(self.database.tenant_settings(tenant_id))

    def admit(self, tenant_id: str, key_id: str | None, images: int, steps: int, work: int | None,
              key_limit: int | None = None, default_tenant_limit: int | None = None) -> tuple[str, int, int]:
        """A request's admission, reading the tenant's quotas once: its `work` charged to this minute's rate limits
        (None: not rate limited), then its images and steps counted against today's quotas (all or nothing). The
        reservation is to be given back with `release` if the work is not done."""
        quotas = self.quotas(tenant_id)
        if work is not None:
            self._charge_rate(tenant_id, key_id, work, quotas.work_per_minute or default_tenant_limit, key_limit)
        day = today()
        exceeded = self.database.reserve_usage(tenant_id, day, images, steps, quotas.images_per_day,
                                               quotas.steps_per_day)
        if exceeded is not None:
            used = self.database.usage(tenant_id, day)
            name = "images_per_day" if exceeded == "images" else "steps_per_day"
            raise QuotaExceeded(name, getattr(quotas, name), used[exceeded])
        return day, images, steps

    def release(self, tenant_id: str, reservation: tuple[str, int, int]) -> None:
        day, images, steps = reservation
        self.database.release_usage(tenant_id, day, images, steps)

    def _charge_rate(self, tenant_id: str, key_id: str | None, work: int, tenant_limit: int | None,
                     key_limit: int | None) -> None:
        """Charge `work` to this minute of the tenant and of the key; a 429 with Retry-After beyond either."""
        now = time.time()
        minute = int(now // 60)
        subjects = [("tenant", f"tenant:{tenant_id}", tenant_limit)]
        if key_id is not None:
            subjects.append(("key", f"key:{key_id}", key_limit))
        for kind, subject, limit in subjects:
            if not limit:
                continue
            if work > limit:
                raise RateLimited(f"This request is {work} units of work (images x megapixels x steps); the "
                                  f"{kind}'s limit is {limit} a minute: ask for fewer or smaller images, or fewer "
                                  "steps.", None)
            if not self.database.charge_window(subject, minute, work, limit):
                raise RateLimited(f"Rate limit reached: {limit} units of work a minute for this {kind}.",
                                  max(1, math.ceil(60 - now % 60)))

    def at_running_cap(self, tenant_id: str) -> bool:
        """Whether the tenant already runs as many jobs as its `running_jobs` quota allows."""
        limit = self.quotas(tenant_id).running_jobs
        return limit is not None and self.database.usage(tenant_id, today())["running_jobs"] >= limit

    def check_holdings(self, tenant_id: str, **adding: int) -> None:
        """Refuse when adding this many (queued_jobs=1, sessions=1, files=1, stored_bytes=N) would pass a quota.
        Counted, not reserved: two processes adding the last one at the same moment may both pass."""
        quotas = self.quotas(tenant_id)
        limits = {name: getattr(quotas, name) for name in adding if getattr(quotas, name) is not None}
        if not limits:
            return
        used = self.database.usage(tenant_id, today())
        for name, limit in limits.items():
            if used[name] + adding[name] > limit:
                raise QuotaExceeded(name, limit, used[name])

    def report(self, tenant_id: str) -> dict[str, Any]:
        """Today's usage and the holdings beside the quotas, for GET /v1/usage."""
        day = today()
        used = self.database.usage(tenant_id, day)
        quotas = self.quotas(tenant_id).to_dict()
        return {"object": "usage", "day": day,
                "used": {"images_per_day": used["images"], "steps_per_day": used["steps"],
                         **{name: used[name] for name in ("running_jobs", "queued_jobs", "sessions", "files",
                                                          "stored_bytes")}},
                "quotas": quotas}
