"""Two-phase transfers on SQL: reserve (hold), settle (post up to the hold), void and expiry.

A reservation is a pending debit of a customer: it counts against the available balance until
it is settled, voided, or passes its deadline and is voided by the sweeper or lazily by the next
reservation that needs the credit, so a crashed gateway can never hold credit forever. A stream
leaves progress marks on its hold as it goes; an overdue hold whose marks stopped (its gateway
died mid-stream) is settled for its last mark instead of voided, so what reached the client is
charged, and one whose marks are fresh belongs to a live stream and is left alone. Settling
posts a *charge* up to the reservation and an *overage* for cost beyond it, within the account's
floor; what even the floor cannot cover is recorded as unbilled on the usage event.
"""

# ruff: noqa: S608  (SQL is composed from constant column lists only; values are bound)

from __future__ import annotations

from dataclasses import replace
from typing import Any, Final

import orjson

from ciyuan.clock import US_PER_S, new_id
from ciyuan.errors import BudgetExceeded, Conflict, InsufficientCredit, NotFound
from ciyuan.ledger.accounts import REVENUE_ID
from ciyuan.ledger.transfers import (
    Reservation,
    ReservationState,
    Settlement,
    Transfer,
    TransferKind,
    split_charge,
)
from ciyuan.metering.ports import UsageEvent
from ciyuan.pricing.money import Amount
from ciyuan.store.sql_base import Row, Tx
from ciyuan.store.sql_budgets import (
    BudgetRefusal,
    hold_budgets,
    release_budget_holds,
    settle_budgets,
)
from ciyuan.store.sql_ledger import EXPIRE_BATCH_MAX, LedgerStore
from ciyuan.store.sql_rollups import roll_up

USAGE_COLUMNS: Final = (
    "request_id, created_us, account_id, api_key_id, api, model, upstream, status, http_status, "
    "input_tokens, cached_tokens, output_tokens, reasoning_tokens, prompt_tokens_local, "
    "usage_source, cost_nanos, reserved_nanos, unbilled_nanos, latency_ms, ttft_ms, error_code, "
    "detail"
)
_PENDING: Final = ReservationState.PENDING.value
RECOVERED_ERROR_CODE: Final = "gateway_lost"


class _Refused(Exception):
    """Raised inside a reserve transaction to roll back its reservation row."""


def usage_params(event: UsageEvent) -> tuple[Any, ...]:
    return (
        event.request_id, event.created_us, event.account_id, event.api_key_id, event.api,
        event.model, event.upstream, event.status, event.http_status, event.input_tokens,
        event.cached_tokens, event.output_tokens, event.reasoning_tokens,
        event.prompt_tokens_local, event.usage_source, event.cost.nanos, event.reserved.nanos,
        event.unbilled.nanos, event.latency_ms, event.ttft_ms, event.error_code,
        orjson.dumps(event.detail).decode(),
    )  # fmt: skip


def usage_event_from_row(row: Row) -> UsageEvent:
    values = list(row)
    for index in (15, 16, 17):
        values[index] = Amount(values[index])
    values[21] = orjson.loads(values[21])
    return UsageEvent(*values)


