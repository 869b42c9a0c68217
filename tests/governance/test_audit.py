import base64
import hashlib
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from concurrent_writers import run_writers
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from scratch_databases import ScratchDatabase

from pictor.core import Artifact, new_image_id
from pictor.governance.audit import AuditLog, canonical_json, new_salt, salted_hash
from pictor.governance.checkpoint import (
    CheckpointError,
    CheckpointSigner,
    key_hash,
    parse_checkpoint,
    verify_checkpoint,
)
from pictor.governance.merkle import leaf_hash, root, verify_consistency, verify_inclusion
from pictor.storage import Database, ImageNotFound
from pictor.storage.database import AuditReservationLost

ORIGIN = "pictor.test/audit"


@pytest.fixture
def db(scratch_db: ScratchDatabase) -> Iterator[Database]:
    """The log's database, once on SQLite and once on PostgreSQL."""
    database = Database(scratch_db.url)
    yield database
    database.close()


@pytest.fixture
def signer(tmp_path: Path) -> CheckpointSigner:
    return CheckpointSigner.load_or_create(tmp_path / "keys" / "audit.pem", "pictor.test")


@pytest.fixture
def log(db: Database, signer: CheckpointSigner) -> AuditLog:
    return AuditLog(db, signer, ORIGIN, checkpoint_every=4, checkpoint_seconds=3600)


@pytest.fixture
def tenant(db: Database) -> str:
    return db.create_tenant("alpha").id


def generate(db: Database, log: AuditLog, tenant: str, prompt: str = "a red circle", n: int = 1) -> list[str]:
    """What the service does for one request: reserve, make, then images and entries in one transaction."""
    indexes = log.reserve(n)
    artifacts = [
        Artifact(id=new_image_id(), data=f"{prompt} {i}".encode(), format="png", width=8, height=8,
                 tenant_id=tenant, audit_index=index)
        for i, index in enumerate(indexes)
    ]
    salts = {art.id: new_salt() for art in artifacts}
    items = log.entries([
        (art.audit_index, {"event": "image", "image_id": art.id, "tenant": tenant, "content_hash": art.content_hash,
                           "prompt_hash": salted_hash(prompt, salts[art.id])})
        for art in artifacts
    ])
    db.record_images([(art, {"prompt": prompt}) for art in artifacts], audit=items, salts=salts)
    log.maybe_checkpoint()
    return [art.id for art in artifacts]


@pytest.fixture
def filled(db: Database, log: AuditLog, tenant: str) -> list[str]:
    """12 entries and checkpoints at sizes 1, 5, 9 and 12."""
    ids = [image_id for i in range(12) for image_id in generate(db, log, tenant, f"prompt {i}")]
    log.checkpoint()
    return ids


def entry_text(scratch_db: ScratchDatabase, index: int) -> str:
    return scratch_db.sql("SELECT entry FROM audit_entries WHERE idx = ?", index)[0][0]


# canonical form and salts


def test_canonical_json_is_sorted_compact_utf8_and_refuses_nan() -> None:
    assert canonical_json({"b": 1, "a": ["é", 2.5, None]}) == '{"a":["é",2.5,null],"b":1}'.encode()
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError):
            canonical_json({"x": bad})


def test_salted_hash_depends_on_the_salt() -> None:
    salt = new_salt()
    assert salted_hash("a cat", salt) == salted_hash("a cat", salt) != salted_hash("a cat", new_salt())
    assert len(salted_hash("a cat", salt)) == 64


# the log working normally


def test_untouched_log_verifies_with_checkpoints(db: Database, log: AuditLog, filled: list[str]) -> None:
    assert [c.size for c in db.checkpoints()] == [1, 5, 9, 12]
    assert db.audit_size() == 12
    report = log.verify()
    assert report.ok, report.lines()
    assert (report.entries, report.size, report.checkpoints) == (12, 12, 4)
    assert report.lines()[-1].startswith("OK")


