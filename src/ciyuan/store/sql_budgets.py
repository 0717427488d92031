"""Budgets on SQL: spend caps per API key or account and period, held and settled in the very
transactions that hold and settle the balance.

Invariant: for every (budget, period), ``spent_nanos + held_nanos`` never exceeds the budget's
amount because of a hold. Holds are added only by a conditional ``UPDATE … WHERE spent + held +
hold <= cap`` inside the reserve transaction (PostgreSQL re-checks the ``WHERE`` on the newest
row version after waiting for a concurrent writer; SQLite has one writer), so two gateways
cannot both pass a cap. Settle swaps a hold for the real charge, which is at most the hold
unless usage beyond the worst case is allowed by the account's floor (the ledger's overage).

Lock order, shared with the ledger: account rows first, then budget rows (every budget belongs
to one account, whose row each of these transactions has already locked), then revenue and the
chain head.
"""

# ruff: noqa: S608  (SQL is composed from constant column lists only; values are bound)

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import orjson

from ciyuan.clock import new_id
from ciyuan.errors import InvalidRequest, NotFound
from ciyuan.metering.budgets import (
    PERIODS,
    THRESHOLD_PCT_MAX,
    THRESHOLDS_MAX,
    Budget,
    BudgetStatus,
    crossed,
    period_of,
    refusal_message,
)
from ciyuan.pricing.money import Amount
from ciyuan.store.sql_base import Row, SqlBase, Tx
from ciyuan.store.sql_webhooks import enqueue_threshold

BUDGET_SELECT: Final = (
    "SELECT b.id, b.account_id, a.name, b.api_key_id, k.prefix, b.period, b.amount_nanos, "
    "b.thresholds, b.webhook_url, b.created_us FROM budgets b "
    "JOIN accounts a ON a.id = b.account_id LEFT JOIN api_keys k ON k.id = b.api_key_id"
)
WEBHOOK_URL_CHARS_MAX: Final = 2048


