"""The tamper-evident audit log: canonical JSON entries, an RFC 9162 Merkle tree over them, signed checkpoints.

Flow for one request: `reserve(n)` before the work starts (the indexes can go into manifests), `entry(index,
fields)` when it is done, then `Database.record_images(..., audit=[...])` (or `finalise_audit`) writes the
entries in the same transaction as what they describe; `maybe_checkpoint()` after it. On start-up
`void_pending()` closes reservations of requests that crashed.

Each entry also names the nearest earlier entry that was already written and its leaf hash (`prev`): a hash
chain beside the tree, so that `verify()` can say which entry was rewritten even when its stored leaf hash
was rewritten with it. Entries finish out of order, so the link is to the nearest finished one, not always
index - 1. Prompts go into entries only as salted hashes; the salt lives outside the log and can be erased.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pictor.governance.checkpoint import CheckpointError, CheckpointSigner, verify_checkpoint
from pictor.governance.merkle import CompactRange, MerkleTree, leaf_hash
from pictor.storage.database import AuditCheckpoint, AuditItem, Database
from pictor.storage.tables import utcnow

RESERVED_FIELDS = frozenset({"index", "prev", "time"})
KINDS = ("changed", "removed", "reordered", "inserted", "bad_checkpoint")


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8 (not \\u escapes); NaN and infinities are refused."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def new_salt() -> str:
    """32 random bytes, hex: enough that a salted prompt hash cannot be brute-forced once the salt is gone."""
    return secrets.token_hex(32)


def salted_hash(text: str, salt: str) -> str:
    """HMAC-SHA256 of the UTF-8 text keyed by the salt's bytes (hex in, hex out)."""
    return hmac.new(bytes.fromhex(salt), text.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Problem:
    kind: str  # one of KINDS
    index: int  # entry index; for bad_checkpoint, the checkpoint's tree size
    detail: str


@dataclass
class AuditReport:
    entries: int = 0  # rows in the table
    size: int = 0  # the final prefix that the tree covers
    checkpoints: int = 0
    pending: list[int] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    _seen: set[tuple[str, int]] = field(default_factory=set, repr=False)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: str, index: int, detail: str) -> None:
        """Record a problem; the first one of a kind at an index wins."""
        if (kind, index) not in self._seen:
            self._seen.add((kind, index))
            self.problems.append(Problem(kind, index, detail))

    def kinds(self) -> set[tuple[str, int]]:
        """(kind, index) of every problem."""
        return set(self._seen)

    def lines(self) -> list[str]:
        head = f"{self.entries} entries, {self.size} in the tree, {self.checkpoints} signed checkpoints"
        if self.pending:
            head += f", {len(self.pending)} pending"
        if self.ok:
            return [head, "OK: every entry matches its hash, chain and the signed checkpoints"]
        lines = [head, f"FAILED: {len(self.problems)} problem(s)"]
        for p in sorted(self.problems, key=lambda p: (p.index, p.kind)):
            where = f"checkpoint of size {p.index}" if p.kind == "bad_checkpoint" else f"entry {p.index}"
            lines.append(f"  {p.kind}: {where}: {p.detail}")
        return lines


