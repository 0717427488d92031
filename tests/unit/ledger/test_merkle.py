"""The Merkle tree of RFC 6962/9162: roots against Certificate Transparency's published test
vectors, proof shapes against the RFC's 7-leaf example, and, with hypothesis over random trees
of 1..300 leaves, every leaf's audit path checked against a recursive transcription of the
RFC's definitions, verified, and refused once any part of it is altered."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ciyuan.ledger import merkle
from ciyuan.ledger.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_proof,
    inclusion_proof,
    inclusion_proofs,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

# The leaves and roots of certificate-transparency's merkle_tree_test vectors.
CT_LEAVES = [
    b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)), bytes(range(0x60, 0x70)),
]  # fmt: skip
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def leaves_of(seed: bytes, size: int) -> list[bytes]:
    return [leaf_hash(seed + index.to_bytes(4, "big")) for index in range(size)]


def split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: Sequence[bytes]) -> bytes:
    """RFC 6962 §2.1, word for word (leaf hashes given, so MTH of one is the leaf itself)."""
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return d[0]
    k = split(len(d))
    return node_hash(mth(d[:k]), mth(d[k:]))


def path(m: int, d: Sequence[bytes]) -> list[bytes]:
    """RFC 6962 §2.1.1 PATH(m, D[n])."""
    if len(d) == 1:
        return []
    k = split(len(d))
    return [*path(m, d[:k]), mth(d[k:])] if m < k else [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: Sequence[bytes], complete: bool) -> list[bytes]:
    """RFC 6962 §2.1.2 SUBPROOF(m, D[n], b)."""
    if m == len(d):
        return [] if complete else [mth(d)]
    k = split(len(d))
    if m <= k:
        return [*subproof(m, d[:k], complete), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


def flipped(node: bytes) -> bytes:
    return bytes([node[0] ^ 1]) + node[1:]


def test_roots_match_certificate_transparency_vectors() -> None:
    leaves = [leaf_hash(data) for data in CT_LEAVES]
    assert [root(leaves[:n]).hex() for n in range(1, 9)] == CT_ROOTS
    assert root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()


def test_proof_shapes_of_the_rfc_seven_leaf_tree() -> None:
    """RFC 6962 §2.1.3: a..f,d6 are leaves, g..j their parents, k and l the root's children."""
    a, b, c, d, e, f, d6 = leaves_of(b"rfc", 7)
    g, h, i = node_hash(a, b), node_hash(c, d), node_hash(e, f)
    j, k = d6, node_hash(g, h)
    l = node_hash(i, j)  # noqa: E741  (the RFC's name)
    leaves = [a, b, c, d, e, f, d6]
    assert root(leaves) == node_hash(k, l)
    assert inclusion_proof(leaves, 0) == [b, h, l]
    assert inclusion_proof(leaves, 3) == [c, g, l]
    assert inclusion_proof(leaves, 4) == [f, j, k]
    assert inclusion_proof(leaves, 6) == [i, k]
    assert consistency_proof(leaves, 3) == [c, d, g, l]
    assert consistency_proof(leaves, 4) == [l]
    assert consistency_proof(leaves, 6) == [i, j, k]
    assert consistency_proof(leaves, 7) == []


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=8), st.integers(1, 300))
def test_every_leaf_proves_its_inclusion_and_nothing_else_does(seed: bytes, size: int) -> None:
    leaves = leaves_of(seed, size)
    top = root(leaves)
    assert top == mth(leaves)
    # The roots a lying log could sign for a neighbouring size, over the same leaves.
    other_roots = {n: root(leaves_of(seed, n)) for n in (size - 1, size + 1) if n > 0}
    paths = inclusion_proofs(leaves, range(size))
    assert max(map(len, paths)) == (size - 1).bit_length()  # ⌈log2 n⌉ hashes at most
    for index in {0, size // 2, size - 1}:  # the recursive reference is O(n log n) a path
        assert paths[index] == path(index, leaves)
    for index, proof in enumerate(paths):
        leaf = leaves[index]
        assert verify_inclusion(leaf, index, size, proof, top)
        assert not verify_inclusion(flipped(leaf), index, size, proof, top)
        assert not verify_inclusion(leaf, index, size, proof, flipped(top))
        for slot in range(len(proof)):
            altered = [*proof[:slot], flipped(proof[slot]), *proof[slot + 1 :]]
            assert not verify_inclusion(leaf, index, size, altered, top)
        for other in {index - 1, index + 1, index ^ 1, size} - {index}:
            assert not verify_inclusion(leaf, other, size, proof, top)
        for other_size, other_root in other_roots.items():
            if index < other_size:
                assert not verify_inclusion(leaf, index, other_size, proof, other_root)
        assert not verify_inclusion(leaf, index, size, [*proof, leaf], top)
        if proof:
            assert not verify_inclusion(leaf, index, size, proof[:-1], top)
            swapped = proof[::-1]
            if swapped != proof:
                assert not verify_inclusion(leaf, index, size, swapped, top)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=8), st.integers(1, 300), st.data())
