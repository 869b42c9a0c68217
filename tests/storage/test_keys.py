from collections.abc import Callable

import pytest
from scratch_databases import ScratchDatabase

from pictor.storage import Database, DataDir, TenantExists, TenantNotFound
from pictor.storage.errors import ApiKeyNotFound


def test_created_key_authenticates_to_its_tenant(db: Database) -> None:
    tenant = db.create_tenant("acme")
    new = db.create_key(tenant.id, label="ci")

    assert new.plaintext.startswith("pk-") and len(new.plaintext) >= 40
    principal = db.authenticate(new.plaintext)
    assert principal is not None
    assert (principal.tenant_id, principal.tenant_name, principal.key_id) == (tenant.id, "acme", new.info.id)


def test_keys_are_unique(db: Database) -> None:
    tenant = db.create_tenant("acme")
    assert db.create_key(tenant.id).plaintext != db.create_key(tenant.id).plaintext


@pytest.mark.parametrize("bad", ["", "pk-", "pk-wrong", "sk-abc", "Bearer pk-x"])
def test_wrong_or_malformed_key_is_rejected(db: Database, bad: str) -> None:
    db.create_key(db.create_tenant("acme").id)
    assert db.authenticate(bad) is None


def test_key_with_one_changed_character_is_rejected(db: Database) -> None:
    key = db.create_key(db.create_tenant("acme").id).plaintext
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert db.authenticate(tampered) is None


def test_revoked_key_is_rejected_and_others_still_work(db: Database) -> None:
    tenant = db.create_tenant("acme")
    revoked, kept = db.create_key(tenant.id), db.create_key(tenant.id)

    info = db.revoke_key(revoked.info.id)

    assert info.revoked is not None
    assert db.authenticate(revoked.plaintext) is None
    assert db.authenticate(kept.plaintext) is not None
    assert db.revoke_key(revoked.info.id).revoked == info.revoked  # idempotent


def test_revoking_unknown_key_is_not_found(db: Database) -> None:
    with pytest.raises(ApiKeyNotFound):
        db.revoke_key("key_missing")


def test_plaintext_is_stored_nowhere_in_the_database_files(data_dir: DataDir) -> None:
    db = Database(data_dir.database_url)
    tenant = db.create_tenant("acme")
    keys = [db.create_key(tenant.id).plaintext for _ in range(3)]
    assert all(db.authenticate(key) for key in keys)
    db.close()

    files = [path for path in data_dir.root.iterdir() if path.name.startswith("pictor.db")]
    assert files
    content = b"".join(path.read_bytes() for path in files)
    for key in keys:
        assert key.encode() not in content
        assert key[3:].encode() not in content  # not even without the prefix


def test_listing_shows_a_hint_not_the_key(db: Database) -> None:
    tenant = db.create_tenant("acme")
    new = db.create_key(tenant.id, label="laptop")

    [info] = db.list_keys(tenant.id)

    assert info.hint == "pk-..." + new.plaintext[-4:]
    assert info.label == "laptop" and info.revoked is None
    assert new.plaintext not in repr(info)


def test_key_for_unknown_tenant_fails_and_writes_nothing(db: Database, count_rows: Callable[[str], int]) -> None:
    with pytest.raises(TenantNotFound):
        db.create_key("ten_missing")
    assert count_rows("api_keys") == 0


def test_tenant_names_are_unique_and_ensure_is_idempotent(db: Database, count_rows: Callable[[str], int]) -> None:
    first = db.ensure_tenant("acme")
    assert db.ensure_tenant("acme") == first
    with pytest.raises(TenantExists):
        db.create_tenant("acme")
    assert count_rows("tenants") == 1


def test_keys_survive_reopening_the_database(scratch_db: ScratchDatabase) -> None:
    db = Database(scratch_db.url)
    key = db.create_key(db.create_tenant("acme").id).plaintext
    db.close()

    reopened = Database(scratch_db.url)
    try:
        principal = reopened.authenticate(key)
        assert principal is not None and principal.tenant_name == "acme"
    finally:
        reopened.close()