class BudgetRefusal(Exception):
    """Raised inside a reserve transaction to roll it back; carries the operator's message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def budget_from_row(row: Row) -> Budget:
    return Budget(
        id=row[0],
        account_id=row[1],
        account_name=row[2],
        api_key_id=row[3],
        api_key_prefix=row[4],
        period=row[5],
        amount=Amount(row[6]),
        thresholds_pct=tuple(orjson.loads(row[7])),
        webhook_url=row[8],
        created_us=row[9],
    )


def _subjects(account_id: str, api_key_id: str | None) -> tuple[str, ...]:
    return (account_id,) if api_key_id is None else (account_id, api_key_id)


def _budgets_of(tx: Tx, account_id: str, api_key_id: str | None) -> list[Row]:
    subjects = _subjects(account_id, api_key_id)
    return tx.execute(
        "SELECT id, period, amount_nanos FROM budgets "
        f"WHERE subject IN ({', '.join('?' * len(subjects))}) ORDER BY id",
        subjects,
    )


def hold_budgets(
    tx: Tx, *, reservation_id: str, account_id: str, api_key_id: str | None, amount: Amount,
    now_us: int,
) -> None:  # fmt: skip
    """Count a new hold against every budget of the account and key, or raise BudgetRefusal."""
    assert amount.nanos > 0
    for budget_id, period, cap_nanos in _budgets_of(tx, account_id, api_key_id):
        start_us = period_of(period, now_us).start_us
        tx.execute(
            "INSERT INTO budget_spend (budget_id, period_start_us) VALUES (?, ?) "
            "ON CONFLICT (budget_id, period_start_us) DO NOTHING",
            (budget_id, start_us),
        )
        if not tx.execute(
            "UPDATE budget_spend SET held_nanos = held_nanos + ? WHERE budget_id = ? AND "
            "period_start_us = ? AND spent_nanos + held_nanos + ? <= ? RETURNING budget_id",
            (amount.nanos, budget_id, start_us, amount.nanos, cap_nanos),
        ):
            raise BudgetRefusal(_refusal(tx, budget_id, start_us, amount, now_us))
        tx.execute(
            "INSERT INTO budget_holds (reservation_id, budget_id, period_start_us, held_nanos) "
            "VALUES (?, ?, ?, ?)",
            (reservation_id, budget_id, start_us, amount.nanos),
        )


def _refusal(tx: Tx, budget_id: str, start_us: int, needed: Amount, now_us: int) -> str:
    row = tx.one(f"{BUDGET_SELECT} WHERE b.id = ?", (budget_id,))
    spend = tx.one(
        "SELECT spent_nanos, held_nanos FROM budget_spend WHERE budget_id = ? AND "
        "period_start_us = ?",
        (budget_id, start_us),
    )
    assert row is not None and spend is not None
    budget = budget_from_row(row)
    status = BudgetStatus(
        budget, period_of(budget.period, now_us), Amount(spend[0]), Amount(spend[1])
    )
    return refusal_message(status, needed)


def settle_budgets(
    tx: Tx, *, reservation_id: str, account_id: str, api_key_id: str | None, charged: Amount,
    now_us: int,
) -> None:  # fmt: skip
    """Replace a reservation's budget holds by its charge, and enqueue crossed thresholds.

    A reservation with no holds (admitted before its budgets existed, or whose hold expired or
    was voided before this late settle) is charged to the budgets in force now.
    """
    subjects = _subjects(account_id, api_key_id)
    # One statement reads both the holds and the budgets in force (on a ledger without budgets,
    # the usual case, settling pays for one empty read, not two).
    rows = tx.execute(
        "SELECT 1, budget_id, period_start_us, held_nanos, NULL FROM budget_holds "
        "WHERE reservation_id = ? UNION ALL "
        "SELECT 0, id, 0, amount_nanos, period FROM budgets "
        f"WHERE subject IN ({', '.join('?' * len(subjects))}) ORDER BY 1 DESC, 2",
        (reservation_id, *subjects),
    )
    holds = [(row[1], row[2], row[3]) for row in rows if row[0] == 1]
    if holds:
        tx.execute("DELETE FROM budget_holds WHERE reservation_id = ?", (reservation_id,))
    elif charged.nanos:
        holds = [(row[1], period_of(row[4], now_us).start_us, 0) for row in rows]
        for budget_id, start_us, _ in holds:
            tx.execute(
                "INSERT INTO budget_spend (budget_id, period_start_us) VALUES (?, ?) "
                "ON CONFLICT (budget_id, period_start_us) DO NOTHING",
                (budget_id, start_us),
            )
    for budget_id, start_us, held_nanos in holds:
        after = tx.one(
            "UPDATE budget_spend SET held_nanos = held_nanos - ?, spent_nanos = spent_nanos + ? "
            "WHERE budget_id = ? AND period_start_us = ? RETURNING spent_nanos",
            (held_nanos, charged.nanos, budget_id, start_us),
        )
        if after is not None and charged.nanos:
            _fire_thresholds(tx, budget_id, start_us, charged, Amount(after[0]), now_us)


def _fire_thresholds(
    tx: Tx, budget_id: str, start_us: int, charged: Amount, after: Amount, now_us: int
) -> None:
    row = tx.one(f"{BUDGET_SELECT} WHERE b.id = ?", (budget_id,))
    assert row is not None
    budget = budget_from_row(row)
    period = period_of(budget.period, start_us)
    for pct in crossed(budget.thresholds_pct, budget.amount, after - charged, after):
        enqueue_threshold(tx, budget, period, pct, after, now_us=now_us)


def release_budget_holds(tx: Tx, reservation_ids: Sequence[str]) -> None:
    """Give back the budget holds of voided or expired reservations."""
    for reservation_id in reservation_ids:
        released = tx.execute(
            "DELETE FROM budget_holds WHERE reservation_id = ? "
            "RETURNING budget_id, period_start_us, held_nanos",
            (reservation_id,),
        )
        for budget_id, start_us, held_nanos in sorted(released):
            tx.execute(
                "UPDATE budget_spend SET held_nanos = held_nanos - ? WHERE budget_id = ? AND "
                "period_start_us = ?",
                (held_nanos, budget_id, start_us),
            )


class BudgetQueries(SqlBase):
    def set_budget(
        self,
        *,
        account_id: str,
        api_key_id: str | None,
        period: str,
        amount: Amount,
        thresholds_pct: Sequence[int] = (),
        webhook_url: str | None = None,
    ) -> Budget:
        _validate(period, amount, thresholds_pct, webhook_url)
        thresholds = orjson.dumps(sorted(set(thresholds_pct))).decode()
        with self.transaction() as tx:
            if api_key_id is not None and not tx.one(
                "SELECT id FROM api_keys WHERE id = ? AND account_id = ?",
                (api_key_id, account_id),
            ):
                raise NotFound(f"no api key {api_key_id} in account {account_id}")
            tx.execute(
                "INSERT INTO budgets (id, account_id, api_key_id, subject, period, amount_nanos, "
                "thresholds, webhook_url, created_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (subject, period) DO UPDATE SET amount_nanos = "
                "excluded.amount_nanos, thresholds = excluded.thresholds, webhook_url = "
                "excluded.webhook_url",
                (
                    new_id("bud", self._clock), account_id, api_key_id,
                    api_key_id or account_id, period, amount.nanos, thresholds, webhook_url,
                    self._clock.now_us(),
                ),
            )  # fmt: skip
            row = tx.one(
                f"{BUDGET_SELECT} WHERE b.subject = ? AND b.period = ?",
                (api_key_id or account_id, period),
            )
        assert row is not None
        return budget_from_row(row)

    def list_budgets(self, account_id: str | None = None) -> list[BudgetStatus]:
        now_us = self._clock.now_us()
        sql = BUDGET_SELECT
        params: tuple[str, ...] = ()
        if account_id is not None:
            sql += " WHERE b.account_id = ?"
            params = (account_id,)
        starts = {p: period_of(p, now_us).start_us for p in PERIODS}
        with self.read_transaction() as tx:
            budgets = [
                budget_from_row(r) for r in tx.execute(sql + " ORDER BY a.name, b.id", params)
            ]
            spend = {
                (r[0], int(r[1])): (int(r[2]), int(r[3]))
                for r in tx.execute(
                    "SELECT budget_id, period_start_us, spent_nanos, held_nanos FROM "
                    f"budget_spend WHERE period_start_us IN ({', '.join('?' * len(starts))})",
                    tuple(starts.values()),
                )
            }
        statuses = []
        for budget in budgets:
            period = period_of(budget.period, now_us)
            spent, held = spend.get((budget.id, period.start_us), (0, 0))
            statuses.append(BudgetStatus(budget, period, Amount(spent), Amount(held)))
        return statuses

    def remove_budget(self, budget_id: str) -> Budget:
        with self.transaction() as tx:
            row = tx.one(f"{BUDGET_SELECT} WHERE b.id = ?", (budget_id,))
            if row is None:
                raise NotFound(f"no budget {budget_id!r}")
            # Holds and spend rows go with it (ON DELETE CASCADE); settles then skip it.
            tx.execute("DELETE FROM budgets WHERE id = ?", (budget_id,))
        return budget_from_row(row)


def _validate(
    period: str, amount: Amount, thresholds_pct: Sequence[int], webhook_url: str | None
) -> None:
    if period not in PERIODS:
        raise InvalidRequest(f"period must be one of {', '.join(PERIODS)}", param="period")
    if amount.nanos <= 0:
        raise InvalidRequest("a budget's amount must be above zero", param="amount")
    if len(thresholds_pct) > THRESHOLDS_MAX or any(
        not 1 <= p <= THRESHOLD_PCT_MAX for p in thresholds_pct
    ):
        raise InvalidRequest(
            f"thresholds are up to {THRESHOLDS_MAX} whole percents from 1 to {THRESHOLD_PCT_MAX}",
            param="thresholds",
        )
    if webhook_url is not None and (
        not webhook_url.startswith(("http://", "https://"))
        or len(webhook_url) > WEBHOOK_URL_CHARS_MAX
    ):
        raise InvalidRequest("the webhook URL must be http:// or https://", param="webhook")
