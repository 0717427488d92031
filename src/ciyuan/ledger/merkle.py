"""A Merkle tree over the log, as Certificate Transparency builds it (pure domain: no I/O).

RFC 6962 §2.1 / RFC 9162 §2.1: the tree over the leaves ``d[0:n]``, for any ``n``, is

    MTH({})       = SHA-256()
    MTH({d0})     = SHA-256(0x00 ‖ d0)                        (the *leaf hash*)
    MTH(d[0:n])   = SHA-256(0x01 ‖ MTH(d[0:k]) ‖ MTH(d[k:n]))  k the largest power of 2 < n

Everything here takes *leaf hashes* (32 bytes each), not leaf data: the ledger's
:func:`ciyuan.ledger.chain.leaf_hash` is already ``SHA-256(0x00 ‖ canonical transfer)``, which
is exactly RFC 6962's leaf hash of the canonical encoding, so the chain and the tree share their
leaves and a transfer's leaf is hashed once. The 0x00/0x01 prefixes keep a leaf from ever
passing for an interior node (no second preimages by reinterpreting a subtree as a leaf).

An *inclusion proof* (audit path) for leaf ``i`` of a tree of size ``n`` is the list of
sibling hashes from the leaf up to the root, at most ⌈log2 n⌉ of them; a *consistency proof*
between sizes ``m ≤ n`` shows that the tree of size ``n`` extends the tree of size ``m``.
Verification follows RFC 9162 §2.1.3.2 and §2.1.4.2 step by step. A :class:`Frontier` keeps the
roots of the perfect subtrees along the right edge (one per bit of ``n``), enough to extend the
tree leaf by leaf and compute its root without seeing the earlier leaves again.

Every other node is an aligned perfect subtree (:data:`Subtree`) whose hash is fixed once its
last leaf is appended, so a store may keep those from some height up and build audit paths from
them (:func:`inclusion_proofs_from_subtrees`) without rehashing the tree: the same paths as
:func:`inclusion_proofs`, from O(log n) stored hashes and one block of leaves per index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

HASH_BYTES: Final = 32
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()
"""MTH({}): the root of the tree with no leaves."""


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash of raw leaf data (the ledger computes its own in ``chain.py``)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _parent_level(level: Sequence[bytes]) -> list[bytes]:
    """Hash neighbours in pairs; an odd last node moves up unchanged.

    Bottom-up pairing with the odd node promoted builds exactly RFC 6962's tree (the left
    subtree is always the largest perfect one), without recursion.
    """
    parents = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        parents.append(level[-1])
    return parents


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH of ``leaves`` (leaf hashes); the tree over the first ``n`` is ``root(leaves[:n])``."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    while len(level) > 1:
        level = _parent_level(level)
    return level[0]


def inclusion_proofs(leaves: Sequence[bytes], indices: Sequence[int]) -> list[list[bytes]]:
    """The audit path of each leaf index in the tree over ``leaves``, in one pass up the tree.

    O(n) hashes however many indices are asked for (the tree is built once, level by level, and
    each level is dropped once the next is built), and each path has at most ⌈log2 n⌉ hashes.
    """
    size = len(leaves)
    assert all(0 <= index < size for index in indices), "a leaf index lies outside the tree"
    paths: list[list[bytes]] = [[] for _ in indices]
    positions = list(indices)
    level = list(leaves)
    while len(level) > 1:
        for slot, position in enumerate(positions):
            sibling = position ^ 1
            if sibling < len(level):  # else the node is the promoted odd one: no hash here
                paths[slot].append(level[sibling])
            positions[slot] = position >> 1
        level = _parent_level(level)
    return paths


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, leaves): the audit path of one leaf."""
    return inclusion_proofs(leaves, [index])[0]