def test_entries_link_to_their_predecessor_and_hash_to_their_leaf(db: Database, log: AuditLog, tenant: str) -> None:
    generate(db, log, tenant, n=3)
    rows = db.audit_entries()
    assert [row.status for row in rows] == ["final"] * 3
    for row in rows:
        assert row.leaf_hash == leaf_hash(row.entry.encode()).hex()
        assert json.loads(row.entry)["index"] == row.index
    assert json.loads(rows[0].entry)["prev"] is None
    assert json.loads(rows[2].entry)["prev"] == {"index": 1, "leaf_hash": rows[1].leaf_hash}
    with pytest.raises(ValueError):
        log.entry(7, {"index": 3})


def test_proofs_verify_against_the_signed_checkpoint(db: Database, log: AuditLog, signer: CheckpointSigner,
                                                     filled: list[str]) -> None:
    for index in range(12):
        proof = log.inclusion(index)
        size, signed_root = verify_checkpoint(proof["checkpoint"], signer.public_key_pem(), origin=ORIGIN)
        assert (proof["tree_size"], proof["root"]) == (size, signed_root.hex()) == (12, signed_root.hex())
        assert proof["leaf_hash"] == leaf_hash(proof["entry"].encode()).hex()
        nodes = [bytes.fromhex(node) for node in proof["proof"]]
        assert verify_inclusion(bytes.fromhex(proof["leaf_hash"]), index, size, nodes, signed_root)
    for old_size in (1, 5, 9):
        proof = log.consistency(old_size)
        old = verify_checkpoint(proof["old_checkpoint"], signer.public_key)
        new = verify_checkpoint(proof["new_checkpoint"], signer.public_key)
        nodes = [bytes.fromhex(node) for node in proof["proof"]]
        assert (old[0], new[0]) == (old_size, 12)
        assert verify_consistency(old[0], new[0], old[1], new[1], nodes)


def test_reservations_are_consecutive_and_unique_under_threads(db: Database) -> None:
    got: list[list[int]] = []

    def work(_: int) -> None:
        for _ in range(10):
            got.append(db.reserve_audit(3))

    run_writers(work, 6)
    assert all(block == list(range(block[0], block[0] + 3)) for block in got)
    assert sorted(i for block in got for i in block) == list(range(180))


def test_eight_concurrent_writers_finish_160_entries_without_a_gap(db: Database, log: AuditLog, tenant: str) -> None:
    """8 request threads x 20 requests, each reserving its entry, then storing its image and finishing the entry in
    one transaction: every reservation succeeds, the indexes are 0..159, and the log verifies."""
    made: list[str] = []

    def work(writer: int) -> None:
        for i in range(20):
            made.extend(generate(db, log, tenant, f"writer {writer} prompt {i}"))

    run_writers(work)
    assert len(made) == 160
    entries = db.audit_entries()
    assert [entry.index for entry in entries] == list(range(160))
    assert {entry.status for entry in entries} == {"final"}
    log.checkpoint()
    report = log.verify()
    assert report.ok and report.size == 160, report.lines()


def test_image_and_entry_are_written_together_or_not_at_all(db: Database, log: AuditLog, tenant: str,
                                                            scratch_db: ScratchDatabase) -> None:
    (index,) = log.reserve(1)
    art = Artifact(id=new_image_id(), data=b"x", format="png", width=1, height=1, tenant_id=tenant,
                   parents=("img_missing",))
    with pytest.raises(ImageNotFound):
        db.record_images([(art, {})], audit=[log.entry(index, {"event": "image"})])
    assert [row.status for row in db.audit_entries()] == ["pending"]

    good = Artifact(id=new_image_id(), data=b"y", format="png", width=1, height=1, tenant_id=tenant)
    with pytest.raises(AuditReservationLost):  # an index that was never reserved
        db.record_images([(good, {})], audit=[log.entry(index + 5, {"event": "image"})])
    assert scratch_db.count("images") == 0


