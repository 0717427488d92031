"""The hash chain on SQL: appending transfers in order, verifying, checkpoints and receipts.

Every transfer is written by :meth:`ChainStore._append`, inside the caller's transaction and
after the caller has locked the accounts it touches: it locks the one ``ledger_head`` row,
takes the next position and hashes the transfer onto the head. On PostgreSQL that row lock
serialises appends across processes (positions stay dense and hashes in order); on SQLite the
single writer already does. Locking accounts first, in id order, then the head, is the one
global order that keeps concurrent transactions free of deadlocks.

A checkpoint signs the chain head and the Merkle root of every leaf up to it; it saves the
tree's right edge (:class:`~ciyuan.ledger.merkle.Frontier`) beside the root, so the next one
hashes only the newer transfers, and stores the hashes of the aligned subtrees of 2^8 leaves
and up that those transfers complete (``merkle_nodes``). A receipt proves its transfers against
the latest checkpoint with Merkle inclusion proofs built from those hashes and one block of
leaves, O(B + log n) rows read, or, under a checkpoint signed before Merkle roots, with a chain
segment to the earliest one.
"""

# ruff: noqa: S608  (SQL is composed from constant column lists only; values are bound)

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Sequence
from dataclasses import replace
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ciyuan.errors import InvalidRequest, NotFound
from ciyuan.ledger.chain import (
    GENESIS_HASH,
    ChainProblem,
    ChainReport,
    ChainWalker,
    chain_hash,
    leaf_hash,
    link_hash,
)
from ciyuan.ledger.checkpoints import Checkpoint, public_key_hex, sign_checkpoint, signature_valid
from ciyuan.ledger.merkle import (
    HASH_BYTES,
    Frontier,
    Subtree,
    inclusion_proofs_from_subtrees,
    verify_inclusion,
)
from ciyuan.ledger.receipts import build_merkle_receipt, build_segment_receipt, merkle_receipt
from ciyuan.ledger.transfers import Transfer
from ciyuan.store.sql_base import TRANSFER_COLUMNS, SqlBase, Tx, transfer_from_row

VERIFY_BATCH: Final = 5000
RECEIPT_SEGMENT_MAX: Final = 200_000
"""The longest chain segment a (version-1) receipt may carry (≈13 MB of JSON)."""
_CHECKPOINT_COLUMNS: Final = "seq, hash, created_us, public_key, signature, merkle_root"
"""In :class:`Checkpoint`'s field order, so ``Checkpoint(*row)`` reads a row."""
MERKLE_BLOCK_HEIGHT: Final = 8
"""Subtrees of 2^8 leaves and up are kept in ``merkle_nodes``: a receipt hashes at most one such
block of leaves per transfer, and the table holds about 2n/256 rows (a few MB per million)."""
_SQL_PARAMS_MAX: Final = 500
"""Bound parameters per statement, well under SQLite's and PostgreSQL's limits."""

log = logging.getLogger("ciyuan.store")