def verify_inclusion(
    leaf: bytes, index: int, size: int, path: Sequence[bytes], root_hash: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does ``path`` prove the leaf hash at ``index`` under ``root_hash``?"""
    if not 0 <= index < size or any(len(node) != HASH_BYTES for node in path):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False  # a path longer than the tree is deep
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # A right-edge node with no right sibling moves up without a hash.
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root_hash


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 §2.1.4.1: the tree over ``leaves`` extends its first ``m``.

    Recomputes subtree roots from the leaves (O(n log n) hashes): fine for tests and audits,
    and a store that keeps interior nodes would read them instead.
    """
    assert 0 < old_size <= len(leaves), "a consistency proof needs 0 < m <= n"
    return _subproof(old_size, leaves, complete=True)


def _subproof(m: int, leaves: Sequence[bytes], *, complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete=complete), root(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], complete=False), root(leaves[:k])]


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, path: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: does ``path`` prove the tree ``new_root`` extends ``old_root``?"""
    if not 0 < old_size <= new_size or any(len(node) != HASH_BYTES for node in path):
        return False
    if old_size == new_size:
        return not path and old_root == new_root
    if not path:
        return False
    nodes = list(path)
    if old_size & (old_size - 1) == 0:  # a perfect old tree is itself a node of the new one
        nodes.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = nodes[0]
    for c in nodes[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == old_root and sr == new_root and sn == 0


Subtree = tuple[int, int]
"""An aligned perfect subtree ``(height, position)``: the leaves ``position·2^height`` up to
``(position + 1)·2^height``. Every node of an RFC 6962 tree that is not on its right edge is
one, and its hash never changes as the log grows, which is what lets a store keep it."""


def perfect_cover(start: int, end: int) -> list[Subtree]:
    """The aligned perfect subtrees that make up leaves ``start..end``, left to right.

    ``start`` must be a multiple of the largest power of two ≤ ``end − start`` (true of every
    range RFC 6962 hashes): the pieces are then one per set bit of the length, largest first,
    and folding their hashes from the right is exactly MTH of the range.
    """
    pieces: list[Subtree] = []
    while start < end:
        height = (end - start).bit_length() - 1
        assert start % (1 << height) == 0, "the range is not aligned as RFC 6962 splits it"
        pieces.append((height, start >> height))
        start += 1 << height
    return pieces


def audit_subtrees(size: int, index: int) -> list[list[Subtree]]:
    """What each hash of the audit path of ``index`` in a tree of ``size`` is made of.

    Entry ``h`` is the sibling at height ``h`` (skipped where the node has none) as the perfect
    subtrees of :func:`perfect_cover`: a single one unless the sibling is cut short by the
    right edge. No hashing: a store uses this to know which stored nodes and leaves to read.
    """
    assert 0 <= index < size, "a leaf index lies outside the tree"
    path: list[list[Subtree]] = []
    height = 0
    while (1 << height) < size:  # the level above still has more than one node
        start = ((index >> height) ^ 1) << height
        if start < size:  # else this node is the promoted odd one: no hash here
            path.append(perfect_cover(start, min(start + (1 << height), size)))
        height += 1
    return path


class SubtreeHashes:
    """MTH of aligned perfect subtrees from whatever is at hand: hashes already known (a store's
    saved nodes, a checkpoint's frontier) and leaf hashes by index.

    A subtree not known is hashed from its two halves, recursively, down to the leaves, and
    remembered, so a caller may hand over an incomplete set of nodes as long as it supplies the
    leaves under every gap (:meth:`inclusion_proofs` raises ``KeyError`` otherwise). Given
    correct inputs the paths equal :func:`inclusion_proofs` over all the leaves.
    """

    __slots__ = ("known", "leaves")

    def __init__(self, known: Mapping[Subtree, bytes], leaves: Mapping[int, bytes]) -> None:
        self.known = dict(known)
        self.leaves = leaves

    def perfect(self, height: int, position: int) -> bytes:
        found = self.known.get((height, position))
        if found is not None:
            return found
        if height == 0:
            return self.leaves[position]
        made = node_hash(
            self.perfect(height - 1, 2 * position), self.perfect(height - 1, 2 * position + 1)
        )
        self.known[(height, position)] = made
        return made

    def fold(self, pieces: Sequence[Subtree]) -> bytes:
        """MTH of a range given as its :func:`perfect_cover`."""
        result = self.perfect(*pieces[-1])
        for piece in reversed(pieces[:-1]):
            result = node_hash(self.perfect(*piece), result)
        return result

    def inclusion_proofs(self, size: int, indices: Sequence[int]) -> list[list[bytes]]:
        return [[self.fold(pieces) for pieces in audit_subtrees(size, i)] for i in indices]


def inclusion_proofs_from_subtrees(
    size: int,
    indices: Sequence[int],
    block_height: int,
    known: Mapping[Subtree, bytes],
    read_nodes: Callable[[set[Subtree]], Mapping[Subtree, bytes]],
    read_blocks: Callable[[set[int]], Mapping[int, bytes]],
) -> list[list[bytes]]:
    """:func:`inclusion_proofs` without the whole tree: from stored subtree hashes and blocks.

    ``read_nodes`` returns whichever of the asked subtrees (all of height ≥ ``block_height``)
    are stored; ``read_blocks`` returns the leaf hashes, by index, of the asked blocks (block
    ``b`` is leaves ``b·2^block_height`` up to the next block or ``size``). ``known`` (e.g. a
    saved :class:`Frontier`'s subtrees) is used first. With every node stored that is one
    block of leaves per index and O(log n) nodes, asked for in one call each; a missing node
    is asked for by its halves, level after level, down to the blocks under it.
    """
    nodes = dict(known)
    wanted = {
        piece
        for index in indices
        for pieces in audit_subtrees(size, index)
        for piece in pieces
        if piece not in nodes
    }
    blocks: set[int] = set()
    while wanted:
        blocks.update(
            (position << height) >> block_height
            for height, position in wanted
            if height < block_height
        )
        high = {piece for piece in wanted if piece[0] >= block_height}
        if high:
            nodes.update(read_nodes(high))
        missing = [piece for piece in high if piece not in nodes]
        blocks.update(position for height, position in missing if height == block_height)
        wanted = {
            half
            for height, position in missing
            if height > block_height
            for half in ((height - 1, 2 * position), (height - 1, 2 * position + 1))
            if half not in nodes
        }
    leaves = read_blocks(blocks) if blocks else {}
    return SubtreeHashes(nodes, leaves).inclusion_proofs(size, indices)


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (n ≥ 2): where RFC 6962 splits a tree."""
    assert n >= 2
    return 1 << ((n - 1).bit_length() - 1)


class Frontier:
    """The right edge of a growing tree: append leaves one by one, read the root at any size.

    ``nodes`` are the roots of the perfect subtrees that make up the tree, left to right, one
    per set bit of ``size`` (largest first), so it holds at most 64 hashes. Folding them from the
    right gives MTH: the same split RFC 6962 makes. Saved next to a signed root, it lets the
    next checkpoint hash only the leaves appended since, not the whole log again.
    """

    __slots__ = ("nodes", "size")

    def __init__(self, size: int = 0, nodes: Iterable[bytes] = ()) -> None:
        self.size = size
        self.nodes = list(nodes)
        assert len(self.nodes) == size.bit_count(), "a frontier has one node per set bit of size"
        assert all(len(node) == HASH_BYTES for node in self.nodes)

    def append(self, leaf: bytes) -> list[bytes]:
        """Add a leaf; return the perfect subtrees it completes, by height (1, 2, …), each
        ending at the new size, so a store can keep them for :class:`SubtreeHashes`."""
        assert len(leaf) == HASH_BYTES
        self.nodes.append(leaf)
        self.size += 1
        # Each trailing one bit of the old size is a perfect subtree the new leaf completes.
        merges = (self.size & -self.size).bit_length() - 1
        completed = []
        for _ in range(merges):
            right = self.nodes.pop()
            self.nodes[-1] = node_hash(self.nodes[-1], right)
            completed.append(self.nodes[-1])
        return completed

    def subtrees(self) -> list[Subtree]:
        """Where each of :attr:`nodes` sits: its (height, position), left to right."""
        return perfect_cover(0, self.size)

    def root(self) -> bytes:
        if not self.nodes:
            return EMPTY_ROOT
        result = self.nodes[-1]
        for node in reversed(self.nodes[:-1]):
            result = node_hash(node, result)
        return result

    def to_text(self) -> str:
        """The nodes as one hex string (64 digits each), for a database column."""
        return "".join(node.hex() for node in self.nodes)

    @classmethod
    def from_text(cls, size: int, text: str) -> Frontier:
        """Inverse of :meth:`to_text`; ValueError if ``text`` is not a frontier of ``size``."""
        digits = 2 * HASH_BYTES
        if size < 0 or len(text) != digits * size.bit_count():
            raise ValueError(f"not a Merkle frontier of size {size}")
        raw = bytes.fromhex(text)
        return cls(size, (raw[i : i + HASH_BYTES] for i in range(0, len(raw), HASH_BYTES)))