def test_a_crashed_reservation_is_voided_on_start_and_the_log_stays_verifiable(
    db: Database, log: AuditLog, tenant: str, signer: CheckpointSigner
) -> None:
    generate(db, log, tenant)
    (lost,) = log.reserve(1)  # this request never finishes
    generate(db, log, tenant, n=2)
    assert db.audit_size() == 1
    report = log.verify()
    assert report.ok and report.pending == [lost], report.lines()

    restarted = AuditLog(db, signer, ORIGIN)
    assert restarted.void_pending() == [lost]
    assert restarted.void_pending() == []
    void = db.audit_entries(lost, lost + 1)[0]
    assert void.status == "void" and json.loads(void.entry)["event"] == "void"
    assert db.audit_size() == 4
    restarted.checkpoint()
    assert restarted.verify().ok

    late = Artifact(id=new_image_id(), data=b"late", format="png", width=1, height=1, tenant_id=tenant)
    with pytest.raises(AuditReservationLost):
        db.record_images([(late, {})], audit=[log.entry(lost, {"event": "image"})])


def test_erasing_a_prompt_keeps_the_log_verifiable(db: Database, log: AuditLog, tenant: str) -> None:
    (image_id,) = generate(db, log, tenant, prompt="my secret prompt")
    entry = json.loads(db.audit_entries(0, 1)[0].entry)
    salt = db.prompt_salt(image_id)
    assert entry["prompt_hash"] == salted_hash("my secret prompt", salt)
    assert "my secret prompt" not in db.audit_entries(0, 1)[0].entry

    erased = db.erase_prompt(image_id)

    assert "prompt" not in erased.params and "prompt_erased" in erased.params
    assert db.get_image(tenant, image_id).params == erased.params
    assert db.prompt_salt(image_id) is None
    assert json.loads(db.audit_entries(0, 1)[0].entry) == entry
    log.checkpoint()
    assert log.verify().ok
    with pytest.raises(ImageNotFound):
        db.erase_prompt(new_image_id())


def test_a_refused_request_is_logged_without_an_image(db: Database, log: AuditLog) -> None:
    salt = new_salt()
    index, _, _ = log.append({"event": "refused", "prompt_hash": salted_hash("bad", salt), "rules": ["x.y"]},
                             salts={"audit:0": salt})
    assert index == 0 and db.audit_size() == 1 and db.prompt_salt("audit:0") == salt
    assert db.erase_salt("audit:0") and db.prompt_salt("audit:0") is None
    log.checkpoint()
    assert log.verify().ok


def test_checkpoints_come_every_n_entries(db: Database, log: AuditLog, tenant: str) -> None:
    for _ in range(9):
        generate(db, log, tenant)
    assert [c.size for c in db.checkpoints()] == [1, 5, 9]
    assert log.maybe_checkpoint() is None
    assert log.checkpoint().size == 9 and len(db.checkpoints()) == 3


# tampering: each case names the kind and the index


def rewrite(scratch_db: ScratchDatabase, index: int, *, with_leaf: bool) -> None:
    """Tamper with the entry directly, the way an attacker with database access would."""
    obj = json.loads(entry_text(scratch_db, index))
    obj["tenant"] = "someone-else"
    text = canonical_json(obj)
    if with_leaf:
        scratch_db.sql("UPDATE audit_entries SET entry = ?, leaf_hash = ? WHERE idx = ?",
            text.decode(), leaf_hash(text).hex(), index)
    else:
        scratch_db.sql("UPDATE audit_entries SET entry = ? WHERE idx = ?", text.decode(), index)


def test_a_changed_entry_text_is_found(log: AuditLog, filled: list[str], scratch_db: ScratchDatabase) -> None:
    rewrite(scratch_db, 5, with_leaf=False)
    report = log.verify()
    assert ("changed", 5) in report.kinds()
    assert ("bad_checkpoint", 9) in report.kinds()  # the first checkpoint that covers it
    assert any("entry 5" in line for line in report.lines())


