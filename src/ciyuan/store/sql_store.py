"""The ledger, keys and usage on SQL: one implementation, two dialects (SQLite and PostgreSQL).

Each public method is one transaction. The ledger is layered in small modules, each adding to
the one before: ``sql_base`` (the transaction seam and row mappers), ``sql_chain`` (hash chain,
checkpoints, receipts), ``sql_audit`` (history, reconciliation), ``sql_ledger`` (grants,
refunds, expiry), ``sql_holds`` (reserve, settle, void) and this module (accounts, API keys,
usage reports). Driver errors never leave this package: the dialect adapters translate them
into ``ciyuan.errors`` at the seam.
"""

# ruff: noqa: S608  (SQL is composed from constant column lists only; values are bound)

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ciyuan.clock import new_id
from ciyuan.errors import Conflict, InvalidRequest
from ciyuan.ledger.accounts import Account, AccountKind, Balance, validate_account_name
from ciyuan.metering.ports import UsageEvent, UsageRow
from ciyuan.pricing.money import Amount
from ciyuan.store.sql_base import ACCOUNT_COLUMNS, Row, Tx, account_from_row
from ciyuan.store.sql_budgets import BudgetQueries
from ciyuan.store.sql_holds import USAGE_COLUMNS, HoldStore, usage_event_from_row
from ciyuan.store.sql_keys import KeyQueries
from ciyuan.store.sql_reports import ReportQueries
from ciyuan.store.sql_statements import StatementQueries
from ciyuan.store.sql_webhooks import WebhookQueries

__all__ = ["Row", "SqlStore", "Tx"]


class SqlStore(
    HoldStore, KeyQueries, BudgetQueries, WebhookQueries, ReportQueries, StatementQueries
):
    """Store operations shared by the dialects; subclasses supply connections and transactions."""

    def _after_migrations(self) -> None:
        """Called by each adapter once its schema is current."""
        self._seal_legacy_transfers()

    # ---- accounts -------------------------------------------------------------------------

    def create_account(self, name: str, floor: Amount | None = None) -> Account:
        problem = validate_account_name(name)
        if problem:
            raise InvalidRequest(problem, param="name")
        floor_nanos = 0 if floor is None else floor.nanos
        if floor_nanos > 0:
            raise InvalidRequest("an account's floor cannot be above zero", param="floor")
        account_id = new_id("acc", self._clock)
        with self.transaction() as tx:
            inserted = tx.execute(
                "INSERT INTO accounts (id, name, kind, floor_nanos, created_us) VALUES (?, ?, ?, "
                "?, ?) "
                "ON CONFLICT (name) DO NOTHING RETURNING id",
                (account_id, name, AccountKind.CUSTOMER.value, floor_nanos, self._clock.now_us()),
            )
            if not inserted:
                raise Conflict(f"an account named {name!r} already exists")
            row = tx.one(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?", (account_id,))
        assert row is not None
        return account_from_row(row)

    def set_floor(self, account_id: str, floor: Amount) -> Account:
        """Set an account's overdraft allowance (a floor at or below zero); refused if already "
        "below it."""
        if floor.nanos > 0:
            raise InvalidRequest("an account's floor cannot be above zero", param="floor")
        with self.transaction() as tx:
            tx.lock_accounts([account_id])
            changed = tx.execute(
                "UPDATE accounts SET floor_nanos = ? WHERE id = ? AND kind = ? "
                "AND credits_posted - debits_posted - debits_pending >= ? RETURNING id",
                (floor.nanos, account_id, AccountKind.CUSTOMER.value, floor.nanos),
            )
            if not changed:
                raise InvalidRequest(
                    "the account is not a customer account or is already below that floor"
                )
        return self.get_account(account_id)

    def list_accounts(self) -> list[Account]:
        with self.read_transaction() as tx:
            rows = tx.execute(f"SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY created_us, name")
        return [account_from_row(row) for row in rows]

    def iter_all_balances(self) -> Iterator[tuple[str, Balance]]:
        for account in self.list_accounts():
            yield account.id, account.balance

    # ---- usage ----------------------------------------------------------------------------

    def record_usage(self, event: UsageEvent) -> None:
        with self.transaction() as tx:
            self._record(tx, event)

    def usage_event(self, request_id: str) -> UsageEvent | None:
        with self.read_transaction() as tx:
            row = tx.one(
                f"SELECT {USAGE_COLUMNS} FROM usage_events WHERE request_id = ?", (request_id,)
            )
        return usage_event_from_row(row) if row else None

    def usage_by_model(self, account_id: str | None = None) -> list[UsageRow]:
        sql = (
            "SELECT model, COUNT(*), SUM(input_tokens), SUM(cached_tokens), SUM(output_tokens), "
            "SUM(cost_nanos) FROM usage_events"
        )
        params: tuple[Any, ...] = ()
        if account_id is not None:
            sql += " WHERE account_id = ?"
            params = (account_id,)
        with self.read_transaction() as tx:
            rows = tx.execute(sql + " GROUP BY model ORDER BY model", params)
        return [
            UsageRow(str(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), Amount(int(r[5])))
            for r in rows
        ]
