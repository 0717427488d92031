"""How long one version-2 receipt takes to build, from every leaf (the code path before
``merkle_nodes``) and from stored subtree hashes (``ChainStore.receipt`` now), on SQLite
ledgers of 20k and 100k transfers, in one run.

    .venv/bin/python -m bench.receipts [--sizes 20000 100000] [--samples 30]

Each ledger is written with bulk inserts that keep the hash chain valid (the store's own
``chain_hash``), then checkpointed by the store, which verifies the chain, signs the Merkle
root and stores the subtrees. Both paths answer the same sampled requests and must return the
same documents. Compare the ratios; absolute figures depend on the machine.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ciyuan.clock import SystemClock
from ciyuan.ledger.chain import GENESIS_HASH, chain_hash
from ciyuan.ledger.transfers import Transfer, TransferKind
from ciyuan.pricing.money import Amount
from ciyuan.store import open_store
from ciyuan.store.sql_base import TRANSFER_COLUMNS
from ciyuan.store.sql_store import SqlStore

KEY = Ed25519PrivateKey.generate()
AMOUNT = Amount(1000)


def build_ledger(path: Path, transfers: int) -> SqlStore:
    """A ledger of ``transfers`` one-transfer requests ``req-<seq>``, chained as the store does."""
    store = open_store(f"sqlite:///{path}", clock=SystemClock())
    assert isinstance(store, SqlStore)
    payer, payee = store.create_account("payer").id, store.create_account("payee").id
    rows, head = [], GENESIS_HASH
    for seq in range(1, transfers + 1):
        transfer = Transfer(
            id=f"tr_{seq:09d}", debit_account_id=payer, credit_account_id=payee, amount=AMOUNT,
            kind=TransferKind.CHARGE, reference=f"req-{seq}", idempotency_key=None,
            created_us=1_700_000_000_000_000 + seq, seq=seq,
        )  # fmt: skip
        head = chain_hash(head, transfer)
        rows.append(
            (
                transfer.id, payer, payee, AMOUNT.nanos, transfer.kind.value, transfer.reference,
                None, transfer.created_us, None, seq, head,
            )
        )  # fmt: skip
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            f"INSERT INTO transfers ({TRANSFER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        # Balances are left alone: receipts and checkpoints read only the chain.
        conn.execute("UPDATE ledger_head SET seq = ?, hash = ? WHERE id = 1", (transfers, head))
        conn.execute("COMMIT")
    finally:
        conn.close()
    return store


def receipt_from_every_leaf(store: SqlStore, request_id: str) -> dict[str, Any]:
    """What ``ChainStore.receipt`` did before ``merkle_nodes``: hash the whole tree."""
    covering = store.latest_checkpoint()
    assert covering is not None
    with store.read_transaction() as tx:
        return store._whole_tree_receipt(
            tx, request_id, store._transfers_of(tx, request_id), covering
        )


def median_ms(build: Callable[[str], dict[str, Any]], request_ids: list[str]) -> float:
    times = []
    for request_id in request_ids:
        start = time.perf_counter()
        build(request_id)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def run(size: int, samples: int, folder: Path, block_height: int | None) -> None:
    start = time.perf_counter()
    store = build_ledger(folder / f"ledger-{size}.db", size)
    if block_height is not None:
        store.merkle_block_height = block_height
    built_s = time.perf_counter() - start
    try:
        start = time.perf_counter()
        report, signed = store.checkpoint(KEY)
        checkpoint_s = time.perf_counter() - start
        assert report.ok and signed is not None and signed.seq == size, report.problem
        chosen = [f"req-{seq}" for seq in random.Random(size).sample(range(1, size + 1), samples)]
        for request_id in chosen[:3]:
            assert receipt_from_every_leaf(store, request_id) == store.receipt(request_id)
        old = median_ms(lambda r: receipt_from_every_leaf(store, r), chosen[:3])
        new = median_ms(store.receipt, chosen)
        print(
            f"{size:>8} transfers  ledger {built_s:5.1f} s  checkpoint {checkpoint_s:5.1f} s  "
            f"receipt: every leaf {old:8.1f} ms  stored subtrees {new:6.2f} ms  "
            f"ratio {old / new:6.0f}x"
        )
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.receipts", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--samples", type=int, default=30, help="requests timed on the new path")
    parser.add_argument(
        "--block-height", type=int, help="stored subtrees from 2^this leaves (default: the store's)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ciyuan-bench-receipts-") as folder:
        for size in args.sizes:
            run(size, max(args.samples, 3), Path(folder), args.block_height)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
