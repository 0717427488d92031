"""PostgreSQL transactions run in pipeline mode: writes whose result nobody reads are sent ahead
of their answers. A failure of such a write must still fail its transaction, as the same
``Conflict``, and undo everything the transaction wrote before it."""

from __future__ import annotations

import pytest

from ciyuan.errors import Conflict
from ciyuan.store import open_store
from ciyuan.store.postgres import PostgresStore
from tests.contract.ledger_helpers import raw

pytestmark = pytest.mark.postgres


def test_a_failed_write_sent_ahead_fails_and_undoes_its_transaction(pg_url: str) -> None:
    store = open_store(pg_url)
    assert isinstance(store, PostgresStore)
    try:
        acme = store.create_account("acme")
        with pytest.raises(Conflict, match="duplicate key"), store.transaction() as tx:
            tx.execute("UPDATE accounts SET floor_nanos = -5 WHERE id = ?", (acme.id,))
            # Sent ahead, no RETURNING: its duplicate key surfaces only at the COMMIT.
            tx.execute(
                "INSERT INTO accounts (id, name, kind, floor_nanos, created_us) "
                "VALUES (?, ?, 'customer', 0, 0)",
                (acme.id, "again"),
            )
        assert raw(pg_url, "SELECT floor_nanos FROM accounts WHERE id = ?", (acme.id,)) == [(0,)]
        # The pooled connection is usable again afterwards.
        assert store.get_account(acme.id).name == "acme"
    finally:
        store.close()