class ChainStore(SqlBase):
    merkle_block_height: int = MERKLE_BLOCK_HEIGHT
    """Per store so tests can use tiny blocks: a stored node is right at any height, so stores
    that differ here only read and write different rows."""

    def _append(self, tx: Tx, transfer: Transfer, *, balances_moved: bool = False) -> Transfer:
        """Write ``transfer`` at the next chain position and move both posted balances.

        ``balances_moved``: the caller already moved both posted balances by this transfer's
        amount in this transaction (a settle folds its charges and the hold's release into one
        update per account).
        """
        assert transfer.amount.nanos > 0 and transfer.seq == 0
        # Balances first, the head last: system accounts (revenue, funding, expiry) sort after
        # every customer id, so this keeps the one lock order (customers, system accounts,
        # head), and the head (the one lock every append shares) is held for the least time.
        if not balances_moved:
            tx.execute(
                "UPDATE accounts SET debits_posted = debits_posted + ? WHERE id = ?",
                (transfer.amount.nanos, transfer.debit_account_id),
            )
            tx.execute(
                "UPDATE accounts SET credits_posted = credits_posted + ? WHERE id = ?",
                (transfer.amount.nanos, transfer.credit_account_id),
            )
        head_seq, head_hash = tx.lock_head()
        placed = replace(transfer, seq=head_seq + 1)
        placed = replace(placed, hash=chain_hash(head_hash, placed))
        tx.execute(
            f"INSERT INTO transfers ({TRANSFER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                placed.id, placed.debit_account_id, placed.credit_account_id, placed.amount.nanos,
                placed.kind.value, placed.reference, placed.idempotency_key, placed.created_us,
                placed.metadata, placed.seq, placed.hash,
            ),
        )  # fmt: skip
        tx.execute(
            "UPDATE ledger_head SET seq = ?, hash = ? WHERE id = 1", (placed.seq, placed.hash)
        )
        return placed

    def _seal_legacy_transfers(self) -> int:
        """Hash transfers written before the chain existed (migration 0002), once.

        Only while the chain has never advanced: after that a transfer without a hash is
        tampering for ``verify`` to report, not something to paper over on the next start.
        """
        with self.transaction() as tx:
            if tx.one("SELECT seq FROM transfers WHERE hash IS NULL LIMIT 1") is None:
                return 0
            head_seq, head_hash = tx.lock_head()
            if head_seq != 0:
                return 0
            rows = tx.execute(f"SELECT {TRANSFER_COLUMNS} FROM transfers ORDER BY seq")
            for position, row in enumerate(rows, start=1):
                transfer = replace(transfer_from_row(row), seq=position, hash="")
                head_hash = chain_hash(head_hash, transfer)
                # Positions only move down (gaps close): renumbering in order never collides.
                tx.execute(
                    "UPDATE transfers SET seq = ?, hash = ? WHERE id = ?",
                    (position, head_hash, transfer.id),
                )
            tx.execute(
                "UPDATE ledger_head SET seq = ?, hash = ? WHERE id = 1", (len(rows), head_hash)
            )
        return len(rows)

    def chain_head(self) -> tuple[int, str]:
        with self.read_transaction() as tx:
            row = tx.one("SELECT seq, hash FROM ledger_head WHERE id = 1")
        assert row is not None
        return int(row[0]), str(row[1])

    def _transfers_after(self, tx: Tx, seq: int, until: int | None = None) -> Iterator[Transfer]:
        """Transfers from position ``seq + 1`` on, in order, read in bounded batches."""
        while True:
            params: list[Any] = [seq]
            sql = f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE seq > ?"
            if until is not None:
                sql += " AND seq <= ?"
                params.append(until)
            rows = tx.execute(sql + " ORDER BY seq LIMIT ?", [*params, VERIFY_BATCH])
            for row in rows:
                yield transfer_from_row(row)
            if len(rows) < VERIFY_BATCH:
                return
            seq = int(rows[-1][9])

    def verify_chain(
        self, *, public_key: Ed25519PublicKey | None = None, from_checkpoint: bool = False
    ) -> ChainReport:
        """Walk the chain; report the first position altered, removed or reordered.

        Every stored checkpoint must lie on the chain; with ``public_key`` each must also carry
        a valid signature by it. ``from_checkpoint`` trusts the newest checkpoint and walks only
        what came after it (what ``checkpoint`` does before signing the next head).
        """
        with self.read_transaction() as tx:
            head = tx.one("SELECT seq, hash FROM ledger_head WHERE id = 1")
            assert head is not None
            checkpoints = [
                Checkpoint(*row)
                for row in tx.execute(f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY seq")
            ]
            walker = ChainWalker()
            if from_checkpoint and checkpoints:
                walker = ChainWalker(checkpoints[-1].seq, checkpoints[-1].hash)
            anchors = {cp.seq: cp for cp in checkpoints}
            for transfer in self._transfers_after(tx, walker.seq):
                if not walker.feed(transfer):
                    break
                anchor = anchors.get(walker.seq)
                if anchor is not None and anchor.hash != walker.hash:
                    walker.problem = ChainProblem(
                        walker.seq, "altered", "differs from a signed checkpoint"
                    )
                    break
            report = walker.finish(int(head[0]), str(head[1]))
        if report.ok:
            problem = _checkpoint_problem(checkpoints, report.head_seq, public_key)
            if problem is not None:
                return replace(report, problem=problem)
        return report

    def checkpoint(self, key: Ed25519PrivateKey) -> tuple[ChainReport, Checkpoint | None]:
        """Verify what came after the last checkpoint, then sign the head and its Merkle root.

        Nothing is signed if the chain is broken. A checkpoint already at the head is returned
        as it is, unless it predates Merkle roots: then it is re-signed with one (receipts that
        quoted the old one keep verifying, since they carry its signature).
        """
        report = self.verify_chain(public_key=key.public_key(), from_checkpoint=True)
        if not report.ok:
            return report, None
        with self.read_transaction() as tx:
            built = self._frontier_at(tx, report.head_seq, report.head_hash)
        if built is None:
            moved = ChainProblem(report.head_seq, "altered", "changed while being checkpointed")
            return replace(report, problem=moved), None
        frontier, nodes = built
        signed = sign_checkpoint(
            key, report.head_seq, report.head_hash, self._clock.now_us(), frontier.root().hex()
        )
        with self.transaction() as tx:
            tx.execute(
                f"INSERT INTO checkpoints ({_CHECKPOINT_COLUMNS}, merkle_frontier) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (seq) DO UPDATE SET "
                "hash = excluded.hash, created_us = excluded.created_us, "
                "public_key = excluded.public_key, signature = excluded.signature, "
                "merkle_root = excluded.merkle_root, merkle_frontier = excluded.merkle_frontier "
                "WHERE checkpoints.merkle_root IS NULL",
                (
                    signed.seq, signed.hash, signed.created_us, signed.public_key,
                    signed.signature, signed.merkle_root, frontier.to_text(),
                ),
            )  # fmt: skip
            self._save_merkle_nodes(tx, nodes)
            row = tx.one(
                f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE seq = ?", (signed.seq,)
            )
        assert row is not None
        return report, Checkpoint(*row)

    def _frontier_at(
        self, tx: Tx, head_seq: int, head_hash: str
    ) -> tuple[Frontier, list[tuple[Subtree, bytes]]] | None:
        """The Merkle tree's right edge over positions 1..``head_seq`` and the stored-height
        subtrees completed on the way; None if the leaves read do not chain to ``head_hash``
        (the ledger changed under us).

        Starts from the newest checkpoint at or below the head whose saved frontier folds to
        its signed root and whose subtrees are in ``merkle_nodes`` (else from the empty tree),
        so a checkpoint hashes only the transfers after the previous one; the first checkpoint
        of a ledger from before ``merkle_nodes`` rehashes it all once, filling the table.
        Relinking those leaves to the verified head hash ties the tree, and every node saved
        from it, to exactly the chain that ``verify_chain`` just checked.
        """
        frontier, running = Frontier(), GENESIS_HASH
        nodes: list[tuple[Subtree, bytes]] = []
        lowest = self.merkle_block_height
        row = tx.one(
            "SELECT seq, hash, merkle_root, merkle_frontier FROM checkpoints WHERE seq <= ? "
            "AND merkle_frontier IS NOT NULL ORDER BY seq DESC LIMIT 1",
            (head_seq,),
        )
        if row is not None:
            try:
                saved = Frontier.from_text(int(row[0]), str(row[3]))
            except ValueError:
                saved = None
            if (
                saved is not None
                and saved.root().hex() == row[2]
                and self._nodes_hold_frontier(tx, saved)
            ):
                frontier, running = saved, str(row[1])
        for transfer in self._transfers_after(tx, frontier.size, head_seq):
            leaf = leaf_hash(transfer)
            running = link_hash(running, leaf)
            completed = frontier.append(bytes.fromhex(leaf))
            for height in range(lowest, len(completed) + 1):
                nodes.append(((height, (frontier.size >> height) - 1), completed[height - 1]))
        if (frontier.size, running) != (head_seq, head_hash):
            return None
        return frontier, nodes

    def _nodes_hold_frontier(self, tx: Tx, frontier: Frontier) -> bool:
        """Are the frontier's subtrees of stored height in ``merkle_nodes``, with its hashes?

        Nodes are saved in the same transaction as the checkpoint whose frontier completes
        them, so they are missing only on a ledger checkpointed before the table existed (or
        after rows were deleted), and a mismatch means the table was altered: either way the
        caller rebuilds from the first leaf, which rewrites every node.
        """
        wanted = {
            piece: node
            for piece, node in zip(frontier.subtrees(), frontier.nodes, strict=True)
            if piece[0] >= self.merkle_block_height
        }
        return self._stored_nodes(tx, wanted) == wanted

    def _stored_nodes(self, tx: Tx, wanted: Collection[Subtree]) -> dict[Subtree, bytes]:
        """The rows of ``merkle_nodes`` for these subtrees; unreadable hashes count as absent."""
        found: dict[Subtree, bytes] = {}
        by_height: dict[int, list[int]] = {}
        for height, position in sorted(wanted):
            by_height.setdefault(height, []).append(position)
        for height, positions in by_height.items():
            for at in range(0, len(positions), _SQL_PARAMS_MAX):
                chunk = positions[at : at + _SQL_PARAMS_MAX]
                rows = tx.execute(
                    "SELECT node_index, hash FROM merkle_nodes WHERE height = ? "
                    f"AND node_index IN ({', '.join('?' * len(chunk))})",
                    [height, *chunk],
                )
                for position, text in rows:
                    try:
                        node = bytes.fromhex(str(text))
                    except ValueError:
                        continue
                    if len(node) == HASH_BYTES:
                        found[(height, int(position))] = node
        return found

    def _save_merkle_nodes(self, tx: Tx, nodes: Sequence[tuple[Subtree, bytes]]) -> None:
        # Overwrites: these were just hashed from leaves chained to a verified head, so they
        # repair any row altered since (a rebuild from the first leaf rewrites them all).
        per_row = 3
        step = _SQL_PARAMS_MAX // per_row
        for at in range(0, len(nodes), step):
            chunk = nodes[at : at + step]
            tx.execute(
                "INSERT INTO merkle_nodes (height, node_index, hash) VALUES "
                + ", ".join(["(?, ?, ?)"] * len(chunk))
                + " ON CONFLICT (height, node_index) DO UPDATE SET hash = excluded.hash",
                [
                    value
                    for (height, position), node in chunk
                    for value in (height, position, node.hex())
                ],
            )

    def latest_checkpoint(self) -> Checkpoint | None:
        with self.read_transaction() as tx:
            row = tx.one(f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY seq DESC LIMIT 1")
        return Checkpoint(*row) if row else None

    def receipt(self, request_id: str, *, account_id: str | None = None) -> dict[str, Any]:
        """The receipt of one request: what ``GET /v1/ciyuan/receipts/{request_id}`` returns.

        With ``account_id`` (the caller's, from its API key) another account's request is
        reported as not found, exactly like an unknown one, so receipts leak nothing.

        Under the latest checkpoint, when it signs a Merkle root, the receipt is version 2 with
        an inclusion proof per transfer, built from O(log n) stored subtree hashes and the
        leaves of the transfer's own block (see :meth:`_inclusion_paths`): O(B + log n) rows,
        not the n of hashing the whole tree, and the same document. Under checkpoints signed
        before Merkle roots it is version 1, a chain segment to the earliest covering checkpoint.
        """
        with self.read_transaction() as tx:
            own = self._transfers_of(tx, request_id)
            if not own or (
                account_id is not None
                and any(account_id not in (t.debit_account_id, t.credit_account_id) for t in own)
            ):
                raise NotFound(f"no receipt for request {request_id!r}")
            row = tx.one(f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY seq DESC LIMIT 1")
            latest = Checkpoint(*row) if row else None
            covering = latest if latest is not None and latest.seq >= own[-1].seq else None
            if covering is not None and covering.merkle_root is None:
                # No checkpoint signed since Merkle roots came in: the version-1 chain segment.
                return self._segment_receipt(tx, request_id, own)
            if covering is None:
                return build_merkle_receipt(request_id, own, [], None)
            paths = self._inclusion_paths(tx, covering, own)
            if paths is not None:
                return merkle_receipt(request_id, own, paths, covering)
            # Stored nodes that do not reach the signed root were altered or corrupted (or the
            # request's own rows were, which the customer's check reports): answer what the
            # whole tree says, as before the nodes existed.
            log.warning(
                "receipt %r: stored Merkle nodes do not prove it against checkpoint %d; "
                "rebuilt from every leaf",
                request_id,
                covering.seq,
            )
            return self._whole_tree_receipt(tx, request_id, own, covering)

    def _transfers_of(self, tx: Tx, request_id: str) -> list[Transfer]:
        return [
            transfer_from_row(row)
            for row in tx.execute(
                f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE reference = ? ORDER BY seq",
                (request_id,),
            )
        ]

    def _whole_tree_receipt(
        self, tx: Tx, request_id: str, own: list[Transfer], covering: Checkpoint
    ) -> dict[str, Any]:
        """The version-2 receipt from every leaf up to ``covering``: O(n), the fallback when
        stored nodes do not prove it (and bench/receipts' baseline)."""
        leaves = [leaf_hash(t) for t in self._transfers_after(tx, 0, covering.seq)]
        return build_merkle_receipt(request_id, own, leaves, covering)

    def _inclusion_paths(
        self, tx: Tx, checkpoint: Checkpoint, transfers: Sequence[Transfer]
    ) -> list[list[bytes]] | None:
        """The audit paths of ``transfers`` under ``checkpoint``'s signed root, from stored
        nodes; None unless each one verifies against that root.

        A path needs, per transfer, the sibling subtrees below the block height (hashed from
        the leaves of its own block) and O(log n) above it: stored nodes, plus, on the right
        edge, the checkpoint's saved frontier. A node not stored is hashed from its halves,
        down to the leaves if need be (on a ledger checkpointed before ``merkle_nodes``, as
        slow as hashing every leaf). Checking each path against the signed root before
        answering catches any stored node or frontier that was altered.
        """
        assert checkpoint.merkle_root is not None
        size, signed_root = checkpoint.seq, bytes.fromhex(checkpoint.merkle_root)
        indices = [t.seq - 1 for t in transfers]
        try:
            paths = inclusion_proofs_from_subtrees(
                size,
                indices,
                self.merkle_block_height,
                self._checkpoint_frontier(tx, checkpoint),
                lambda wanted: self._stored_nodes(tx, wanted),
                lambda blocks: self._block_leaves(tx, blocks, size),
            )
        except _RowsMissing:
            return None
        for transfer, index, path in zip(transfers, indices, paths, strict=True):
            leaf = bytes.fromhex(leaf_hash(transfer))
            if not verify_inclusion(leaf, index, size, path, signed_root):
                return None
        return paths

    def _checkpoint_frontier(self, tx: Tx, checkpoint: Checkpoint) -> dict[Subtree, bytes]:
        """The right edge saved with ``checkpoint``, by subtree, if it folds to the signed root:
        it covers the cut-short siblings, sparing a read of the last, partial block's leaves."""
        row = tx.one("SELECT merkle_frontier FROM checkpoints WHERE seq = ?", (checkpoint.seq,))
        if row is None or row[0] is None:
            return {}
        try:
            frontier = Frontier.from_text(checkpoint.seq, str(row[0]))
        except ValueError:
            return {}
        if frontier.root().hex() != checkpoint.merkle_root:
            return {}
        return dict(zip(frontier.subtrees(), frontier.nodes, strict=True))

    def _block_leaves(self, tx: Tx, blocks: Collection[int], size: int) -> dict[int, bytes]:
        """Leaf hashes by index of these blocks (the last one cut at ``size``), read as runs of
        adjacent blocks; raises :class:`_RowsMissing` if positions are gone."""
        runs: list[list[int]] = []
        for block in sorted(blocks):
            if runs and runs[-1][1] == block:
                runs[-1][1] = block + 1
            else:
                runs.append([block, block + 1])
        leaves: dict[int, bytes] = {}
        expected = 0
        for first, end in runs:
            start = first << self.merkle_block_height
            stop = min(end << self.merkle_block_height, size)
            expected += stop - start
            for transfer in self._transfers_after(tx, start, stop):
                leaves[transfer.seq - 1] = bytes.fromhex(leaf_hash(transfer))
        if len(leaves) != expected:
            raise _RowsMissing
        return leaves

    def _segment_receipt(self, tx: Tx, request_id: str, own: list[Transfer]) -> dict[str, Any]:
        """A version-1 receipt: the chain segment to the earliest checkpoint covering ``own``."""
        start = own[0].seq
        before = tx.one("SELECT hash FROM transfers WHERE seq = ?", (start - 1,))
        previous = GENESIS_HASH if start == 1 else str(before[0]) if before else ""
        row = tx.one(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE seq >= ? ORDER BY seq LIMIT 1",
            (own[-1].seq,),
        )
        assert row is not None, "called only when a checkpoint covers the request"
        covering = Checkpoint(*row)
        if covering.seq - start + 1 > RECEIPT_SEGMENT_MAX:
            raise InvalidRequest("the receipt's chain segment is too long; checkpoint more often")
        leaves = [leaf_hash(t) for t in self._transfers_after(tx, start - 1, covering.seq)]
        return build_segment_receipt(request_id, own, previous, leaves, covering)


class _RowsMissing(Exception):
    """Transfers a proof needs are gone: only the whole-tree path can say what to answer."""


def _checkpoint_problem(
    checkpoints: list[Checkpoint], head_seq: int, public_key: Ed25519PublicKey | None
) -> ChainProblem | None:
    for cp in checkpoints:
        if cp.seq > head_seq:
            return ChainProblem(head_seq + 1, "truncated", f"a checkpoint covers position {cp.seq}")
        if public_key is not None and (
            cp.public_key != public_key_hex(public_key) or not signature_valid(cp, public_key)
        ):
            return ChainProblem(
                cp.seq, "altered", "a checkpoint's signature is not valid for this key"
            )
    return None