class HoldStore(LedgerStore):
    def _record(self, tx: Tx, event: UsageEvent) -> None:
        inserted = tx.execute(
            f"INSERT INTO usage_events ({USAGE_COLUMNS}) VALUES ({', '.join('?' * 22)}) "
            "ON CONFLICT (request_id) DO NOTHING RETURNING request_id",
            usage_params(event),
        )
        if inserted:
            # Same transaction, and only for a new event: the rollups equal the events exactly.
            roll_up(tx, event)

    def reserve(
        self,
        account_id: str,
        amount: Amount,
        *,
        request_id: str,
        timeout_s: float,
        api_key_id: str | None = None,
    ) -> Reservation:
        """Hold ``amount``; a repeated request id returns the first reservation unchanged.

        The hold also counts against every budget of the account and of ``api_key_id``, in the
        same transaction (``sql_budgets``); a cap it would pass refuses it with BudgetExceeded.
        """
        assert amount.nanos >= 0 and timeout_s > 0
        now_us = self._clock.now_us()
        reservation = Reservation(
            id=new_id("rsv", self._clock), account_id=account_id, amount=amount,
            request_id=request_id, expires_us=now_us + int(timeout_s * US_PER_S),
        )  # fmt: skip
        budget_refusal: BudgetRefusal | None = None
        for attempt in range(2):
            try:
                with self.transaction() as tx:
                    # The request id is claimed first, in the same transaction as the hold.
                    claimed = tx.execute(
                        "INSERT INTO reservations (id, account_id, amount_nanos, request_id, "
                        "state, "
                        "created_us, expires_us) VALUES (?, ?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (request_id) DO NOTHING RETURNING id",
                        (
                            reservation.id,
                            account_id,
                            amount.nanos,
                            request_id,
                            _PENDING,
                            now_us,
                            reservation.expires_us,
                        ),
                    )
                    if not claimed:
                        return self._replayed_reservation(tx, reservation)
                    # Credit past an unbooked grant expiry is not spendable: the fallback books it.
                    if not tx.execute(
                        "UPDATE accounts SET debits_pending = debits_pending + ? WHERE id = ? "
                        "AND credits_posted - debits_posted - debits_pending - ? >= floor_nanos "
                        "AND (? = 0 OR next_expiry_us IS NULL OR next_expiry_us > ?) RETURNING id",
                        (amount.nanos, account_id, amount.nanos, amount.nanos, now_us),
                    ):
                        raise _Refused
                    if amount.nanos:
                        hold_budgets(
                            tx, reservation_id=reservation.id, account_id=account_id,
                            api_key_id=api_key_id, amount=amount, now_us=now_us,
                        )  # fmt: skip
                    return reservation
            except _Refused:
                budget_refusal = None
            except BudgetRefusal as refusal:
                budget_refusal = refusal
            # Lazily release this account's overdue holds and expired lots before refusing: a
            # crashed gateway's reservations must not keep the credit.
            if attempt == 0 and not self._expire(account_id=account_id):
                break
        if budget_refusal is not None:
            raise BudgetExceeded(budget_refusal.message)
        account = self.get_account(account_id)
        raise InsufficientCredit(
            f"this request needs up to {amount} of credit; the available balance is "
            f"{account.balance.available}"
        )

    def _replayed_reservation(self, tx: Tx, attempted: Reservation) -> Reservation:
        row = tx.one(
            "SELECT id, account_id, amount_nanos, request_id, expires_us FROM reservations WHERE "
            "request_id = ?",
            (attempted.request_id,),
        )
        assert row is not None
        first = Reservation(row[0], row[1], Amount(row[2]), row[3], row[4])
        if (first.account_id, first.amount) != (attempted.account_id, attempted.amount):
            raise Conflict(
                f"request id {attempted.request_id!r} was reserved with a different body"
            )
        return first

    def settle(self, reservation: Reservation, cost: Amount, event: UsageEvent) -> Settlement:
        assert cost.nanos >= 0 and event.request_id == reservation.request_id
        now_us = self._clock.now_us()
        account_id = reservation.account_id
        with self.transaction() as tx:
            # Revenue is locked later, by its balance update just before the appends: system
            # account ids sort after every customer's, so the lock order holds, and the shared
            # rows (revenue, chain head) are held only from there to the commit.
            tx.lock_accounts([account_id])
            row = tx.one(
                "SELECT r.state, r.amount_nanos, r.charged_nanos, "
                "a.credits_posted - a.debits_posted - a.debits_pending, a.floor_nanos "
                "FROM reservations r JOIN accounts a ON a.id = r.account_id WHERE r.id = ?",
                (reservation.id,),
            )
            if row is None:
                raise NotFound(f"no reservation {reservation.id}")
            state, reserved_nanos = ReservationState(row[0]), int(row[1])
            available, floor_nanos = int(row[3]), int(row[4] or 0)
            if state is ReservationState.SETTLED:
                # A repeated settle of the same request changes nothing.
                return Settlement(reservation.id, Amount(row[2]), Amount.zero(), Amount(available))
            # An expired or voided hold was already released: the response still reached the
            # client, so it is charged, from what the balance holds now.
            held = reserved_nanos if state is ReservationState.PENDING else 0
            split = split_charge(
                cost, Amount(reserved_nanos), Amount(held), Amount(available + held - floor_nanos)
            )
            charged = split.charge + split.overage
            tx.execute(
                "UPDATE reservations SET state = ?, charged_nanos = ?, closed_us = ? WHERE id = ?",
                (ReservationState.SETTLED.value, charged.nanos, now_us, reservation.id),
            )
            if charged:
                self._spend(tx, account_id, charged.nanos)
            settle_budgets(
                tx, reservation_id=reservation.id, account_id=account_id,
                api_key_id=event.api_key_id, charged=charged, now_us=now_us,
            )  # fmt: skip
            self._record(
                tx,
                replace(
                    event, cost=charged, unbilled=split.unbilled, reserved=Amount(reserved_nanos)
                ),
            )
            # The hold's release and every charge in one update of the customer's row, then
            # revenue's (it sorts after every customer: the lock order holds).
            if held or charged:
                tx.execute(
                    "UPDATE accounts SET debits_pending = debits_pending - ?, "
                    "debits_posted = debits_posted + ? WHERE id = ?",
                    (held, charged.nanos, account_id),
                )
            if charged:
                tx.execute(
                    "UPDATE accounts SET credits_posted = credits_posted + ? WHERE id = ?",
                    (charged.nanos, REVENUE_ID),
                )
            for kind, part in (
                (TransferKind.CHARGE, split.charge),
                (TransferKind.OVERAGE, split.overage),
            ):
                if part:
                    self._append(
                        tx,
                        Transfer(
                            id=new_id("trf", self._clock), debit_account_id=account_id,
                            credit_account_id=REVENUE_ID, amount=part, kind=kind,
                            reference=reservation.request_id,
                            idempotency_key=f"{kind.value}:{reservation.request_id}",
                            created_us=now_us,
                        ),
                        balances_moved=True,
                    )  # fmt: skip
        # Computed, not read back: no statement runs between the appends and the commit.
        after = Amount(available + held) - charged
        return Settlement(reservation.id, charged, split.unbilled, after)

    def void(self, reservation: Reservation, event: UsageEvent | None) -> None:
        with self.transaction() as tx:
            tx.lock_accounts([reservation.account_id])
            released = tx.execute(
                "UPDATE reservations SET state = ?, closed_us = ? WHERE id = ? AND state = ? "
                "RETURNING amount_nanos",
                (ReservationState.VOIDED.value, self._clock.now_us(), reservation.id, _PENDING),
            )
            if released:
                tx.execute(
                    "UPDATE accounts SET debits_pending = debits_pending - ? WHERE id = ?",
                    (released[0][0], reservation.account_id),
                )
                release_budget_holds(tx, [reservation.id])
            if event is not None:
                self._record(tx, event)

    def mark_progress(
        self, reservation: Reservation, cost: Amount, event: UsageEvent, *, alive_s: float
    ) -> bool:
        assert cost.nanos >= 0 and event.request_id == reservation.request_id and alive_s > 0
        with self.transaction() as tx:
            return bool(
                tx.execute(
                    "UPDATE reservations SET progress_nanos = ?, progress_event = ?, "
                    "progress_until_us = ? WHERE id = ? AND state = ? RETURNING id",
                    (
                        cost.nanos,
                        orjson.dumps(usage_params(event)).decode(),
                        self._clock.now_us() + int(alive_s * US_PER_S),
                        reservation.id,
                        _PENDING,
                    ),
                )
            )

    def expire_reservations(self) -> int:
        """The sweeper: void overdue holds and book expired grant lots, everywhere."""
        return self._expire(account_id=None)

    def _expire(self, *, account_id: str | None) -> int:
        return self._expire_holds(account_id) + self.expire_grants(account_id)

    def _expire_holds(self, account_id: str | None) -> int:
        now_us = self._clock.now_us()
        sql = (
            "SELECT id, account_id, amount_nanos, request_id, expires_us, progress_nanos, "
            "progress_event FROM reservations WHERE state = ? AND expires_us < ? "
            "AND (progress_until_us IS NULL OR progress_until_us < ?)"
        )
        params: list[Any] = [_PENDING, now_us, now_us]
        if account_id is not None:
            sql += " AND account_id = ?"
            params.append(account_id)
        with self.transaction() as tx:
            overdue = tx.execute(sql + f" ORDER BY expires_us LIMIT {EXPIRE_BATCH_MAX}", params)
            if not overdue:
                return 0
            marked = [row for row in overdue if row[6] is not None]
            unmarked = [row[:3] for row in overdue if row[6] is None]
            expired = 0
            if unmarked:
                tx.lock_accounts(sorted({row[1] for row in unmarked}))
            for reservation_id, owner_id, amount_nanos in unmarked:
                # Re-checked under the lock: a settle may have won the race.
                if tx.execute(
                    "UPDATE reservations SET state = ?, closed_us = ? WHERE id = ? AND state = ? "
                    "RETURNING id",
                    (ReservationState.EXPIRED.value, now_us, reservation_id, _PENDING),
                ):
                    tx.execute(
                        "UPDATE accounts SET debits_pending = debits_pending - ? WHERE id = ?",
                        (amount_nanos, owner_id),
                    )
                    release_budget_holds(tx, [reservation_id])
                    expired += 1
        return expired + sum(self._bill_last_mark(row) for row in marked)

    def _bill_last_mark(self, row: Row) -> bool:
        """Settle a dead stream's hold for its last progress mark (the settle's own checks
        make a race with a late live settle harmless: whichever commits second changes
        nothing)."""
        reservation_id, owner_id, amount_nanos, request_id, expires_us, progress_nanos = row[:6]
        event = usage_event_from_row(orjson.loads(row[6]))
        reservation = Reservation(
            reservation_id, owner_id, Amount(amount_nanos), request_id, expires_us
        )
        event = replace(
            event,
            error_code=RECOVERED_ERROR_CODE,
            detail={**event.detail, "recovered": "last progress mark, after the hold expired"},
        )
        self.settle(reservation, Amount(progress_nanos), event)
        return True
