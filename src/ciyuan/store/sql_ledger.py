"""Money movements on SQL: grants, reservations, settlements, refunds and expiries.

Each public method is one transaction that validates everything before its first write. Money
moves only through conditional updates of the maintained balance rows (``... WHERE available -
amount >= floor``) and a CHECK constraint that repeats the rule, so an overdraft is impossible
whatever the application's memory holds. A transaction locks every account it touches, both
sides, in id order, then the chain head (``sql_chain``). Idempotency keys are claimed by the
same transaction that writes (a UNIQUE column), so a failed write can simply be retried.
"""

# ruff: noqa: S608  (SQL is composed from constant column lists only; values are bound)

from __future__ import annotations

import json
from typing import Any, Final

from ciyuan.clock import new_id
from ciyuan.errors import Conflict, InvalidRequest, NotFound
from ciyuan.ledger.accounts import EXPIRY_ID, FUNDING_ID, REVENUE_ID, Account, AccountKind, Balance
from ciyuan.ledger.grants import Lot, consume, expiring, opened_lot_nanos
from ciyuan.ledger.transfers import Transfer, TransferKind
from ciyuan.pricing.money import Amount
from ciyuan.store.sql_audit import AuditStore
from ciyuan.store.sql_base import (
    ACCOUNT_COLUMNS,
    TRANSFER_COLUMNS,
    Tx,
    account_from_row,
    sums,
    transfer_from_row,
)

EXPIRE_BATCH_MAX: Final = 500


