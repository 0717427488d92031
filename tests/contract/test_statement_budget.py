"""How many SQL statements one metered request costs the ledger, counted by SQLite itself.

Every statement is CPU on the gateway's hot path (and, on PostgreSQL, a round trip), so the
count is pinned: a change that adds one to reserve or settle has to raise the figure here on
purpose. Counted with ``sqlite3``'s trace callback, transaction control left out.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ciyuan.clock import FixedClock
from ciyuan.pricing.money import Amount
from ciyuan.store.sqlite import SqliteStore
from tests.contract.ledger_helpers import event

RESERVE_STATEMENTS = 3
"""Claim the request id, hold the credit, read the budgets in force."""
SETTLE_STATEMENTS = 13
"""Read the hold and balance; close the hold; spend a lot; read holds and budgets; the usage
event and its two rollups; the customer's and revenue's balances; the chain head, the transfer
and the new head."""
_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


@pytest.fixture
def store(sqlite_url: str) -> Iterator[SqliteStore]:
    opened = SqliteStore(sqlite_url, FixedClock())
    yield opened
    opened.close()


def count_statements(store: SqliteStore) -> list[str]:
    statements: list[str] = []

    def trace(sql: str) -> None:
        if not sql.lstrip().upper().startswith(_CONTROL):
            statements.append(sql)

    store._conn.set_trace_callback(trace)
    return statements


def test_a_metered_request_costs_a_fixed_number_of_statements(store: SqliteStore) -> None:
    account = store.create_account("acme")
    store.grant(account.id, Amount.parse("10"))
    statements = count_statements(store)
    hold = store.reserve(account.id, Amount.parse("1"), request_id="req-1", timeout_s=60)
    assert len(statements) == RESERVE_STATEMENTS, statements
    statements.clear()
    settled = store.settle(hold, Amount.parse("0.5"), event(account.id, "req-1"))
    assert len(statements) == SETTLE_STATEMENTS, statements
    assert settled.available_after == Amount.parse("9.5")
