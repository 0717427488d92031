"""The hash chain on SQL: appending transfers in order, verifying, checkpoints and receipts.

Every transfer is written by :meth:`ChainStore._append`, inside the caller's transaction and
after the caller has locked the accounts it touches: it locks the one ``ledger_head`` row,
takes the next position and hashes the transfer onto the head. On PostgreSQL that row lock
serialises appends across processes (positions stay dense and hashes in order); on SQLite the
single writer already does. Locking accounts first, in id order, then the head, is the one
global order that keeps concurrent transactions free of deadlocks.

A checkpoint signs the chain head and the Merkle root of every leaf up to it; it saves the
tree's right edge (:class:`~ciyuan.ledger.merkle.Frontier`) beside the root, so the next one
hashes only the newer transfers. A receipt proves its transfers against the latest checkpoint
with Merkle inclusion proofs, or, under a checkpoint signed before Merkle roots, with a chain
segment to the earliest one.
"""

# ruff: noqa: S608  (SQL is composed from constant column lists only; values are bound)

from __future__ import annotations

from collections.abc import Iterator
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
from ciyuan.ledger.merkle import Frontier
from ciyuan.ledger.receipts import build_merkle_receipt, build_segment_receipt
from ciyuan.ledger.transfers import Transfer
from ciyuan.store.sql_base import TRANSFER_COLUMNS, SqlBase, Tx, transfer_from_row

VERIFY_BATCH: Final = 5000
RECEIPT_SEGMENT_MAX: Final = 200_000
"""The longest chain segment a (version-1) receipt may carry (≈13 MB of JSON)."""
_CHECKPOINT_COLUMNS: Final = "seq, hash, created_us, public_key, signature, merkle_root"
"""In :class:`Checkpoint`'s field order, so ``Checkpoint(*row)`` reads a row."""


class ChainStore(SqlBase):
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
            frontier = self._frontier_at(tx, report.head_seq, report.head_hash)
        if frontier is None:
            moved = ChainProblem(report.head_seq, "altered", "changed while being checkpointed")
            return replace(report, problem=moved), None
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
            row = tx.one(
                f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE seq = ?", (signed.seq,)
            )
        assert row is not None
        return report, Checkpoint(*row)

    def _frontier_at(self, tx: Tx, head_seq: int, head_hash: str) -> Frontier | None:
        """The Merkle tree's right edge over positions 1..``head_seq``; None if the leaves read
        do not chain to ``head_hash`` (the ledger changed under us).

        Starts from the newest checkpoint at or below the head whose saved frontier folds to
        its signed root (else from the empty tree), so a checkpoint hashes only the transfers
        after the previous one. Relinking those leaves to the verified head hash ties the tree
        to exactly the chain that ``verify_chain`` just checked.
        """
        frontier, running = Frontier(), GENESIS_HASH
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
            if saved is not None and saved.root().hex() == row[2]:
                frontier, running = saved, str(row[1])
        for transfer in self._transfers_after(tx, frontier.size, head_seq):
            leaf = leaf_hash(transfer)
            running = link_hash(running, leaf)
            frontier.append(bytes.fromhex(leaf))
        return frontier if (frontier.size, running) == (head_seq, head_hash) else None

    def latest_checkpoint(self) -> Checkpoint | None:
        with self.read_transaction() as tx:
            row = tx.one(f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY seq DESC LIMIT 1")
        return Checkpoint(*row) if row else None

    def receipt(self, request_id: str, *, account_id: str | None = None) -> dict[str, Any]:
        """The receipt of one request: what ``GET /v1/ciyuan/receipts/{request_id}`` returns.

        With ``account_id`` (the caller's, from its API key) another account's request is
        reported as not found, exactly like an unknown one, so receipts leak nothing.

        Under the latest checkpoint, when it signs a Merkle root, the receipt is version 2 with
        an inclusion proof per transfer; building it reads and hashes every leaf up to that
        checkpoint, O(n) per receipt (storing the tree's interior nodes would make it O(log n)).
        Under checkpoints signed before Merkle roots it is version 1, a chain segment to the
        earliest covering checkpoint.
        """
        with self.read_transaction() as tx:
            own = [
                transfer_from_row(row)
                for row in tx.execute(
                    f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE reference = ? ORDER BY seq",
                    (request_id,),
                )
            ]
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
            leaves = (
                [leaf_hash(t) for t in self._transfers_after(tx, 0, covering.seq)]
                if covering is not None
                else []
            )
        return build_merkle_receipt(request_id, own, leaves, covering)

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