def test_an_entry_rewritten_with_its_leaf_hash_is_found_by_the_chain(log: AuditLog, filled: list[str],
                                                                     scratch_db: ScratchDatabase) -> None:
    rewrite(scratch_db, 5, with_leaf=True)
    report = log.verify()
    assert ("changed", 5) in report.kinds()
    assert {p.kind for p in report.problems} == {"changed", "bad_checkpoint"}


def test_the_last_entry_rewritten_with_its_leaf_is_found_by_the_checkpoint(log: AuditLog, filled: list[str],
                                                                           scratch_db: ScratchDatabase) -> None:
    rewrite(scratch_db, 11, with_leaf=True)
    report = log.verify()
    assert report.kinds() == {("bad_checkpoint", 12)}
    assert "[9, 12)" in report.problems[0].detail


def test_a_deleted_entry_is_found(log: AuditLog, filled: list[str], scratch_db: ScratchDatabase) -> None:
    scratch_db.sql("DELETE FROM audit_entries WHERE idx = 5")
    assert ("removed", 5) in log.verify().kinds()


def test_deleted_and_renumbered_entries_are_found(log: AuditLog, filled: list[str],
                                                  scratch_db: ScratchDatabase) -> None:
    scratch_db.sql("DELETE FROM audit_entries WHERE idx = 5")
    scratch_db.sql("UPDATE audit_entries SET idx = idx + 1000 WHERE idx > 5")
    scratch_db.sql("UPDATE audit_entries SET idx = idx - 1001 WHERE idx >= 1000")
    assert ("removed", 5) in log.verify().kinds()


def test_a_truncated_log_is_found(log: AuditLog, filled: list[str], scratch_db: ScratchDatabase) -> None:
    scratch_db.sql("DELETE FROM audit_entries WHERE idx >= 10")
    report = log.verify()
    assert ("removed", 10) in report.kinds()
    assert "checkpoint of size 12" in report.lines()[-1]


def test_swapped_entries_are_found(log: AuditLog, filled: list[str], scratch_db: ScratchDatabase) -> None:
    a, b = scratch_db.sql("SELECT entry, leaf_hash FROM audit_entries WHERE idx IN (3, 7) ORDER BY idx")
    scratch_db.sql("UPDATE audit_entries SET entry = ?, leaf_hash = ? WHERE idx = 3", *b)
    scratch_db.sql("UPDATE audit_entries SET entry = ?, leaf_hash = ? WHERE idx = 7", *a)
    report = log.verify()
    assert {("reordered", 3), ("reordered", 7)} <= report.kinds()
    assert not any(p.kind == "changed" for p in report.problems)


def test_an_inserted_entry_is_found(log: AuditLog, filled: list[str], scratch_db: ScratchDatabase) -> None:
    previous = scratch_db.sql("SELECT leaf_hash FROM audit_entries WHERE idx = 4")[0][0]
    forged = canonical_json({"event": "image", "image_id": "img_forged", "index": 5,
                             "prev": {"index": 4, "leaf_hash": previous}, "time": "2020-01-01T00:00:00.000+00:00"})
    scratch_db.sql("UPDATE audit_entries SET idx = idx + 1000 WHERE idx >= 5")
    scratch_db.sql("UPDATE audit_entries SET idx = idx - 999 WHERE idx >= 1000")
    scratch_db.sql("INSERT INTO audit_entries (idx, entry, leaf_hash, status, created) VALUES (5, ?, ?, 'final', ?)",
        forged.decode(), leaf_hash(forged).hex(), "2020-01-01 00:00:00")
    report = log.verify()
    assert ("inserted", 5) in report.kinds()
    assert not any(p.kind in ("removed", "reordered") for p in report.problems), report.lines()


def test_an_altered_checkpoint_is_found(log: AuditLog, filled: list[str], scratch_db: ScratchDatabase) -> None:
    note = scratch_db.sql("SELECT note FROM audit_checkpoints WHERE size = 9")[0][0]
    scratch_db.sql("UPDATE audit_checkpoints SET note = ? WHERE size = 9", note.replace("\n9\n", "\n8\n"))
    assert log.verify().kinds() == {("bad_checkpoint", 9)}


