"""What every SQL store module shares: the transaction seam, row shapes and row mappers.

Statements use ``?`` placeholders whatever the dialect; the PostgreSQL adapter rewrites them.
SQL text is composed only from the constant column lists below, never from input (hence the
S608 exemptions in the store modules); every value travels as a bound parameter.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Final

from ciyuan.clock import Clock
from ciyuan.ledger.accounts import Account, AccountKind, Balance
from ciyuan.ledger.transfers import Transfer, TransferKind
from ciyuan.pricing.money import Amount

Row = tuple[Any, ...]

ACCOUNT_COLUMNS: Final = (
    "id, name, kind, floor_nanos, created_us, credits_posted, debits_posted, debits_pending"
)
TRANSFER_COLUMNS: Final = (
    "id, debit_account_id, credit_account_id, amount_nanos, kind, reference, idempotency_key, "
    "created_us, metadata, seq, hash"
)


class Tx(abc.ABC):
    """One open transaction."""

    @abc.abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = self.execute(sql, params)
        return rows[0] if rows else None

    @abc.abstractmethod
    def lock_accounts(self, account_ids: Sequence[str]) -> None:
        """Lock the balance rows of these accounts, in id order, until the transaction ends.

        Called at most once per transaction with every account it will touch, before the chain
        head: one global order (accounts by id, then the head) so nothing can deadlock.
        """

    @abc.abstractmethod
    def lock_head(self) -> tuple[int, str]:
        """Lock the chain head until the transaction ends and return its (seq, hash)."""


class SqlBase(abc.ABC):
    """The seam the dialects implement: transactions, and the clock every write stamps."""

    def __init__(self, url: str, clock: Clock) -> None:
        self._url = url
        self._clock = clock

    @property
    def url(self) -> str:
        return self._url

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[Tx]:
        """A read-write transaction, committed (and durable per the setting) when it ends."""

    def read_transaction(self) -> AbstractContextManager[Tx]:
        """A read-only transaction that sees one consistent snapshot across its statements."""
        return self.transaction()

    @abc.abstractmethod
    def close(self) -> None: ...


def account_from_row(row: Row) -> Account:
    return Account(
        id=row[0],
        name=row[1],
        kind=AccountKind(row[2]),
        floor_nanos=row[3],
        created_us=row[4],
        balance=Balance(credits_posted=row[5], debits_posted=row[6], debits_pending=row[7]),
    )


def transfer_from_row(row: Row) -> Transfer:
    return Transfer(
        id=row[0],
        debit_account_id=row[1],
        credit_account_id=row[2],
        amount=Amount(row[3]),
        kind=TransferKind(row[4]),
        reference=row[5],
        idempotency_key=row[6],
        created_us=row[7],
        metadata=row[8],
        seq=row[9] or 0,
        hash=row[10] or "",
    )


def sums(rows: list[Row]) -> dict[str, int]:
    """``{key: total}`` from ``SELECT key, SUM(...) ... GROUP BY key`` rows (NULL sums are 0)."""
    return {str(key): int(total or 0) for key, total in rows}
