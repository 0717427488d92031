"""The ledger, keys and usage on SQL: one implementation, two dialects (SQLite and PostgreSQL).

Each public method is one transaction. Money moves only through conditional updates of the
maintained balance rows (``... WHERE available - amount >= floor``) and a CHECK constraint that
repeats the rule, so an overdraft is impossible whatever the application's memory holds. Accounts
a transaction touches are locked in id order (``lock_accounts``), both sides, so concurrent
transfers cannot deadlock. Driver errors never leave this package: the dialect adapters translate
them into ``ciyuan.errors`` at the seam.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any, Final

import orjson

from ciyuan.clock import US_PER_S, Clock, new_id
from ciyuan.errors import Conflict, InsufficientCredit, InvalidRequest, NotFound
from ciyuan.ledger.accounts import (
    FUNDING_ACCOUNT,
    REVENUE_ACCOUNT,
    Account,
    AccountKind,
    Balance,
    validate_account_name,
)
from ciyuan.ledger.transfers import (
    Reservation,
    ReservationState,
    Settlement,
    Transfer,
    TransferKind,
    chargeable,
)
from ciyuan.metering.ports import ApiKeyRecord, UsageEvent, UsageRow
from ciyuan.pricing.money import Amount

Row = tuple[Any, ...]
EXPIRE_BATCH_MAX: Final = 500

_ACCOUNT_COLUMNS = "id, name, kind, floor_nanos, created_us, credits_posted, debits_posted, debits_pending"
_KEY_COLUMNS = "k.id, k.account_id, a.name, k.prefix, k.hash_hex, k.label, k.created_us, k.revoked_us"
_TRANSFER_COLUMNS = (
    "id, debit_account_id, credit_account_id, amount_nanos, kind, reference, idempotency_key, created_us"
)
_USAGE_COLUMNS = (
    "request_id, created_us, account_id, api_key_id, api, model, upstream, status, http_status, "
    "input_tokens, cached_tokens, output_tokens, reasoning_tokens, prompt_tokens_local, "
    "usage_source, cost_nanos, reserved_nanos, unbilled_nanos, latency_ms, ttft_ms, error_code, detail"
)


class Tx(abc.ABC):
    """One open transaction: statements use ``?`` placeholders whatever the dialect."""

    @abc.abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = self.execute(sql, params)
        return rows[0] if rows else None

    @abc.abstractmethod
    def lock_accounts(self, account_ids: Sequence[str]) -> None:
        """Lock the balance rows of these accounts, in id order, until the transaction ends."""


def _account(row: Row) -> Account:
    return Account(
        id=row[0],
        name=row[1],
        kind=AccountKind(row[2]),
        floor_nanos=row[3],
        created_us=row[4],
        balance=Balance(credits_posted=row[5], debits_posted=row[6], debits_pending=row[7]),
    )


def _api_key(row: Row) -> ApiKeyRecord:
    return ApiKeyRecord(*row)


def _transfer(row: Row) -> Transfer:
    return Transfer(
        id=row[0],
        debit_account_id=row[1],
        credit_account_id=row[2],
        amount=Amount(row[3]),
        kind=TransferKind(row[4]),
        reference=row[5],
        idempotency_key=row[6],
        created_us=row[7],
    )


def _usage_params(event: UsageEvent) -> tuple[Any, ...]:
    return (
        event.request_id, event.created_us, event.account_id, event.api_key_id, event.api,
        event.model, event.upstream, event.status, event.http_status, event.input_tokens,
        event.cached_tokens, event.output_tokens, event.reasoning_tokens,
        event.prompt_tokens_local, event.usage_source, event.cost.nanos, event.reserved.nanos,
        event.unbilled.nanos, event.latency_ms, event.ttft_ms, event.error_code,
        orjson.dumps(event.detail).decode(),
    )  # fmt: skip


def _usage_event(row: Row) -> UsageEvent:
    values = list(row)
    for index in (15, 16, 17):
        values[index] = Amount(values[index])
    values[21] = orjson.loads(values[21])
    return UsageEvent(*values)


class SqlStore(abc.ABC):
    """Store operations shared by the dialects; subclasses supply connections and transactions."""

    def __init__(self, url: str, clock: Clock) -> None:
        self._url = url
        self._clock = clock

    @property
    def url(self) -> str:
        return self._url

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[Tx]: ...

    @abc.abstractmethod
    def close(self) -> None: ...

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
                "INSERT INTO accounts (id, name, kind, floor_nanos, created_us) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (name) DO NOTHING RETURNING id",
                (account_id, name, AccountKind.CUSTOMER.value, floor_nanos, self._clock.now_us()),
            )
            if not inserted:
                raise Conflict(f"an account named {name!r} already exists")
            row = tx.one(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id = ?", (account_id,))
        assert row is not None
        return _account(row)

    def get_account(self, name_or_id: str) -> Account:
        with self.transaction() as tx:
            row = tx.one(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE name = ? OR id = ?",
                (name_or_id, name_or_id),
            )
        if row is None:
            raise NotFound(f"no account named {name_or_id!r}")
        return _account(row)

    def list_accounts(self) -> list[Account]:
        with self.transaction() as tx:
            rows = tx.execute(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts ORDER BY created_us, name")
        return [_account(row) for row in rows]

    # ---- api keys -------------------------------------------------------------------------

    def create_api_key(self, account_id: str, prefix: str, hash_hex: str, label: str | None) -> ApiKeyRecord:
        key_id = new_id("key", self._clock)
        with self.transaction() as tx:
            tx.execute(
                "INSERT INTO api_keys (id, account_id, prefix, hash_hex, label, created_us) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key_id, account_id, prefix, hash_hex, label, self._clock.now_us()),
            )
            row = tx.one(
                f"SELECT {_KEY_COLUMNS} FROM api_keys k JOIN accounts a ON a.id = k.account_id "
                "WHERE k.id = ?",
                (key_id,),
            )
        assert row is not None
        return _api_key(row)

    def find_api_key(self, prefix: str) -> ApiKeyRecord | None:
        with self.transaction() as tx:
            row = tx.one(
                f"SELECT {_KEY_COLUMNS} FROM api_keys k JOIN accounts a ON a.id = k.account_id "
                "WHERE k.prefix = ?",
                (prefix,),
            )
        return _api_key(row) if row else None

    def list_api_keys(self, account_id: str | None = None) -> list[ApiKeyRecord]:
        sql = f"SELECT {_KEY_COLUMNS} FROM api_keys k JOIN accounts a ON a.id = k.account_id"
        params: tuple[Any, ...] = ()
        if account_id is not None:
            sql += " WHERE k.account_id = ?"
            params = (account_id,)
        with self.transaction() as tx:
            rows = tx.execute(sql + " ORDER BY k.created_us", params)
        return [_api_key(row) for row in rows]

    def revoke_api_key(self, prefix_or_id: str) -> ApiKeyRecord:
        with self.transaction() as tx:
            tx.execute(
                "UPDATE api_keys SET revoked_us = ? WHERE (prefix = ? OR id = ?) AND revoked_us IS NULL",
                (self._clock.now_us(), prefix_or_id, prefix_or_id),
            )
            row = tx.one(
                f"SELECT {_KEY_COLUMNS} FROM api_keys k JOIN accounts a ON a.id = k.account_id "
                "WHERE k.prefix = ? OR k.id = ?",
                (prefix_or_id, prefix_or_id),
            )
        if row is None:
            raise NotFound(f"no api key with prefix or id {prefix_or_id!r}")
        return _api_key(row)

    # ---- ledger ---------------------------------------------------------------------------

    def _post(self, tx: Tx, transfer: Transfer) -> None:
        """Write a transfer and move the posted balances of both sides (already locked)."""
        assert transfer.amount.nanos > 0
        tx.execute(
            f"INSERT INTO transfers ({_TRANSFER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                transfer.id, transfer.debit_account_id, transfer.credit_account_id,
                transfer.amount.nanos, transfer.kind.value, transfer.reference,
                transfer.idempotency_key, transfer.created_us,
            ),
        )  # fmt: skip
        tx.execute(
            "UPDATE accounts SET debits_posted = debits_posted + ? WHERE id = ?",
            (transfer.amount.nanos, transfer.debit_account_id),
        )
        tx.execute(
            "UPDATE accounts SET credits_posted = credits_posted + ? WHERE id = ?",
            (transfer.amount.nanos, transfer.credit_account_id),
        )

    def grant(self, account_id: str, amount: Amount, *, idempotency_key: str | None = None) -> Transfer:
        if amount.nanos <= 0:
            raise InvalidRequest("a grant must be a positive amount", param="amount")
        account = self.get_account(account_id)
        if account.kind is not AccountKind.CUSTOMER:
            raise InvalidRequest("credit is granted to customer accounts only", param="account")
        funding = self.get_account(FUNDING_ACCOUNT)
        with self.transaction() as tx:
            if idempotency_key is not None:
                row = tx.one(
                    f"SELECT {_TRANSFER_COLUMNS} FROM transfers WHERE idempotency_key = ?",
                    (idempotency_key,),
                )
                if row is not None:
                    first = _transfer(row)
                    if (first.credit_account_id, first.amount, first.kind) != (
                        account.id, amount, TransferKind.GRANT,
                    ):  # fmt: skip
                        raise Conflict(
                            f"idempotency key {idempotency_key!r} was used for a different grant"
                        )
                    return first
            transfer = Transfer(
                id=new_id("trf", self._clock),
                debit_account_id=funding.id,
                credit_account_id=account.id,
                amount=amount,
                kind=TransferKind.GRANT,
                reference=None,
                idempotency_key=idempotency_key,
                created_us=self._clock.now_us(),
            )
            tx.lock_accounts([funding.id, account.id])
            self._post(tx, transfer)
        return transfer

    def balance(self, account_id: str) -> Balance:
        return self.get_account(account_id).balance

    def reserve(self, account_id: str, amount: Amount, *, request_id: str, timeout_s: float) -> Reservation:
        assert amount.nanos >= 0 and timeout_s > 0
        now_us = self._clock.now_us()
        reservation = Reservation(
            id=new_id("rsv", self._clock),
            account_id=account_id,
            amount=amount,
            request_id=request_id,
            expires_us=now_us + int(timeout_s * US_PER_S),
        )
        for attempt in range(2):
            with self.transaction() as tx:
                held = tx.execute(
                    "UPDATE accounts SET debits_pending = debits_pending + ? WHERE id = ? "
                    "AND credits_posted - debits_posted - debits_pending - ? >= floor_nanos "
                    "RETURNING id",
                    (amount.nanos, account_id, amount.nanos),
                )
                if held:
                    tx.execute(
                        "INSERT INTO reservations (id, account_id, amount_nanos, request_id, state, "
                        "created_us, expires_us) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            reservation.id, account_id, amount.nanos, request_id,
                            ReservationState.PENDING.value, now_us, reservation.expires_us,
                        ),
                    )  # fmt: skip
                    return reservation
            # Lazily release this account's overdue holds before refusing: a crashed
            # gateway's reservations must not keep the credit.
            if attempt == 0 and not self._expire(account_id=account_id):
                break
        account = self.get_account(account_id)
        raise InsufficientCredit(
            f"this request needs up to {amount} of credit; the available balance is "
            f"{account.balance.available}"
        )

    def settle(self, reservation: Reservation, cost: Amount, event: UsageEvent) -> Settlement:
        assert cost.nanos >= 0 and event.request_id == reservation.request_id
        now_us = self._clock.now_us()
        revenue = self.get_account(REVENUE_ACCOUNT)
        with self.transaction() as tx:
            tx.lock_accounts([reservation.account_id, revenue.id])
            row = tx.one(
                "SELECT state, amount_nanos, charged_nanos FROM reservations WHERE id = ?",
                (reservation.id,),
            )
            if row is None:
                raise NotFound(f"no reservation {reservation.id}")
            state, held_nanos, charged_nanos = ReservationState(row[0]), row[1], row[2]
            if state is ReservationState.SETTLED:
                # A repeated settle of the same request changes nothing.
                balance = self._balance_in(tx, reservation.account_id)
                return Settlement(reservation.id, Amount(charged_nanos), Amount.zero(), balance.available)
            # An expired or voided hold was already released: the response still reached the
            # client, so it is charged, from what the balance holds now.
            held = Amount(held_nanos) if state is ReservationState.PENDING else Amount.zero()
            balance = self._balance_in(tx, reservation.account_id)
            floor_row = tx.one("SELECT floor_nanos FROM accounts WHERE id = ?", (reservation.account_id,))
            assert floor_row is not None
            headroom = Amount(balance.available.nanos + held.nanos - floor_row[0])
            charged = chargeable(cost, held, headroom)
            tx.execute(
                "UPDATE reservations SET state = ?, charged_nanos = ?, closed_us = ? WHERE id = ?",
                (ReservationState.SETTLED.value, charged.nanos, now_us, reservation.id),
            )
            if held:
                tx.execute(
                    "UPDATE accounts SET debits_pending = debits_pending - ? WHERE id = ?",
                    (held.nanos, reservation.account_id),
                )
            if charged:
                self._post(
                    tx,
                    Transfer(
                        id=new_id("trf", self._clock),
                        debit_account_id=reservation.account_id,
                        credit_account_id=revenue.id,
                        amount=charged,
                        kind=TransferKind.CHARGE,
                        reference=reservation.request_id,
                        idempotency_key=f"charge:{reservation.request_id}",
                        created_us=now_us,
                    ),
                )
            unbilled = cost - charged
            final = replace(event, cost=charged, unbilled=unbilled, reserved=reservation.amount)
            tx.execute(
                f"INSERT INTO usage_events ({_USAGE_COLUMNS}) VALUES ({', '.join('?' * 22)}) "
                "ON CONFLICT (request_id) DO NOTHING",
                _usage_params(final),
            )
            after = self._balance_in(tx, reservation.account_id)
        return Settlement(reservation.id, charged, unbilled, after.available)

    def void(self, reservation: Reservation, event: UsageEvent | None) -> None:
        with self.transaction() as tx:
            tx.lock_accounts([reservation.account_id])
            released = tx.execute(
                "UPDATE reservations SET state = ?, closed_us = ? WHERE id = ? AND state = ? "
                "RETURNING amount_nanos",
                (
                    ReservationState.VOIDED.value, self._clock.now_us(), reservation.id,
                    ReservationState.PENDING.value,
                ),
            )  # fmt: skip
            if released:
                tx.execute(
                    "UPDATE accounts SET debits_pending = debits_pending - ? WHERE id = ?",
                    (released[0][0], reservation.account_id),
                )
            if event is not None:
                self._record(tx, event)

    def expire_reservations(self) -> int:
        return self._expire(account_id=None)

    def _expire(self, *, account_id: str | None) -> int:
        now_us = self._clock.now_us()
        sql = "SELECT id, account_id, amount_nanos FROM reservations WHERE state = ? AND expires_us < ?"
        params: list[Any] = [ReservationState.PENDING.value, now_us]
        if account_id is not None:
            sql += " AND account_id = ?"
            params.append(account_id)
        with self.transaction() as tx:
            overdue = tx.execute(sql + f" ORDER BY expires_us LIMIT {EXPIRE_BATCH_MAX}", params)
            if not overdue:
                return 0
            tx.lock_accounts(sorted({row[1] for row in overdue}))
            expired = 0
            for reservation_id, owner_id, amount_nanos in overdue:
                # Re-checked under the lock: a settle may have won the race.
                if tx.execute(
                    "UPDATE reservations SET state = ?, closed_us = ? WHERE id = ? AND state = ? "
                    "RETURNING id",
                    (ReservationState.EXPIRED.value, now_us, reservation_id, ReservationState.PENDING.value),
                ):
                    tx.execute(
                        "UPDATE accounts SET debits_pending = debits_pending - ? WHERE id = ?",
                        (amount_nanos, owner_id),
                    )
                    expired += 1
        return expired

    def transfers(self, account_id: str | None = None, limit: int = 100) -> list[Transfer]:
        sql = f"SELECT {_TRANSFER_COLUMNS} FROM transfers"
        params: list[Any] = []
        if account_id is not None:
            sql += " WHERE debit_account_id = ? OR credit_account_id = ?"
            params += [account_id, account_id]
        with self.transaction() as tx:
            rows = tx.execute(sql + " ORDER BY seq DESC LIMIT ?", [*params, limit])
        return [_transfer(row) for row in rows]

    def _balance_in(self, tx: Tx, account_id: str) -> Balance:
        row = tx.one(
            "SELECT credits_posted, debits_posted, debits_pending FROM accounts WHERE id = ?",
            (account_id,),
        )
        if row is None:
            raise NotFound(f"no account {account_id}")
        return Balance(*row)

    # ---- usage ----------------------------------------------------------------------------

    def _record(self, tx: Tx, event: UsageEvent) -> None:
        tx.execute(
            f"INSERT INTO usage_events ({_USAGE_COLUMNS}) VALUES ({', '.join('?' * 22)}) "
            "ON CONFLICT (request_id) DO NOTHING",
            _usage_params(event),
        )

    def record_usage(self, event: UsageEvent) -> None:
        with self.transaction() as tx:
            self._record(tx, event)

    def usage_event(self, request_id: str) -> UsageEvent | None:
        with self.transaction() as tx:
            row = tx.one(f"SELECT {_USAGE_COLUMNS} FROM usage_events WHERE request_id = ?", (request_id,))
        return _usage_event(row) if row else None

    def usage_by_model(self, account_id: str | None = None) -> list[UsageRow]:
        sql = (
            "SELECT model, COUNT(*), SUM(input_tokens), SUM(cached_tokens), SUM(output_tokens), "
            "SUM(cost_nanos) FROM usage_events"
        )
        params: tuple[Any, ...] = ()
        if account_id is not None:
            sql += " WHERE account_id = ?"
            params = (account_id,)
        with self.transaction() as tx:
            rows = tx.execute(sql + " GROUP BY model ORDER BY model", params)
        return [
            UsageRow(str(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), Amount(int(r[5])))
            for r in rows
        ]

    def iter_all_balances(self) -> Iterator[tuple[str, Balance]]:
        for account in self.list_accounts():
            yield account.id, account.balance