def test_a_checkpoint_by_another_key_is_found(log: AuditLog, filled: list[str], scratch_db: ScratchDatabase,
                                              tmp_path: Path) -> None:
    other = CheckpointSigner.load_or_create(tmp_path / "other.pem", "pictor.test")
    root_hex = scratch_db.sql("SELECT root FROM audit_checkpoints WHERE size = 5")[0][0]
    scratch_db.sql("UPDATE audit_checkpoints SET note = ? WHERE size = 5",
        other.sign(5, bytes.fromhex(root_hex), origin=ORIGIN))
    assert log.verify().kinds() == {("bad_checkpoint", 5)}


# checkpoints and keys


def test_checkpoint_note_format_parses_and_verifies(signer: CheckpointSigner) -> None:
    tree_root = root([leaf_hash(b"a"), leaf_hash(b"b")])
    note = signer.sign(2, tree_root, origin=ORIGIN)
    body, signature_line = note.split("\n\n")
    assert body.split("\n") == [ORIGIN, "2", base64.b64encode(tree_root).decode()]
    assert signature_line.startswith("\u2014 pictor.test ") and signature_line.endswith("\n")
    checkpoint, signed, signatures = parse_checkpoint(note)
    assert (checkpoint.origin, checkpoint.size, checkpoint.root, signed) == (ORIGIN, 2, tree_root, body + "\n")
    (name, blob), = signatures
    raw = signer.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert blob[:4] == hashlib.sha256(b"pictor.test\n\x01" + raw).digest()[:4] == key_hash(name, signer.public_key)
    assert len(blob) == 68
    assert verify_checkpoint(note, signer.public_key_pem(), origin=ORIGIN) == (2, tree_root)
    assert signer.verifier_key().startswith(f"pictor.test+{blob[:4].hex()}+")


def test_checkpoint_fails_with_a_wrong_key_origin_or_text(signer: CheckpointSigner, tmp_path: Path) -> None:
    note = signer.sign(3, b"\x07" * 32, origin=ORIGIN)
    other = CheckpointSigner.load_or_create(tmp_path / "other.pem", "pictor.test")
    with pytest.raises(CheckpointError):
        verify_checkpoint(note, other.public_key)
    with pytest.raises(CheckpointError):
        verify_checkpoint(note, signer.public_key, origin="someone.else/log")
    with pytest.raises(CheckpointError):
        verify_checkpoint(note.replace("\n3\n", "\n4\n"), signer.public_key)
    for broken in (note.replace("\n\n", "\n"), note.replace("\u2014", "-"), note.rstrip("\n"), "x\n1\n\n\u2014 a b\n"):
        with pytest.raises(CheckpointError):
            verify_checkpoint(broken, signer.public_key)


def test_signing_key_is_private_and_reloaded(signer: CheckpointSigner, tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = CheckpointSigner.load_or_create(path, "pictor.test")
    assert again.public_key_pem() == signer.public_key_pem()
    assert list(path.parent.iterdir()) == [path]


# export


def test_export_can_be_checked_offline(log: AuditLog, filled: list[str], tmp_path: Path) -> None:
    folder = log.export(tmp_path / "export")
    meta = json.loads((folder / "log.json").read_text())
    size, signed_root = verify_checkpoint(meta["checkpoint"], (folder / "public_key.pem").read_text(), origin=ORIGIN)
    lines = [json.loads(line) for line in (folder / "entries.jsonl").read_text().splitlines()]
    assert len(lines) == size == 12
    for record in lines:
        leaf = leaf_hash(record["entry"].encode())
        assert leaf.hex() == record["leaf_hash"]
        nodes = [bytes.fromhex(node) for node in record["proof"]]
        assert verify_inclusion(leaf, record["index"], record["tree_size"], nodes, signed_root)
    checkpoints = [json.loads(line) for line in (folder / "checkpoints.jsonl").read_text().splitlines()]
    assert [c["size"] for c in checkpoints] == [1, 5, 9, 12]
