import hashlib

import pytest
from pymerkle import InmemoryTree as MerkleTree

from pictor.governance.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

MAX = 33


def entries(n: int) -> list[bytes]:
    return [f"entry {i}".encode() for i in range(n)]


def leaves(n: int) -> list[bytes]:
    return [leaf_hash(e) for e in entries(n)]


def flipped(data: bytes) -> bytes:
    return bytes([data[0] ^ 1]) + data[1:]


def test_hashes_use_the_rfc_prefixes() -> None:
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert node_hash(b"l" * 32, b"r" * 32) == hashlib.sha256(b"\x01" + b"l" * 32 + b"r" * 32).digest()
    assert root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()


def test_roots_match_pymerkle_for_sizes_0_to_40() -> None:
    tree = MerkleTree(algorithm="sha256", disable_security=False)  # RFC 6962 mode: 0x00 / 0x01 prefixes
    assert (tree.leaf_prefix, tree.node_prefix) == (b"\x00", b"\x01")
    data = entries(40)
    assert root([]) == tree.hash_empty()
    for size in range(1, 41):
        tree.append_entry(data[size - 1])
        assert root([leaf_hash(e) for e in data[:size]]) == tree.get_root(size), size


def test_roots_match_the_certificate_transparency_reference_vectors() -> None:
    # the 8 inputs and roots used by RFC 6962 implementations' test suites (certificate-transparency-go)
    inputs = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
    expected = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
    hashed = [leaf_hash(bytes.fromhex(i)) for i in inputs]
    assert [root(hashed[:n]).hex() for n in range(1, 9)] == expected


def test_compact_range_gives_the_root_of_every_prefix() -> None:
    all_leaves = leaves(MAX)
    compact = CompactRange()
    assert compact.root() == EMPTY_ROOT
    for size in range(1, MAX + 1):
        compact.append(all_leaves[size - 1])
        assert (compact.size, compact.root()) == (size, root(all_leaves[:size]))


@pytest.mark.parametrize("size", range(1, MAX + 1))
def test_every_inclusion_proof_verifies_and_a_wrong_one_does_not(size: int) -> None:
    tree_leaves = leaves(size)
    tree_root = root(tree_leaves)
    for index in range(size):
        proof = inclusion_proof(tree_leaves, index)
        leaf = tree_leaves[index]
        assert verify_inclusion(leaf, index, size, proof, tree_root)
        assert not verify_inclusion(flipped(leaf), index, size, proof, tree_root)
        assert not verify_inclusion(leaf, index, size, proof, flipped(tree_root))
        # (a larger size can share the path's shape, e.g. index 0 in sizes 3 and 4: the root is what binds it)
        assert not verify_inclusion(leaf, size, size, proof, tree_root)
        assert not verify_inclusion(leaf, index, size, [*proof, tree_root], tree_root)
        if size > 1:
            assert not verify_inclusion(leaf, index ^ 1 if index ^ 1 < size else index - 1, size, proof, tree_root)
        for position in range(len(proof)):
            broken = proof[:position] + [flipped(proof[position])] + proof[position + 1 :]
            assert not verify_inclusion(leaf, index, size, broken, tree_root)
            assert not verify_inclusion(leaf, index, size, proof[:position], tree_root)


@pytest.mark.parametrize("new_size", range(1, MAX + 1))
def test_every_consistency_proof_verifies_and_a_wrong_one_does_not(new_size: int) -> None:
    tree_leaves = leaves(new_size)
    new_root = root(tree_leaves)
    for old_size in range(new_size + 1):
        old_root = root(tree_leaves[:old_size])
        proof = consistency_proof(tree_leaves, old_size)
        assert verify_consistency(old_size, new_size, old_root, new_root, proof), (old_size, new_size)
        if old_size > 0:  # the empty tree is a prefix of every tree
            assert not verify_consistency(old_size, new_size, old_root, flipped(new_root), proof)
            assert not verify_consistency(old_size, new_size, flipped(old_root), new_root, proof)
        if 0 < old_size < new_size:
            assert not verify_consistency(old_size, new_size, old_root, new_root, proof[:-1])
            assert not verify_consistency(old_size, new_size, old_root, new_root, [*proof, new_root])
            for position in range(len(proof)):
                broken = proof[:position] + [flipped(proof[position])] + proof[position + 1 :]
                assert not verify_consistency(old_size, new_size, old_root, new_root, broken)


def test_a_rewritten_prefix_is_not_consistent() -> None:
    old = leaves(7)
    new = [*leaves(12)]
    new[3] = leaf_hash(b"rewritten")
    assert not verify_consistency(7, 12, root(old), root(new), consistency_proof(new, 7))


def test_out_of_range_arguments_are_refused() -> None:
    tree_leaves = leaves(5)
    for index in (-1, 5):
        with pytest.raises(ValueError):
            inclusion_proof(tree_leaves, index)
    for old_size in (-1, 6):
        with pytest.raises(ValueError):
            consistency_proof(tree_leaves, old_size)
    with pytest.raises(ValueError):
        inclusion_proof([], 0)
    assert not verify_consistency(6, 5, root(tree_leaves), root(tree_leaves), [])
