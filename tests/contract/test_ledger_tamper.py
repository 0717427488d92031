"""Tamper evidence on real SQLite and PostgreSQL: rows are edited, deleted and swapped straight
in the database, behind the store's back, and ``verify_chain`` must name the first bad position."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ciyuan.clock import FixedClock
from ciyuan.ledger.chain import chain_hash
from ciyuan.pricing.money import Amount
from ciyuan.store import open_store
from ciyuan.store.sql_base import TRANSFER_COLUMNS, transfer_from_row
from ciyuan.store.sql_store import SqlStore
from tests.contract.ledger_helpers import raw

USD = Amount.parse


@pytest.fixture
def ledger(db_url: str) -> Iterator[SqlStore]:
    """Four grants: chain positions 1..4."""
    store = open_store(db_url, clock=FixedClock())
    assert isinstance(store, SqlStore)
    acme = store.create_account("acme")
    for index in range(4):
        store.grant(acme.id, USD(str(index + 1)))
    assert store.verify_chain().ok and store.chain_head()[0] == 4
    yield store
    store.close()


def problem_of(store: SqlStore) -> tuple[int, str]:
    report = store.verify_chain()
    assert report.problem is not None, "tampering went unnoticed"
    return report.problem.seq, report.problem.kind


def test_an_edited_amount_is_caught(ledger: SqlStore) -> None:
    raw(ledger.url, "UPDATE transfers SET amount_nanos = amount_nanos + 1 WHERE seq = 2")
    assert problem_of(ledger) == (2, "altered")


def test_an_edit_with_a_recomputed_hash_is_caught_at_the_next_entry(ledger: SqlStore) -> None:
    raw(ledger.url, "UPDATE transfers SET amount_nanos = 999 WHERE seq = 2")
    rows = raw(
        ledger.url, f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE seq IN (1, 2) ORDER BY seq"
    )
    first, second = (transfer_from_row(r) for r in rows)
    raw(
        ledger.url, "UPDATE transfers SET hash = ? WHERE seq = 2", (chain_hash(first.hash, second),)
    )
    assert problem_of(ledger) == (3, "altered")


def test_a_deleted_row_is_caught(ledger: SqlStore) -> None:
    raw(ledger.url, "DELETE FROM transfers WHERE seq = 2")
    assert problem_of(ledger) == (2, "removed")


def test_two_swapped_rows_are_caught(ledger: SqlStore) -> None:
    raw(ledger.url, "UPDATE transfers SET seq = 100 WHERE seq = 2")
    raw(ledger.url, "UPDATE transfers SET seq = 2 WHERE seq = 3")
    raw(ledger.url, "UPDATE transfers SET seq = 3 WHERE seq = 100")
    assert problem_of(ledger) == (2, "altered")


def test_a_deleted_newest_row_is_caught_by_the_head(ledger: SqlStore) -> None:
    raw(ledger.url, "DELETE FROM transfers WHERE seq = 4")
    assert problem_of(ledger) == (4, "truncated")


def test_a_cleared_hash_is_caught_and_not_resealed_on_reopen(ledger: SqlStore) -> None:
    raw(ledger.url, "UPDATE transfers SET hash = NULL, amount_nanos = 5 WHERE seq = 3")
    reopened = open_store(ledger.url)
    assert isinstance(reopened, SqlStore)
    assert problem_of(reopened) == (3, "altered")
    reopened.close()


def test_truncation_with_a_rewritten_head_is_caught_by_a_checkpoint(ledger: SqlStore) -> None:
    key = Ed25519PrivateKey.generate()
    report, signed = ledger.checkpoint(key)
    assert report.ok and signed is not None and signed.seq == 4
    third = raw(ledger.url, "SELECT hash FROM transfers WHERE seq = 3")[0][0]
    raw(ledger.url, "DELETE FROM transfers WHERE seq = 4")
    raw(ledger.url, "UPDATE ledger_head SET seq = 3, hash = ? WHERE id = 1", (third,))
    assert problem_of(ledger) == (4, "truncated")


def test_a_forged_checkpoint_is_caught_with_the_public_key(ledger: SqlStore) -> None:
    key = Ed25519PrivateKey.generate()
    ledger.checkpoint(key)
    raw(ledger.url, "UPDATE checkpoints SET created_us = created_us + 1")
    report = ledger.verify_chain(public_key=key.public_key())
    assert report.problem is not None and report.problem.kind == "altered"


@pytest.mark.parametrize("root", ["00" * 32, None], ids=["forged", "stripped"])
def test_a_forged_merkle_root_is_caught_with_the_public_key(
    ledger: SqlStore, root: str | None
) -> None:
    """The root is in the signed message: replacing it, or stripping it to pass the checkpoint
    off as version 1, breaks the signature."""
    key = Ed25519PrivateKey.generate()
    ledger.checkpoint(key)
    raw(ledger.url, "UPDATE checkpoints SET merkle_root = ?", (root,))
    report = ledger.verify_chain(public_key=key.public_key())
    assert report.problem is not None
    assert (report.problem.seq, report.problem.kind) == (4, "altered")
