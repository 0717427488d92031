"""Reading the ledger back: an account's history and the reconciliation of every balance.

Balances are maintained rows, updated in the same transaction as each transfer. Reconciliation
recomputes them from the transfers and the open reservations (and the grant lots from the
posted balances) and reports any difference; it changes nothing.
"""

# ruff: noqa: S608  (SQL is composed from constant column lists only; values are bound)

from __future__ import annotations

from typing import Any, Final

from ciyuan.ledger.accounts import AccountKind
from ciyuan.ledger.audit import Difference, HistoryLine, Reconciliation
from ciyuan.ledger.transfers import ReservationState
from ciyuan.store.sql_base import TRANSFER_COLUMNS, sums, transfer_from_row
from ciyuan.store.sql_chain import ChainStore

HISTORY_LIMIT_MAX: Final = 10_000


class AuditStore(ChainStore):
    def history(
        self, account_id: str, *, limit: int = 100, before_seq: int | None = None
    ) -> list[HistoryLine]:
        """The account's transfers, newest first, each with the posted balance after it."""
        assert 1 <= limit <= HISTORY_LIMIT_MAX
        with self.read_transaction() as tx:
            row = tx.one(
                "SELECT credits_posted - debits_posted FROM accounts WHERE id = ?", (account_id,)
            )
            assert row is not None, "the caller resolves the account first"
            posted = int(row[0])
            if before_seq is not None:
                # The balance after ``before_seq - 1``: undo everything from before_seq on.
                later = tx.one(
                    "SELECT COALESCE(SUM(CASE WHEN credit_account_id = ? THEN amount_nanos "
                    "ELSE -amount_nanos END), 0) FROM transfers "
                    "WHERE (debit_account_id = ? OR credit_account_id = ?) AND seq >= ?",
                    (account_id, account_id, account_id, before_seq),
                )
                assert later is not None
                posted -= int(later[0])
            sql = (
                f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE (debit_account_id = ? OR "
                f"credit_account_id = ?)"
            )
            params: list[Any] = [account_id, account_id]
            if before_seq is not None:
                sql += " AND seq < ?"
                params.append(before_seq)
            rows = tx.execute(sql + " ORDER BY seq DESC LIMIT ?", [*params, limit])
        lines: list[HistoryLine] = []
        for transfer in map(transfer_from_row, rows):
            change = (
                transfer.amount.nanos
                if transfer.credit_account_id == account_id
                else -transfer.amount.nanos
            )
            lines.append(HistoryLine(transfer, change, posted))
            posted -= change
        return lines

    def reconcile(self) -> Reconciliation:
        with self.read_transaction() as tx:
            accounts = tx.execute(
                "SELECT id, name, kind, credits_posted, debits_posted, debits_pending FROM "
                "accounts ORDER BY id"
            )
            credits = sums(
                tx.execute(
                    "SELECT credit_account_id, SUM(amount_nanos) FROM transfers GROUP BY "
                    "credit_account_id"
                )
            )
            debits = sums(
                tx.execute(
                    "SELECT debit_account_id, SUM(amount_nanos) FROM transfers GROUP BY "
                    "debit_account_id"
                )
            )
            pending = sums(
                tx.execute(
                    "SELECT account_id, SUM(amount_nanos) FROM reservations WHERE state = ? "
                    "GROUP BY account_id",
                    (ReservationState.PENDING.value,),
                )
            )
            lots = sums(
                tx.execute(
                    "SELECT account_id, SUM(remaining_nanos) FROM grant_lots GROUP BY account_id"
                )
            )
        differences: list[Difference] = []
        posted_sum = 0
        for account_id, name, kind, credits_posted, debits_posted, debits_pending in accounts:
            posted_sum += credits_posted - debits_posted
            credited, debited = credits.get(account_id, 0), debits.get(account_id, 0)
            expected = {
                "credits_posted": (credits_posted, credited),
                "debits_posted": (debits_posted, debited),
                "debits_pending": (debits_pending, pending.get(account_id, 0)),
            }
            if kind == AccountKind.CUSTOMER.value:
                # Open lots add up to what is posted above zero (see ledger.grants).
                expected["grant_lots"] = (lots.get(account_id, 0), max(0, credited - debited))
            for name_of_field, (stored, recomputed) in expected.items():
                if stored != recomputed:
                    differences.append(
                        Difference(account_id, name, name_of_field, stored, recomputed)
                    )
        return Reconciliation(len(accounts), posted_sum, differences)