class LedgerStore(AuditStore):
    # ---- accounts as the ledger sees them ---------------------------------------------------

    def get_account(self, name_or_id: str) -> Account:
        with self.read_transaction() as tx:
            row = tx.one(
                f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = ? OR id = ?",
                (name_or_id, name_or_id),
            )
        if row is None:
            raise NotFound(f"no account named {name_or_id!r}")
        return account_from_row(row)

    def balance(self, account_id: str) -> Balance:
        return self.get_account(account_id).balance

    def _posted_in(self, tx: Tx, account_id: str) -> int:
        row = tx.one(
            "SELECT credits_posted - debits_posted FROM accounts WHERE id = ?", (account_id,)
        )
        assert row is not None
        return int(row[0])

    # ---- lots -------------------------------------------------------------------------------

    def _open_lot(
        self, tx: Tx, transfer: Transfer, posted_before: int, expires_us: int | None
    ) -> None:
        opened = opened_lot_nanos(transfer.amount.nanos, posted_before)
        if opened == 0:
            return  # all of it paid off an overdraft
        tx.execute(
            "INSERT INTO grant_lots (id, account_id, amount_nanos, remaining_nanos, expires_us, "
            "created_us) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                transfer.id,
                transfer.credit_account_id,
                opened,
                opened,
                expires_us,
                transfer.created_us,
            ),
        )
        if expires_us is not None:
            tx.execute(
                "UPDATE accounts SET next_expiry_us = ? WHERE id = ? "
                "AND (next_expiry_us IS NULL OR next_expiry_us > ?)",
                (expires_us, transfer.credit_account_id, expires_us),
            )

    def _open_lots(self, tx: Tx, account_id: str) -> list[Lot]:
        rows = tx.execute(
            "SELECT id, remaining_nanos, expires_us, created_us FROM grant_lots "
            "WHERE account_id = ? AND remaining_nanos > 0",
            (account_id,),
        )
        return [Lot(*row) for row in rows]

    def _take_from_lots(
        self, tx: Tx, account_id: str, taken: list[tuple[str, int]], *, expiry_moves: bool = True
    ) -> None:
        for lot_id, nanos in taken:
            tx.execute(
                "UPDATE grant_lots SET remaining_nanos = remaining_nanos - ? WHERE id = ?",
                (nanos, lot_id),
            )
        if not expiry_moves:
            return
        tx.execute(
            "UPDATE accounts SET next_expiry_us = (SELECT MIN(expires_us) FROM grant_lots "
            "WHERE account_id = ? AND remaining_nanos > 0) WHERE id = ?",
            (account_id, account_id),
        )

    def _spend(self, tx: Tx, account_id: str, nanos: int) -> None:
        """A debit of a customer consumes its lots, earliest-expiring first."""
        lots = self._open_lots(tx, account_id)
        taken = consume(lots, nanos)
        if taken:
            # The next expiry moves only when a lot that expires is used up.
            expiring = {lot.id: lot.remaining_nanos for lot in lots if lot.expires_us is not None}
            self._take_from_lots(
                tx,
                account_id,
                taken,
                expiry_moves=any(expiring.get(lot_id) == nanos for lot_id, nanos in taken),
            )

    # ---- grants and refunds -------------------------------------------------------------------

    def grant(
        self,
        account_id: str,
        amount: Amount,
        *,
        idempotency_key: str | None = None,
        expires_us: int | None = None,
    ) -> Transfer:
        """Credit from the funding account; with ``expires_us`` what is unspent then expires."""
        if amount.nanos <= 0:
            raise InvalidRequest("a grant must be a positive amount", param="amount")
        now_us = self._clock.now_us()
        metadata = (
            None if expires_us is None else json.dumps({"expires_us": expires_us}, sort_keys=True)
        )
        account = self.get_account(account_id)
        if account.kind is not AccountKind.CUSTOMER:
            raise InvalidRequest("credit is granted to customer accounts only", param="account")
        for attempt in range(2):
            try:
                with self.transaction() as tx:
                    first = self._replayed(tx, idempotency_key)
                    if first is not None:
                        if (first.credit_account_id, first.amount, first.kind, first.metadata) != (
                            account.id, amount, TransferKind.GRANT, metadata,
                        ):  # fmt: skip
                            raise Conflict(
                                f"idempotency key {idempotency_key!r} was used for a different "
                                f"grant"
                            )
                        return first
                    # Checked after the replay lookup: a retried grant may arrive after its expiry.
                    if expires_us is not None and expires_us <= now_us:
                        raise InvalidRequest(
                            "a grant's expiry must be in the future", param="expires"
                        )
                    tx.lock_accounts([FUNDING_ID, account.id])
                    posted_before = self._posted_in(tx, account.id)
                    transfer = self._append(
                        tx,
                        Transfer(
                            id=new_id("trf", self._clock), debit_account_id=FUNDING_ID,
                            credit_account_id=account.id, amount=amount, kind=TransferKind.GRANT,
                            reference=None, idempotency_key=idempotency_key, created_us=now_us,
                            metadata=metadata,
                        ),
                    )  # fmt: skip
                    self._open_lot(tx, transfer, posted_before, expires_us)
                return transfer
            except Conflict:
                # A concurrent grant with the same key won the UNIQUE claim: read its result.
                if attempt == 1 or idempotency_key is None:
                    raise
        raise AssertionError("unreachable")

    def _replayed(self, tx: Tx, idempotency_key: str | None) -> Transfer | None:
        if idempotency_key is None:
            return None
        row = tx.one(
            f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE idempotency_key = ?",
            (idempotency_key,),
        )
        return transfer_from_row(row) if row else None

    def refund(
        self, request_id: str, amount: Amount | None = None, *, idempotency_key: str | None = None
    ) -> Transfer:
        """Reverse (part of) a request's charge: a transfer from revenue back to the customer.

        Idempotent: the key defaults to one refund per request; partial refunds take their own
        keys. The total refunded never exceeds the request's charge and overage.
        """
        if amount is not None and amount.nanos <= 0:
            raise InvalidRequest("a refund must be a positive amount", param="amount")
        key = idempotency_key or f"refund:{request_id}"
        charges = (TransferKind.CHARGE.value, TransferKind.OVERAGE.value)
        with self.transaction() as tx:
            first = self._replayed(tx, key)
            if first is not None:
                if (
                    first.kind is not TransferKind.REFUND
                    or first.reference != request_id
                    or (amount is not None and amount != first.amount)
                ):
                    raise Conflict(f"idempotency key {key!r} was used for a different refund")
                return first
            owner = tx.one(
                "SELECT debit_account_id FROM transfers WHERE reference = ? AND kind IN (?, ?) "
                "LIMIT 1",
                (request_id, *charges),
            )
            if owner is None:
                raise NotFound(f"request {request_id!r} has no charge to refund")
            customer_id = str(owner[0])
            tx.lock_accounts([customer_id, REVENUE_ID])
            # Summed after the locks, so two refunds of one request cannot both pass the bound.
            totals = sums(
                tx.execute(
                    "SELECT kind, SUM(amount_nanos) FROM transfers WHERE reference = ? GROUP BY "
                    "kind",
                    (request_id,),
                )
            )
            refundable = sum(totals.get(k, 0) for k in charges) - totals.get(
                TransferKind.REFUND.value, 0
            )
            value = amount or Amount(refundable)
            if not 0 < value.nanos <= refundable:
                raise InvalidRequest(
                    f"at most {Amount(max(refundable, 0))} of request {request_id!r} can be "
                    f"refunded",
                    param="amount",
                )
            posted_before = self._posted_in(tx, customer_id)
            transfer = self._append(
                tx,
                Transfer(
                    id=new_id("trf", self._clock), debit_account_id=REVENUE_ID,
                    credit_account_id=customer_id, amount=value, kind=TransferKind.REFUND,
                    reference=request_id, idempotency_key=key, created_us=self._clock.now_us(),
                ),
            )  # fmt: skip
            self._open_lot(tx, transfer, posted_before, None)
        return transfer

    # ---- expiry of grant lots -------------------------------------------------------------------

    def expire_grants(self, account_id: str | None = None) -> int:
        """Move what is left of expired lots to the expiry account; the number of lots touched."""
        now_us = self._clock.now_us()
        sql = (
            "SELECT DISTINCT account_id FROM grant_lots WHERE remaining_nanos > 0 "
            "AND expires_us IS NOT NULL AND expires_us <= ?"
        )
        params: list[Any] = [now_us]
        if account_id is not None:
            sql += " AND account_id = ?"
            params.append(account_id)
        with self.read_transaction() as tx:
            owners = [str(row[0]) for row in tx.execute(sql + f" LIMIT {EXPIRE_BATCH_MAX}", params)]
        # One transaction per account keeps each short and its locks few.
        return sum(self._expire_lots_of(owner, now_us) for owner in owners)

    def _expire_lots_of(self, account_id: str, now_us: int) -> int:
        with self.transaction() as tx:
            tx.lock_accounts([account_id, EXPIRY_ID])
            row = tx.one(
                "SELECT credits_posted - debits_posted - debits_pending FROM accounts WHERE id = ?",
                (account_id,),
            )
            assert row is not None
            taken = expiring(self._open_lots(tx, account_id), now_us, int(row[0]))
            for lot_id, nanos in taken:
                self._append(
                    tx,
                    Transfer(
                        id=new_id("trf", self._clock), debit_account_id=account_id,
                        credit_account_id=EXPIRY_ID, amount=Amount(nanos), kind=TransferKind.EXPIRY,
                        reference=lot_id, idempotency_key=None, created_us=now_us,
                    ),
                )  # fmt: skip
            if taken:
                self._take_from_lots(tx, account_id, taken)
        return len(taken)

    def transfers(self, account_id: str | None = None, limit: int = 100) -> list[Transfer]:
        sql = f"SELECT {TRANSFER_COLUMNS} FROM transfers"
        params: list[Any] = []
        if account_id is not None:
            sql += " WHERE debit_account_id = ? OR credit_account_id = ?"
            params += [account_id, account_id]
        with self.read_transaction() as tx:
            rows = tx.execute(sql + " ORDER BY seq DESC LIMIT ?", [*params, limit])
        return [transfer_from_row(row) for row in rows]
