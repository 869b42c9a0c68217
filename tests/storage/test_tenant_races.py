"""Processes that make the same tenant at once (`pictor keys create --tenant`, servers' first start) all get it."""

import threading

from pictor.storage import Database


def test_ensuring_one_tenant_at_once_gives_everyone_the_same_tenant(db: Database) -> None:
    tenants, errors = [], []
    start = threading.Barrier(8)

    def ensure() -> None:
        start.wait()
        try:
            tenants.append(db.ensure_tenant("acme"))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=ensure) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, f"{len(errors)} of 8 failed, the first with {errors[0]!r}"
    assert len(tenants) == 8 and len(set(tenants)) == 1
