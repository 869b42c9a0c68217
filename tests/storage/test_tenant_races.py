"""Processes that make the same tenant at once (`pictor keys create --tenant`, servers' first start) all get it."""

from concurrent_writers import run_writers

from pictor.storage import Database


def test_ensuring_one_tenant_at_once_gives_everyone_the_same_tenant(db: Database) -> None:
    tenants = []
    run_writers(lambda _: tenants.append(db.ensure_tenant("acme")))
    assert len(tenants) == 8 and len(set(tenants)) == 1
