"""Quota counters under concurrent writers, on SQLite and PostgreSQL: the first charge of a day or a minute makes its
counter row while others race to make it too, and conditional updates never pass the limit together."""

from collections.abc import Callable

from concurrent_writers import run_writers

from pictor.storage import Database

WRITERS, CHARGES = 8, 20


def race(charge: Callable[[], object]) -> list[object]:
    """WRITERS threads each charging CHARGES times at once; every outcome, or the first error raised."""
    outcomes: list[object] = []

    def work(_: int) -> None:
        for _ in range(CHARGES):
            outcomes.append(charge())

    run_writers(work, WRITERS)
    return outcomes


def test_a_rate_window_admits_exactly_its_limit(db: Database) -> None:
    outcomes = race(lambda: db.charge_window("tenant:t", 29_000_000, 1, limit=100))
    assert (outcomes.count(True), outcomes.count(False)) == (100, 60)
    assert not db.charge_window("tenant:t", 29_000_000, 1, limit=100)
    assert db.charge_window("tenant:t", 29_000_001, 100, limit=100)  # the next minute starts again


def test_daily_usage_reserves_exactly_up_to_the_quota(db: Database) -> None:
    tenant = db.create_tenant("acme").id
    outcomes = race(lambda: db.reserve_usage(tenant, "2026-01-02", 1, 10, max_images=150, max_steps=None))
    assert (outcomes.count(None), outcomes.count("images")) == (150, 10)
    assert (db.usage(tenant, "2026-01-02")["images"], db.usage(tenant, "2026-01-02")["steps"]) == (150, 1500)


def test_concurrent_releases_give_back_exactly_what_was_reserved(db: Database) -> None:
    tenant = db.create_tenant("acme").id
    race(lambda: db.reserve_usage(tenant, "2026-01-03", 2, 3, max_images=None, max_steps=None))
    assert db.usage(tenant, "2026-01-03")["images"] == 2 * WRITERS * CHARGES
    race(lambda: db.release_usage(tenant, "2026-01-03", 1, 1))
    assert (db.usage(tenant, "2026-01-03")["images"], db.usage(tenant, "2026-01-03")["steps"]) == \
        (WRITERS * CHARGES, 2 * WRITERS * CHARGES)
