"""The webhook outbox on SQL: deliveries enqueued inside settle transactions, claimed by workers.

Enqueueing is idempotent per (budget, period, threshold) through a UNIQUE constraint, so a
threshold fires once per period however many settles cross it and whichever gateway runs
them. A worker claims a due delivery by pushing its ``next_attempt_us`` forward (a lease) with
a conditional ``UPDATE``; a worker that dies mid-attempt leaves the delivery to be retried when
the lease ends. Delivery is therefore at least once: receivers dedupe on the delivery id.
"""

# ruff: noqa: S608  (SQL is composed from constant column lists only; values are bound)

from __future__ import annotations

from typing import Final

import orjson

from ciyuan.clock import US_PER_S, new_id
from ciyuan.errors import NotFound
from ciyuan.metering.budgets import Budget, Period, iso_z
from ciyuan.metering.ports import WebhookDelivery
from ciyuan.pricing.money import CURRENCY, Amount
from ciyuan.store.sql_base import Row, SqlBase, Tx

DELIVERY_COLUMNS: Final = (
    "id, event, url, body, state, attempts, next_attempt_us, last_status, last_error, "
    "budget_id, period_start_us, threshold_pct, created_us, delivered_us"
)
THRESHOLD_EVENT: Final = "budget.threshold"
ERROR_CHARS_MAX: Final = 500


def delivery_from_row(row: Row) -> WebhookDelivery:
    return WebhookDelivery(*row)


def enqueue_threshold(
    tx: Tx, budget: Budget, period: Period, pct: int, spent: Amount, *, now_us: int
) -> None:
    """Record that settled spend reached ``pct`` % of the budget in this period (once)."""
    delivery_id = new_id("whd")
    body = {
        "id": delivery_id,
        "type": THRESHOLD_EVENT,
        "created": iso_z(now_us),
        "threshold_pct": pct,
        "spent": str(spent),
        "currency": CURRENCY,
        "budget": {
            "id": budget.id,
            "period": budget.period,
            "amount": str(budget.amount),
            "account": budget.account_name,
            "key": budget.api_key_prefix,
        },
        "period": {
            "start": iso_z(period.start_us),
            "end": iso_z(period.end_us) if period.end_us is not None else None,
        },
    }
    url = budget.webhook_url
    tx.execute(
        f"INSERT INTO webhook_deliveries ({DELIVERY_COLUMNS}) "
        f"VALUES ({', '.join('?' * 14)}) "
        "ON CONFLICT (budget_id, period_start_us, threshold_pct) DO NOTHING",
        (
            delivery_id, THRESHOLD_EVENT, url, orjson.dumps(body).decode(),
            "pending" if url else "unsent", 0, now_us if url else None, None, None, budget.id,
            period.start_us, pct, now_us, None,
        ),
    )  # fmt: skip


class WebhookQueries(SqlBase):
    def claim_webhook_deliveries(self, *, limit: int, lease_s: float) -> list[WebhookDelivery]:
        assert limit > 0 and lease_s > 0
        now_us = self._clock.now_us()
        lease_end_us = now_us + int(lease_s * US_PER_S)
        with self.transaction() as tx:
            due = tx.execute(
                "SELECT id FROM webhook_deliveries WHERE state = 'pending' AND "
                f"next_attempt_us <= ? ORDER BY next_attempt_us LIMIT {int(limit)}",
                (now_us,),
            )
            claimed = []
            for (delivery_id,) in due:
                # Re-checked on the newest row: another worker may have claimed it meanwhile.
                row = tx.one(
                    "UPDATE webhook_deliveries SET next_attempt_us = ? WHERE id = ? AND "
                    f"state = 'pending' AND next_attempt_us <= ? RETURNING {DELIVERY_COLUMNS}",
                    (lease_end_us, delivery_id, now_us),
                )
                if row is not None:
                    claimed.append(delivery_from_row(row))
        return claimed

    def record_webhook_attempt(
        self,
        delivery_id: str,
        *,
        delivered: bool,
        status: int | None,
        error: str | None,
        next_attempt_us: int | None,
    ) -> WebhookDelivery:
        now_us = self._clock.now_us()
        state = "delivered" if delivered else ("pending" if next_attempt_us else "failed")
        with self.transaction() as tx:
            row = tx.one(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, state = ?, "
                "next_attempt_us = ?, last_status = ?, last_error = ?, delivered_us = ? "
                f"WHERE id = ? RETURNING {DELIVERY_COLUMNS}",
                (
                    state,
                    None if delivered else next_attempt_us,
                    status,
                    None if error is None else error[:ERROR_CHARS_MAX],
                    now_us if delivered else None,
                    delivery_id,
                ),
            )
        if row is None:
            raise NotFound(f"no webhook delivery {delivery_id!r}")
        return delivery_from_row(row)

    def list_webhook_deliveries(self, *, limit: int = 100) -> list[WebhookDelivery]:
        with self.read_transaction() as tx:
            rows = tx.execute(
                f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries "
                f"ORDER BY created_us DESC, id DESC LIMIT {int(limit)}"
            )
        return [delivery_from_row(row) for row in rows]