class AuditLog:
    """The audit log of one Pictor instance, kept in the metadata database."""

    def __init__(
        self,
        database: Database,
        signer: CheckpointSigner,
        origin: str,
        checkpoint_every: int = 100,
        checkpoint_seconds: float = 60.0,
    ) -> None:
        self.database = database
        self.signer = signer
        self.origin = origin
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seconds = checkpoint_seconds
        self._lock = threading.Lock()
        self._range = CompactRange()  # the stored leaf hashes of the final prefix, as far as read so far

    # writing

    def reserve(self, count: int = 1) -> list[int]:
        """Consecutive indexes for entries to be written later (pending until then)."""
        return self.database.reserve_audit(count)

    def entry(self, index: int, fields: Mapping[str, Any]) -> AuditItem:
        """The (index, canonical text, leaf hash hex) of an entry: `fields` plus index, prev and time."""
        return self.entries([(index, fields)])[0]

    def entries(self, items: Sequence[tuple[int, Mapping[str, Any]]]) -> list[AuditItem]:
        """Several entries at once (one request's images), in index order: each links to the one before it."""
        result: list[AuditItem] = []
        for index, fields in sorted(items, key=lambda item: item[0]):
            clash = RESERVED_FIELDS & fields.keys()
            if clash:
                raise ValueError(f"audit fields may not set {sorted(clash)}")
            link = (result[-1][0], result[-1][2]) if result else self.database.audit_predecessor(index)
            prev = None if link is None else {"index": link[0], "leaf_hash": link[1]}
            result.append(self._item({**fields, "index": index, "prev": prev, "time": _now()}))
        return result

    def append(self, fields: Mapping[str, Any], salts: Mapping[str, str] | None = None) -> AuditItem:
        """Reserve, build and write one entry that belongs to no image (a refused request, an admin action)."""
        (index,) = self.reserve(1)
        item = self.entry(index, fields)
        self.database.finalise_audit([item], salts)
        return item

    def void_pending(self, older_than: datetime | None = None) -> list[int]:
        """Close reservations whose request never finished (call on start-up); returns their indexes."""

        def void(index: int) -> tuple[str, str]:
            reason = "reserved by a request that did not finish"
            _, text, leaf = self._item({"event": "void", "index": index, "reason": reason, "time": _now()})
            return text, leaf

        return self.database.void_pending_audit(void, older_than=older_than)

    @staticmethod
    def _item(obj: dict[str, Any]) -> AuditItem:
        data = canonical_json(obj)
        return obj["index"], data.decode(), leaf_hash(data).hex()

    # checkpoints

    def maybe_checkpoint(self) -> AuditCheckpoint | None:
        """Sign a checkpoint when `checkpoint_every` entries or `checkpoint_seconds` passed since the last one."""
        last = self.database.latest_checkpoint()
        last_size = last.size if last else 0
        end = self.database.audit_end()
        if end <= last_size:
            return None
        due = (
            last is None
            or end - last_size >= self.checkpoint_every
            or utcnow() - last.created >= timedelta(seconds=self.checkpoint_seconds)
        )
        if not due or self.database.audit_size() <= last_size:
            return None
        return self.checkpoint()

    def checkpoint(self) -> AuditCheckpoint:
        """Sign and store a checkpoint of the current final prefix (the existing one if it did not grow)."""
        size = self.database.audit_size()
        existing = self.database.checkpoint_at(size)
        if existing is not None:
            return existing
        root = self._root(size)
        note = self.signer.sign(size, root, origin=self.origin)
        return self.database.add_checkpoint(size, root.hex(), note)

    def _root(self, size: int) -> bytes:
        with self._lock:
            if self._range.size > size:
                self._range = CompactRange()
            for leaf in self.database.audit_leaf_hashes(self._range.size, size):
                self._range.append(bytes.fromhex(leaf))
            return self._range.root()

    # proofs

    def _tree(self, size: int) -> MerkleTree:
        if size > self.database.audit_size():
            raise ValueError(f"the log has no final prefix of size {size} yet")
        return MerkleTree([bytes.fromhex(leaf) for leaf in self.database.audit_leaf_hashes(0, size)])

    def _signed_size(self, covering: int) -> int:
        """The latest checkpoint's size, signing a new checkpoint first if it does not reach `covering`."""
        latest = self.database.latest_checkpoint()
        if latest is None or latest.size < covering:
            latest = self.checkpoint()
        return latest.size

    def inclusion(self, index: int, size: int | None = None) -> dict[str, Any]:
        """Proof that entry `index` is in the tree of `size` (default: the latest signed checkpoint)."""
        size = self._signed_size(index + 1) if size is None else size
        if not 0 <= index < size:
            raise ValueError(f"entry {index} is not in a tree of size {size}")
        tree = self._tree(size)
        (row,) = self.database.audit_entries(index, index + 1)
        checkpoint = self.database.checkpoint_at(size)
        return {
            "leaf_index": index,
            "tree_size": size,
            "entry": row.entry,
            "leaf_hash": tree.levels[0][index].hex(),
            "root": tree.root().hex(),
            "proof": [node.hex() for node in tree.inclusion_proof(index)],
            "checkpoint": checkpoint.note if checkpoint else None,
        }

    def consistency(self, old_size: int, new_size: int | None = None) -> dict[str, Any]:
        """Proof that the tree of `old_size` is a prefix of the tree of `new_size` (default: latest checkpoint)."""
        new_size = self._signed_size(old_size) if new_size is None else new_size
        if not 0 <= old_size <= new_size:
            raise ValueError(f"old size {old_size} is outside 0..{new_size}")
        tree = self._tree(new_size)
        old, new = self.database.checkpoint_at(old_size), self.database.checkpoint_at(new_size)
        return {
            "old_size": old_size,
            "new_size": new_size,
            "old_root": CompactRange(tree.levels[0][:old_size]).root().hex(),
            "new_root": tree.root().hex(),
            "proof": [node.hex() for node in tree.consistency_proof(old_size)],
            "old_checkpoint": old.note if old else None,
            "new_checkpoint": new.note if new else None,
        }

    # verification

    def verify(self) -> AuditReport:
        """Recompute every leaf, link and checkpoint from the entries table; report what does not match."""
        rows = self.database.audit_entries()
        checkpoints = self.database.checkpoints()
        report = AuditReport(entries=len(rows), checkpoints=len(checkpoints))
        signed_size = max((c.size for c in checkpoints), default=0)
        computed: dict[int, bytes] = {}  # leaf hashes recomputed from the entry text
        claimed: dict[int, int | None] = {}  # the index each entry's text says it has
        links: dict[int, Any] = {}
        bad_leaf: set[int] = set()
        expected = 0
        for row in rows:
            if row.index > expected:
                report.add("removed", expected, f"no entries with indexes {expected}..{row.index - 1}")
            expected = row.index + 1
            if row.status == "pending":
                report.pending.append(row.index)
                if row.index < signed_size:
                    report.add("changed", row.index, "marked pending but covered by a signed checkpoint")
                continue
            if row.status not in ("final", "void") or row.entry is None:
                report.add("changed", row.index, f"status {row.status!r} without entry text")
                continue
            computed[row.index] = leaf = leaf_hash(row.entry.encode())
            if row.leaf_hash != leaf.hex():
                report.add("changed", row.index, "entry text does not match its stored leaf hash")
                bad_leaf.add(row.index)
            try:
                obj = json.loads(row.entry)
            except ValueError:
                report.add("changed", row.index, "entry text is not JSON")
                continue
            index = obj.get("index") if isinstance(obj, dict) else None
            claimed[row.index] = index if isinstance(index, int) else None
            links[row.index] = obj.get("prev") if isinstance(obj, dict) else None
        moved = _positions(report, claimed)
        _links(report, computed, claimed, links, bad_leaf, moved)
        size = 0
        while size in computed and size not in report.pending:
            size += 1
        report.size = size
        self._checkpoints(report, checkpoints, [computed[i] for i in range(size)], expected)
        return report

    def _checkpoints(self, report: AuditReport, checkpoints: list[AuditCheckpoint], leaves: list[bytes],
                     end: int) -> None:
        tree = CompactRange()
        good, mismatch = 0, False
        for checkpoint in checkpoints:
            try:
                size, root = verify_checkpoint(checkpoint.note, self.signer.public_key, origin=self.origin)
            except CheckpointError as error:
                report.add("bad_checkpoint", checkpoint.size, f"signature or format: {error}")
                continue
            if size != checkpoint.size or root.hex() != checkpoint.root:
                report.add("bad_checkpoint", checkpoint.size, "signed note disagrees with its stored size or root")
            if size > len(leaves):
                if size > end:
                    report.add("removed", end, f"a checkpoint of size {size} was signed but the log ends at {end}")
                continue
            while tree.size < size:
                tree.append(leaves[tree.size])
            if tree.root() == root:
                good = size if not mismatch else good
            elif not mismatch:  # every later checkpoint fails too; the first one narrows down where
                report.add("bad_checkpoint", size, f"recomputed root differs: an entry in [{good}, {size}) "
                                                   "is not what was signed")
                mismatch = True

    # export

    def export(self, path: Path) -> Path:
        """Write a folder an auditor can check offline: entries.jsonl (text, leaf hash, inclusion proof
        against the latest checkpoint), checkpoints.jsonl, public_key.pem and log.json."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        latest = self.checkpoint()
        rows = self.database.audit_entries()
        tree = self._tree(latest.size)
        with (path / "entries.jsonl").open("w", encoding="utf-8") as out:
            for row in rows:
                proof = tree.inclusion_proof(row.index) if row.index < latest.size else None
                record = {
                    "index": row.index,
                    "status": row.status,
                    "entry": row.entry,
                    "leaf_hash": row.leaf_hash,
                    "tree_size": latest.size if proof is not None else None,
                    "proof": None if proof is None else [node.hex() for node in proof],
                }
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        with (path / "checkpoints.jsonl").open("w", encoding="utf-8") as out:
            for checkpoint in self.database.checkpoints():
                out.write(json.dumps({"size": checkpoint.size, "root": checkpoint.root, "note": checkpoint.note,
                                      "created": checkpoint.created.isoformat()}, ensure_ascii=False) + "\n")
        (path / "public_key.pem").write_text(self.signer.public_key_pem())
        log = {
            "origin": self.origin,
            "key_name": self.signer.name,
            "verifier_key": self.signer.verifier_key(),
            "tree_size": latest.size,
            "root": latest.root,
            "checkpoint": latest.note,
            "hashing": "RFC 9162 2.1, SHA-256: leaf = H(0x00 || UTF-8 entry text), node = H(0x01 || left || right)",
            "proofs": "entries.jsonl: audit path of each entry in the tree of tree_size, leaf level first",
        }
        (path / "log.json").write_text(json.dumps(log, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path


def _now() -> str:
    return utcnow().isoformat(timespec="milliseconds")


def _positions(report: AuditReport, claimed: dict[int, int | None]) -> set[int]:
    """Classify entries whose text names another index than the row they are in; returns the indexes involved."""
    moved = {c: t for c, t in claimed.items() if t != c}
    involved: set[int] = set()
    for c, t in moved.items():
        if t is None:
            report.add("changed", c, "entry text has no integer index")
        elif moved.get(t) == c:
            report.add("reordered", c, f"holds the entry of index {t}, which holds this one")
        else:
            continue
        involved.add(c)
    runs: list[tuple[int, int, int]] = []  # (first row, last row, shift = row - claimed index)
    for c in sorted(set(moved) - involved):
        shift = c - moved[c]  # type: ignore[operator]
        if runs and runs[-1][1] == c - 1 and runs[-1][2] == shift:
            runs[-1] = (runs[-1][0], c, shift)
        else:
            runs.append((c, c, shift))
    for first, last, shift in sorted(runs, key=lambda run: run[2] < 0):  # insertions explain rows before them
        if first in involved:
            continue
        if shift > 0:
            for extra in range(max(first - shift, 0), first):
                report.add("inserted", extra, f"not part of the original sequence: entries from {first} on are "
                                              f"shifted by {shift}")
                involved.add(extra)
        else:
            report.add("removed", first, f"entries {first}..{first - shift - 1} are missing: later entries were "
                                         f"renumbered down by {-shift}")
        involved.update(range(first, last + 1))
    return involved


def _links(report: AuditReport, computed: dict[int, bytes], claimed: dict[int, int | None], links: dict[int, Any],
           bad_leaf: set[int], moved: set[int]) -> None:
    """Check each entry's `prev` link; a broken link to an entry whose stored leaf hash agrees with its text
    means that entry was rewritten together with its leaf hash."""
    for index, prev in links.items():
        if prev is None or index in moved:
            continue
        target = prev.get("index") if isinstance(prev, dict) else None
        if not isinstance(target, int) or not 0 <= target < index or not isinstance(prev.get("leaf_hash"), str):
            report.add("changed", index, "malformed link to the previous entry")
            continue
        if target in moved or target not in computed or claimed.get(target) != target:
            continue
        if computed[target].hex() != prev["leaf_hash"] and target not in bad_leaf:
            report.add("changed", target, f"rewritten together with its leaf hash: entry {index} links to a "
                                          "different hash")


__all__ = [
    "KINDS",
    "AuditLog",
    "AuditReport",
    "Problem",
    "canonical_json",
    "new_salt",
    "salted_hash",
]