def test_a_grown_tree_proves_it_extends_the_old_one(
    seed: bytes, size: int, data: st.DataObject
) -> None:
    leaves = leaves_of(seed, size)
    old = data.draw(st.integers(1, size))
    proof = consistency_proof(leaves, old)
    assert proof == subproof(old, leaves, True)
    old_root, new_root = root(leaves[:old]), root(leaves)
    assert verify_consistency(old, size, old_root, new_root, proof)
    assert not verify_consistency(old, size, flipped(old_root), new_root, proof)
    assert not verify_consistency(old, size, old_root, flipped(new_root), proof)
    for slot in range(len(proof)):
        altered = [*proof[:slot], flipped(proof[slot]), *proof[slot + 1 :]]
        assert not verify_consistency(old, size, old_root, new_root, altered)
    if old < size:
        forked = [*leaves[: old - 1], flipped(leaves[old - 1]), *leaves[old:]]
        assert not verify_consistency(
            old, size, old_root, root(forked), consistency_proof(forked, old)
        )


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=8), st.integers(0, 300))
def test_a_frontier_grows_leaf_by_leaf_to_the_same_root(seed: bytes, size: int) -> None:
    leaves = leaves_of(seed, size)
    frontier = Frontier()
    for count, leaf in enumerate(leaves, start=1):
        frontier.append(leaf)
        assert frontier.size == count and len(frontier.nodes) == count.bit_count()
    assert frontier.root() == root(leaves)
    revived = Frontier.from_text(size, frontier.to_text())
    assert revived.root() == frontier.root()
    revived.append(leaf_hash(b"next"))
    assert revived.root() == root([*leaves, leaf_hash(b"next")])


def test_a_frontier_text_of_the_wrong_size_is_refused() -> None:
    text = Frontier(3, leaves_of(b"x", 2)).to_text()
    for size in (2, 4, -1):
        with pytest.raises(ValueError, match="frontier"):
            Frontier.from_text(size, text)
    with pytest.raises(ValueError):
        Frontier.from_text(3, "zz" * 64)


def test_malformed_inputs_fail_instead_of_raising() -> None:
    leaves = leaves_of(b"m", 5)
    proof = inclusion_proof(leaves, 2)
    assert not verify_inclusion(leaves[2], -1, 5, proof, root(leaves))
    assert not verify_inclusion(leaves[2], 2, 0, proof, root(leaves))
    assert not verify_inclusion(leaves[2], 2, 5, [*proof[:-1], b"short"], root(leaves))
    assert not verify_consistency(0, 5, EMPTY_ROOT, root(leaves), [])
    assert not verify_consistency(6, 5, root(leaves), root(leaves), [])
    assert not verify_consistency(3, 5, root(leaves[:3]), root(leaves), [])
    assert merkle.verify_consistency(5, 5, root(leaves), root(leaves), [])


