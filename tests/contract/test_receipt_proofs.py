"""Merkle receipts on real SQLite and PostgreSQL: a request's transfers (charge and refund) are
proved by RFC 9162 inclusion paths to the root the latest checkpoint signs; every forgery of
the document fails offline; a checkpoint's Merkle root, built incrementally from the previous
checkpoint's saved frontier, equals the root of the whole log recomputed from scratch; and
checkpoints signed before Merkle roots keep their version-1 receipts verifiable."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ciyuan.clock import FixedClock
from ciyuan.ledger import merkle
from ciyuan.ledger.chain import leaf_hash
from ciyuan.ledger.checkpoints import checkpoint_message, public_key_hex
from ciyuan.ledger.receipts import verify_receipt
from ciyuan.pricing.money import Amount
from ciyuan.store import open_store
from ciyuan.store.sql_base import TRANSFER_COLUMNS, transfer_from_row
from ciyuan.store.sql_store import SqlStore
from tests.contract.ledger_helpers import event, raw

USD = Amount.parse
KEY = Ed25519PrivateKey.generate()


@pytest.fixture
def store(db_url: str) -> Iterator[SqlStore]:
    """acme's request req-1 (a charge, then a refund) among other accounts' grants."""
    opened = open_store(db_url, clock=FixedClock())
    assert isinstance(opened, SqlStore)
    acme, other = opened.create_account("acme"), opened.create_account("other")
    opened.grant(acme.id, USD("5"))
    for _ in range(4):
        opened.grant(other.id, USD("1"))
    hold = opened.reserve(acme.id, USD("1"), request_id="req-1", timeout_s=60)
    opened.settle(hold, USD("0.3"), event(acme.id, "req-1"))
    opened.refund("req-1", USD("0.1"), idempotency_key="r")
    for _ in range(5):
        opened.grant(other.id, USD("1"))
    yield opened
    opened.close()


def whole_log_root(store: SqlStore) -> str:
    rows = raw(store.url, f"SELECT {TRANSFER_COLUMNS} FROM transfers ORDER BY seq")
    return merkle.root([bytes.fromhex(leaf_hash(transfer_from_row(r))) for r in rows]).hex()


def receipt(store: SqlStore) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(json.dumps(store.receipt("req-1")))
    return document


def test_a_merkle_receipt_verifies_and_every_forgery_fails(store: SqlStore) -> None:
    _, signed = store.checkpoint(KEY)
    assert signed is not None and signed.seq == 12 and signed.merkle_root == whole_log_root(store)
    document = receipt(store)
    assert (document["version"], document["proof"]) == ("ciyuan.receipt.v2", "merkle-inclusion")
    assert [p["leaf_index"] for p in document["inclusion"]] == [
        t["seq"] - 1 for t in document["transfers"]
    ]
    assert all(len(p["path"]) <= 4 for p in document["inclusion"])  # ⌈log2 12⌉
    check = verify_receipt(document, KEY.public_key())
    assert check.ok and check.charged == USD("0.2") and check.checkpoint_seq == 12, check.problem

    def forged(change: Any) -> str | None:
        copied = copy.deepcopy(document)
        change(copied)
        result = verify_receipt(copied, KEY.public_key())
        assert not result.ok
        return result.problem

    def one_nano(d: dict[str, Any]) -> None:
        d["transfers"][0]["amount_nanos"] += 1

    def swapped_siblings(d: dict[str, Any]) -> None:
        path = d["inclusion"][0]["path"]
        path[0], path[1] = path[1], path[0]

    def foreign_sibling(d: dict[str, Any]) -> None:
        d["inclusion"][0]["path"][0] = d["inclusion"][1]["path"][0]

    def wrong_index(d: dict[str, Any]) -> None:
        d["inclusion"][0]["leaf_index"] += 1

    def moved(d: dict[str, Any]) -> None:  # seq and index both moved: the leaf hash changes
        d["transfers"][-1]["seq"] += 1
        d["inclusion"][-1]["leaf_index"] += 1

    def forged_root(d: dict[str, Any]) -> None:
        d["checkpoint"]["merkle_root"] = merkle.EMPTY_ROOT.hex()

    def listed_twice(d: dict[str, Any]) -> None:
        d["transfers"].append(d["transfers"][0])
        d["inclusion"].append(d["inclusion"][0])

    def proof_dropped(d: dict[str, Any]) -> None:
        d["inclusion"].pop()

    assert "Merkle tree" in str(forged(one_nano))
    assert "Merkle tree" in str(forged(swapped_siblings))
    assert "Merkle tree" in str(forged(foreign_sibling))
    assert "leaf index" in str(forged(wrong_index))
    assert "Merkle tree" in str(forged(moved))
    assert "not signed" in str(forged(forged_root))
    assert "twice" in str(forged(listed_twice))
    assert "one inclusion proof per transfer" in str(forged(proof_dropped))
    stranger = verify_receipt(document, Ed25519PrivateKey.generate().public_key())
    assert not stranger.ok and "not signed" in str(stranger.problem)


def test_the_latest_checkpoint_is_used_and_its_root_built_incrementally(store: SqlStore) -> None:
    _, first = store.checkpoint(KEY)
    acme = store.get_account("acme")
    for _ in range(3):
        store.grant(acme.id, USD("1"))
    _, second = store.checkpoint(KEY)
    assert first is not None and second is not None and second.seq == first.seq + 3
    assert second.merkle_root == whole_log_root(store)
    document = receipt(store)
    assert document["checkpoint"]["seq"] == second.seq
    assert verify_receipt(document, KEY.public_key()).ok

    # A saved frontier is a cache, not trusted: garbage there only costs a rebuild.
    raw(
        store.url,
        "UPDATE checkpoints SET merkle_frontier = ? WHERE seq = ?",
        ("ab" * 64, second.seq),
    )
    store.grant(acme.id, USD("1"))
    _, third = store.checkpoint(KEY)
    assert third is not None and third.merkle_root == whole_log_root(store)
    assert store.verify_chain(public_key=KEY.public_key()).ok


def test_receipts_under_a_checkpoint_from_before_merkle_roots(store: SqlStore) -> None:
    """A version-1 checkpoint (no root) gets a chain-segment receipt that still verifies; the
    next checkpoint at the same head re-signs it with a root, and receipts become version 2."""
    seq, head = store.chain_head()
    signature = KEY.sign(checkpoint_message(seq, head, 7, None)).hex()
    raw(
        store.url,
        "INSERT INTO checkpoints (seq, hash, created_us, public_key, signature) "
        "VALUES (?, ?, ?, ?, ?)",
        (seq, head, 7, public_key_hex(KEY), signature),
    )
    assert store.verify_chain(public_key=KEY.public_key()).ok
    old = receipt(store)
    assert (old["version"], old["proof"]) == ("ciyuan.receipt.v1", "chain-segment")
    assert old["checkpoint"]["merkle_root"] is None
    assert verify_receipt(old, KEY.public_key()).ok
    tampered = copy.deepcopy(old)
    tampered["transfers"][0]["amount_nanos"] += 1
    assert not verify_receipt(tampered, KEY.public_key()).ok

    _, upgraded = store.checkpoint(KEY)
    assert upgraded is not None and upgraded.seq == seq and upgraded.merkle_root is not None
    new = receipt(store)
    assert new["version"] == "ciyuan.receipt.v2"
    assert verify_receipt(new, KEY.public_key()).ok
    assert verify_receipt(old, KEY.public_key()).ok  # the old document carries its own signature
    assert store.verify_chain(public_key=KEY.public_key()).ok


def test_a_receipt_before_any_checkpoint_does_not_verify(store: SqlStore) -> None:
    document = receipt(store)
    assert document["checkpoint"] is None and document["inclusion"] == []
    assert "no signed checkpoint" in str(verify_receipt(document, KEY.public_key()).problem)
