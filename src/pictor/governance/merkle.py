"""The Merkle tree of RFC 9162 section 2.1 (Certificate Transparency v2, same hashes as RFC 6962).

Leaves are 32-byte leaf hashes (`leaf_hash(entry)`). The functions are pure; `MerkleTree` keeps the levels
of one tree so that many proofs cost O(log n) each, and `CompactRange` gives the root of every prefix while
leaves are appended (what verifying many checkpoints needs).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    """SHA-256(0x00 || entry)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


class CompactRange:
    """The roots of the perfect subtrees of a growing tree: O(1) amortised per leaf, O(log n) per root."""

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self.size = 0
        self._peaks: list[bytes] = []  # left to right, strictly decreasing subtree sizes
        for leaf in leaves:
            self.append(leaf)

    def append(self, leaf: bytes) -> None:
        node, size = leaf, self.size
        while size & 1:  # merge equal-sized subtrees, one per trailing one bit of the old size
            node = node_hash(self._peaks.pop(), node)
            size >>= 1
        self._peaks.append(node)
        self.size += 1

    def root(self) -> bytes:
        if not self._peaks:
            return EMPTY_ROOT
        result = self._peaks[-1]
        for peak in reversed(self._peaks[:-1]):
            result = node_hash(peak, result)
        return result


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]); the empty tree's root is SHA-256 of the empty string."""
    return CompactRange(leaves).root()


class MerkleTree:
    """All levels of one tree, built bottom-up once; a lone right node is carried up unchanged, which gives
    exactly RFC 9162's split at the largest power of two smaller than n."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.levels: list[list[bytes]] = [list(leaves)]
        while len(self.levels[-1]) > 1:
            below = self.levels[-1]
            above = [node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
            if len(below) % 2:
                above.append(below[-1])
            self.levels.append(above)

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def root(self) -> bytes:
        return self.levels[-1][0] if self.size else EMPTY_ROOT

    def _subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for the ranges the RFC recursion visits: aligned, full or running to the end."""
        level = (end - start - 1).bit_length()
        if start % (1 << level) or end != min(start + (1 << level), self.size):
            raise AssertionError(f"[{start}, {end}) is not a node of this tree")
        return self.levels[level][start >> level]

    def inclusion_proof(self, index: int) -> list[bytes]:
        """PATH(m, D[n]) of RFC 9162 2.1.3.1, leaf level first."""
        if not 0 <= index < self.size:
            raise ValueError(f"leaf index {index} is outside a tree of size {self.size}")
        proof = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                proof.append(level[sibling])
            index >>= 1
        return proof

    def consistency_proof(self, old_size: int) -> list[bytes]:
        """PROOF(m, D[n]) of RFC 9162 2.1.4.1; empty when m is 0 or n."""
        if not 0 <= old_size <= self.size:
            raise ValueError(f"old size {old_size} is outside 0..{self.size}")
        if old_size in (0, self.size):
            return []
        proof: list[bytes] = []
        start, end, complete = 0, self.size, True
        m = old_size
        while m != end - start:  # SUBPROOF(m, D[start:end], complete), iteratively; pushes go on the front
            k = 1 << ((end - start - 1).bit_length() - 1)  # the largest power of two below n
            if m <= k:
                proof.append(self._subtree(start + k, end))
                end = start + k
            else:
                proof.append(self._subtree(start, start + k))
                start, m, complete = start + k, m - k, False
        if not complete:
            proof.append(self._subtree(start, end))
        return proof[::-1]


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf `index` in the tree of all `leaves`."""
    return MerkleTree(leaves).inclusion_proof(index)


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """Proof that the tree of the first `old_size` leaves is a prefix of the tree of all `leaves`."""
    return MerkleTree(leaves).consistency_proof(old_size)


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 2.1.3.2: does the leaf hash `leaf` sit at `index` in the tree of `size` with `root`?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """RFC 9162 2.1.4.2: is the tree (old_size, old_root) a prefix of (new_size, new_root)?

    The edge cases the RFC leaves out: equal sizes need an empty proof and equal roots; the empty tree is a
    prefix of every tree (empty proof).
    """
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # an exact power of two: the old root is itself a node of the new tree
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == old_root and sr == new_root and sn == 0