def stored_subtrees(leaves: Sequence[bytes], lowest: int) -> dict[tuple[int, int], bytes]:
    """Every complete aligned subtree of height ≥ ``lowest``, hashed from scratch."""
    found = {}
    height = lowest
    while (1 << height) <= len(leaves):
        for position in range(len(leaves) >> height):
            found[(height, position)] = root(leaves[position << height : (position + 1) << height])
        height += 1
    return found


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=8), st.integers(0, 300))
def test_a_frontier_hands_out_each_subtree_it_completes(seed: bytes, size: int) -> None:
    leaves = leaves_of(seed, size)
    frontier = Frontier()
    completed = {}
    for leaf in leaves:
        for height, node in enumerate(frontier.append(leaf), start=1):
            completed[(height, (frontier.size >> height) - 1)] = node
    assert completed == stored_subtrees(leaves, 1)
    assert frontier.subtrees() == merkle.perfect_cover(0, size)
    assert dict(zip(frontier.subtrees(), frontier.nodes, strict=True)).items() <= (
        {**stored_subtrees(leaves, 0), **{(0, i): leaf for i, leaf in enumerate(leaves)}}.items()
    )


@settings(max_examples=150, deadline=None)
@given(
    st.binary(max_size=8),
    st.integers(1, 600),
    st.integers(0, 4),
    st.data(),
)
def test_proofs_from_stored_subtrees_equal_proofs_from_every_leaf(
    seed: bytes, size: int, block_height: int, data: st.DataObject
) -> None:
    """Whatever subset of the nodes is stored, with or without the frontier: the same paths as
    the whole tree gives; with every node stored, one block of leaves per index at most (plus
    the partial last block when there is no frontier) and O(log n) nodes."""
    leaves = leaves_of(seed, size)
    indices = sorted(data.draw(st.sets(st.integers(0, size - 1), min_size=1, max_size=4)))
    every = stored_subtrees(leaves, block_height)
    dropped = data.draw(st.sets(st.sampled_from(sorted(every)))) if every else set()
    stored = {piece: node for piece, node in every.items() if piece not in dropped}
    frontier = Frontier()
    for leaf in leaves:
        frontier.append(leaf)
    use_frontier = data.draw(st.booleans())
    known = dict(zip(frontier.subtrees(), frontier.nodes, strict=True)) if use_frontier else {}
    asked_nodes: list[tuple[int, int]] = []
    asked_blocks: list[int] = []

    def read_nodes(wanted: set[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        assert all(height >= block_height for height, _ in wanted)
        asked_nodes.extend(wanted)
        return {piece: stored[piece] for piece in wanted if piece in stored}

    def read_blocks(blocks: set[int]) -> dict[int, bytes]:
        asked_blocks.extend(blocks)
        block = 1 << block_height
        return {i: leaves[i] for b in blocks for i in range(b * block, min((b + 1) * block, size))}

    paths = merkle.inclusion_proofs_from_subtrees(
        size, indices, block_height, known, read_nodes, read_blocks
    )
    assert paths == inclusion_proofs(leaves, indices)
    assert len(asked_blocks) == len(set(asked_blocks))
    if not dropped:
        own = {index >> block_height for index in indices}
        last = set() if use_frontier else {(size - 1) >> block_height}
        assert set(asked_blocks) <= own | last
        assert len(asked_nodes) <= len(indices) * size.bit_length() ** 2
        assert len(set(asked_nodes)) == len(asked_nodes)


def test_a_wrong_stored_node_gives_a_path_that_fails_verification() -> None:
    """Stored nodes are not signed: the store must verify the paths it builds before use."""
    leaves = leaves_of(b"t", 100)
    stored = stored_subtrees(leaves, 2)
    stored[(4, 1)] = flipped(stored[(4, 1)])
    [path] = merkle.inclusion_proofs_from_subtrees(
        100,
        [3],
        2,
        {},
        lambda wanted: {p: stored[p] for p in wanted if p in stored},
        lambda blocks: {i: leaves[i] for b in blocks for i in range(b * 4, min(b * 4 + 4, 100))},
    )
    assert path != inclusion_proof(leaves, 3)
    assert not verify_inclusion(leaves[3], 3, 100, path, root(leaves))
