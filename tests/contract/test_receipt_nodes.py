"""Receipts from stored Merkle subtrees on real SQLite and PostgreSQL: checkpoints store every
complete subtree of block height and up; receipts built from them read a block of leaves, not
the log, and are the very documents the whole tree gives; missing rows (a ledger checkpointed
before the table, or rows deleted) still give those documents and the next checkpoint fills
them in; an altered row or frontier is caught against the signed root before answering.

Blocks are 2^2 leaves here (``merkle_block_height`` per store) so a few dozen transfers span
several levels of stored nodes."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ciyuan.clock import FixedClock
from ciyuan.ledger import merkle
from ciyuan.ledger.chain import leaf_hash
from ciyuan.ledger.receipts import build_merkle_receipt, verify_receipt
from ciyuan.pricing.money import Amount
from ciyuan.store import open_store
from ciyuan.store.sql_base import TRANSFER_COLUMNS, transfer_from_row
from ciyuan.store.sql_store import SqlStore
from tests.contract.ledger_helpers import event, raw

USD = Amount.parse
KEY = Ed25519PrivateKey.generate()
BLOCK_HEIGHT = 2
REQUESTS = [f"req-{k}" for k in range(8)]


@pytest.fixture
def store(db_url: str) -> Iterator[SqlStore]:
    """acme's charged and partly refunded requests among other accounts' grants."""
    opened = open_store(db_url, clock=FixedClock())
    assert isinstance(opened, SqlStore)
    opened.merkle_block_height = BLOCK_HEIGHT
    acme, other = opened.create_account("acme"), opened.create_account("other")
    opened.grant(acme.id, USD("50"))
    for k, request_id in enumerate(REQUESTS):
        for _ in range(k % 3):
            opened.grant(other.id, USD("1"))
        hold = opened.reserve(acme.id, USD("1"), request_id=request_id, timeout_s=60)
        opened.settle(hold, USD("0.3"), event(acme.id, request_id))
        if k % 2:
            opened.refund(request_id, USD("0.1"), idempotency_key=f"r-{k}")
    yield opened
    opened.close()


def all_leaves(store: SqlStore, size: int) -> list[str]:
    rows = raw(
        store.url, f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE seq <= ? ORDER BY seq", (size,)
    )
    return [leaf_hash(transfer_from_row(row)) for row in rows]


def from_scratch(store: SqlStore, request_id: str) -> dict[str, Any]:
    """The receipt as the whole tree gives it: every leaf hashed, nothing stored read."""
    checkpoint = store.latest_checkpoint()
    assert checkpoint is not None
    own = [
        transfer_from_row(row)
        for row in raw(
            store.url,
            f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE reference = ? ORDER BY seq",
            (request_id,),
        )
    ]
    return build_merkle_receipt(request_id, own, all_leaves(store, checkpoint.seq), checkpoint)


def as_json(document: dict[str, Any]) -> str:
    return json.dumps(document, sort_keys=True)


def expected_nodes(store: SqlStore, size: int) -> dict[tuple[int, int], str]:
    leaves = [bytes.fromhex(leaf) for leaf in all_leaves(store, size)]
    found = {}
    height = BLOCK_HEIGHT
    while (1 << height) <= size:
        for position in range(size >> height):
            span = leaves[position << height : (position + 1) << height]
            found[(height, position)] = merkle.root(span).hex()
        height += 1
    return found


def stored_nodes(store: SqlStore) -> dict[tuple[int, int], str]:
    rows = raw(store.url, "SELECT height, node_index, hash FROM merkle_nodes")
    return {(int(height), int(index)): str(node) for height, index, node in rows}


def assert_receipts_right(store: SqlStore) -> None:
    for request_id in REQUESTS:
        document = store.receipt(request_id)
        assert as_json(document) == as_json(from_scratch(store, request_id)), request_id
        check = verify_receipt(json.loads(json.dumps(document)), KEY.public_key())
        assert check.ok, check.problem


def grow(store: SqlStore, grants: int) -> None:
    other = store.get_account("other")
    for _ in range(grants):
        store.grant(other.id, USD("1"))


def test_checkpoints_store_every_subtree_and_receipts_equal_the_whole_tree(
    store: SqlStore,
) -> None:
    for grants in (0, 3, 1, 9):  # checkpoints at sizes that are rarely block-aligned
        grow(store, grants)
        _, signed = store.checkpoint(KEY)
        assert signed is not None
        assert stored_nodes(store) == expected_nodes(store, signed.seq)
        assert_receipts_right(store)


def test_a_receipt_reads_a_block_of_leaves_not_the_log(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    grow(store, 21)
    _, signed = store.checkpoint(KEY)
    assert signed is not None and signed.seq > 40 and signed.seq % (1 << BLOCK_HEIGHT)
    read: list[int] = []
    walk = type(store)._transfers_after

    def counting(self: SqlStore, tx: Any, seq: int, until: int | None = None) -> Iterator[Any]:
        for transfer in walk(self, tx, seq, until):
            read.append(transfer.seq)
            yield transfer

    monkeypatch.setattr(type(store), "_transfers_after", counting)
    for request_id in REQUESTS:
        read.clear()
        document = store.receipt(request_id)
        own = len(document["transfers"])
        assert len(read) <= own * (1 << BLOCK_HEIGHT), (request_id, len(read))
    monkeypatch.undo()
    assert_receipts_right(store)


def test_missing_rows_still_give_the_same_receipts_and_a_checkpoint_fills_them(
    store: SqlStore,
) -> None:
    _, first = store.checkpoint(KEY)
    assert first is not None
    nodes = stored_nodes(store)
    # Some rows gone, at every height: rebuilt from the rows and leaves under them.
    for height, index in list(nodes)[::3]:
        raw(
            store.url,
            "DELETE FROM merkle_nodes WHERE height = ? AND node_index = ?",
            (height, index),
        )
    assert len(stored_nodes(store)) < len(nodes)
    assert_receipts_right(store)

    # A ledger checkpointed before the table existed: none at all.
    raw(store.url, "DELETE FROM merkle_nodes")
    assert_receipts_right(store)
    grow(store, 2)
    _, second = store.checkpoint(KEY)
    assert second is not None and second.seq == first.seq + 2
    assert stored_nodes(store) == expected_nodes(store, second.seq)
    assert_receipts_right(store)
    assert store.verify_chain(public_key=KEY.public_key()).ok


def test_an_altered_node_or_frontier_is_caught_against_the_signed_root(
    store: SqlStore, caplog: pytest.LogCaptureFixture
) -> None:
    grow(store, 5)
    _, signed = store.checkpoint(KEY)
    assert signed is not None
    before = {request_id: as_json(store.receipt(request_id)) for request_id in REQUESTS}
    honest = stored_nodes(store)
    for (height, index), node in honest.items():
        raw(
            store.url,
            "UPDATE merkle_nodes SET hash = ? WHERE height = ? AND node_index = ?",
            (("0" if node[0] != "0" else "1") + node[1:], height, index),
        )
    with caplog.at_level(logging.WARNING, logger="ciyuan.store"):
        after = {request_id: as_json(store.receipt(request_id)) for request_id in REQUESTS}
    assert after == before
    assert_receipts_right(store)
    assert any("do not prove" in r.getMessage() for r in caplog.records)

    # A garbage frontier is not trusted either: it must fold to the signed root to be used.
    raw(store.url, "UPDATE merkle_nodes SET hash = 'zz'")
    raw(
        store.url,
        "UPDATE checkpoints SET merkle_frontier = ? WHERE seq = ?",
        ("ab" * 32 * signed.seq.bit_count(), signed.seq),
    )
    assert_receipts_right(store)

    # The next checkpoint sees its predecessor's subtrees do not match and rewrites them all.
    grow(store, 1)
    _, later = store.checkpoint(KEY)
    assert later is not None
    assert stored_nodes(store) == expected_nodes(store, later.seq)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ciyuan.store"):
        assert_receipts_right(store)
    assert not caplog.records
