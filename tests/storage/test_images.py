from collections.abc import Callable
from datetime import UTC

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from pictor.core import Artifact, new_image_id
from pictor.storage import Database, ImageNotFound, LocalBlobStore, NotFound
from pictor.storage.tables import ImageRow


def artifact(tenant_id: str, data: bytes = b"png-bytes", parents: tuple[str, ...] = (), seed: int = 7) -> Artifact:
    return Artifact(
        id=new_image_id(),
        data=data,
        format="png",
        width=64,
        height=32,
        model="embedded",
        seed=seed,
        parents=parents,
        tenant_id=tenant_id,
    )


@pytest.fixture
def two_tenants(db: Database) -> tuple[str, str]:
    return db.create_tenant("alpha").id, db.create_tenant("beta").id


def test_record_round_trips_every_field(db: Database, two_tenants: tuple[str, str]) -> None:
    alpha, _ = two_tenants
    key = db.create_key(alpha)
    art = artifact(alpha, seed=2**63 - 1)
    params = {"prompt": "a red circle", "size": "64x32", "n": 1, "input_hashes": []}

    recorded = db.record_image(art, params=params, key_id=key.info.id, user="user-42")
    fetched = db.get_image(alpha, art.id)

    assert fetched == recorded
    assert fetched.id.startswith("img_") and fetched.id == art.id
    assert (fetched.content_hash, fetched.format, fetched.width, fetched.height) == (art.content_hash, "png", 64, 32)
    assert (fetched.model, fetched.seed, fetched.params) == ("embedded", 2**63 - 1, params)
    assert (fetched.key_id, fetched.user, fetched.tenant_id) == (key.info.id, "user-42", alpha)
    assert fetched.created.tzinfo is not None and fetched.created.utcoffset() == UTC.utcoffset(None)


def test_another_tenants_image_is_not_found(db: Database, two_tenants: tuple[str, str]) -> None:
    alpha, beta = two_tenants
    art = artifact(alpha)
    db.record_image(art)

    with pytest.raises(ImageNotFound) as other_tenant:
        db.get_image(beta, art.id)
    with pytest.raises(ImageNotFound) as missing:
        db.get_image(beta, new_image_id())

    assert isinstance(other_tenant.value, NotFound)
    assert type(other_tenant.value) is type(missing.value)


def test_listing_is_scoped_to_the_tenant_and_newest_first(db: Database, two_tenants: tuple[str, str]) -> None:
    alpha, beta = two_tenants
    alpha_ids = [db.record_image(artifact(alpha, data=bytes([i]))).id for i in range(3)]
    beta_id = db.record_image(artifact(beta)).id

    assert [r.id for r in db.list_images(alpha)] == alpha_ids[::-1]
    assert [r.id for r in db.list_images(beta)] == [beta_id]
    assert [r.id for r in db.list_images(alpha, limit=1, offset=1)] == [alpha_ids[1]]


def test_parents_are_recorded_in_order_for_edits(db: Database, two_tenants: tuple[str, str]) -> None:
    alpha, beta = two_tenants
    first, second = db.record_image(artifact(alpha, b"a")), db.record_image(artifact(alpha, b"b"))

    edit = db.record_image(artifact(alpha, b"edit", parents=(second.id, first.id)))

    assert db.get_image(alpha, edit.id).parents == (second.id, first.id)
    assert db.children_of(alpha, first.id) == [edit.id]
    assert db.children_of(beta, first.id) == []


def test_parent_of_another_tenant_is_refused_and_nothing_is_written(
    db: Database, count_rows: Callable[[str], int], two_tenants: tuple[str, str]
) -> None:
    alpha, beta = two_tenants
    own = db.record_image(artifact(alpha, b"own"))
    foreign = db.record_image(artifact(beta, b"foreign"))
    edit = artifact(alpha, b"edit", parents=(own.id, foreign.id))

    with pytest.raises(ImageNotFound):
        db.record_image(edit)

    assert count_rows("images") == 2
    assert count_rows("image_parents") == 0
    with pytest.raises(ImageNotFound):
        db.get_image(alpha, edit.id)


def test_constraint_failure_writes_neither_image_nor_lineage(
    db: Database, count_rows: Callable[[str], int], two_tenants: tuple[str, str]
) -> None:
    """An unknown creator key fails the foreign key: no image row and no parent links remain."""
    alpha, _ = two_tenants
    parent = db.record_image(artifact(alpha, b"parent"))

    with pytest.raises(IntegrityError):
        db.record_image(artifact(alpha, b"child", parents=(parent.id,)), key_id="key_does_not_exist")

    assert count_rows("images") == 1
    assert count_rows("image_parents") == 0
    assert db.children_of(alpha, parent.id) == []


def test_duplicate_image_id_leaves_the_original_untouched(db: Database, two_tenants: tuple[str, str]) -> None:
    alpha, _ = two_tenants
    original = artifact(alpha, b"original")
    db.record_image(original, params={"prompt": "first"})
    clash = Artifact(id=original.id, data=b"other", format="webp", width=1, height=1, tenant_id=alpha)

    with pytest.raises(IntegrityError):
        db.record_image(clash, params={"prompt": "second"})

    kept = db.get_image(alpha, original.id)
    assert (kept.content_hash, kept.params) == (original.content_hash, {"prompt": "first"})


def test_artifact_without_tenant_is_refused(db: Database) -> None:
    with pytest.raises(ValueError):
        db.record_image(Artifact(id=new_image_id(), data=b"x", format="png", width=1, height=1))


def test_bytes_and_record_meet_through_the_content_hash(
    db: Database, blobs: LocalBlobStore, two_tenants: tuple[str, str]
) -> None:
    alpha, beta = two_tenants
    art_a, art_b = artifact(alpha, b"same pixels"), artifact(beta, b"same pixels")

    for art in (art_a, art_b):
        assert blobs.put(art.data) == art.content_hash
        db.record_image(art)

    assert db.get_image(alpha, art_a.id).content_hash == db.get_image(beta, art_b.id).content_hash
    assert blobs.get(db.get_image(beta, art_b.id).content_hash) == b"same pixels"


def test_exception_inside_a_transaction_leaves_no_rows(db: Database, count_rows: Callable[[str], int]) -> None:
    """The mechanism every method relies on: rows flushed to the database are undone by the rollback."""
    tenant = db.create_tenant("alpha")

    with pytest.raises(RuntimeError), db._transaction() as session:
        row = ImageRow(id=new_image_id(), tenant_id=tenant.id, content_hash="0" * 64, format="png", width=1, height=1)
        session.add(row)
        session.flush()
        assert session.scalar(select(func.count()).select_from(ImageRow)) == 1
        raise RuntimeError("crash after the insert")

    assert count_rows("images") == 0
    assert db.list_images(tenant.id) == []
