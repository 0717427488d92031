"""Account statements on SQL: what an invoice is built from, read in one snapshot.

Balances are sums of the account's transfers by ``created_us``, so the opening balance of one
period is exactly the closing balance of the one before, and ``closing`` is computed on its own
(not as opening plus movements) for the invoice to check its arithmetic against.
"""

# ruff: noqa: S608  (SQL is composed from constant column lists only; values are bound)

from __future__ import annotations

from typing import Any, Final

import orjson

from ciyuan.errors import InvalidRequest, NotFound
from ciyuan.ledger.checkpoints import Checkpoint
from ciyuan.ledger.transfers import TransferKind
from ciyuan.metering.ports import LedgerStatement
from ciyuan.pricing.money import Amount
from ciyuan.reports.itemise import Itemiser
from ciyuan.store.sql_base import (
    ACCOUNT_COLUMNS,
    TRANSFER_COLUMNS,
    SqlBase,
    Tx,
    account_from_row,
    transfer_from_row,
)

_CHARGES: Final = (TransferKind.CHARGE.value, TransferKind.OVERAGE.value)
_MOVEMENTS: Final = (TransferKind.GRANT.value, TransferKind.REFUND.value, TransferKind.EXPIRY.value)
_GENESIS_HASH: Final = "0" * 64
# Each charged request once, with what the ledger charged for it (charge plus overage).
_CHARGED_USAGE: Final = (
    "SELECT COALESCE(u.model, 'unknown'), COALESCE(u.input_tokens, 0), "
    "COALESCE(u.cached_tokens, 0), COALESCE(u.output_tokens, 0), "
    "COALESCE(u.reasoning_tokens, 0), t.charged, COALESCE(u.detail, '{}') FROM "
    "(SELECT reference, SUM(amount_nanos) AS charged FROM transfers WHERE debit_account_id = ? "
    "AND kind IN (?, ?) AND created_us >= ? AND created_us < ? GROUP BY reference) t "
    "LEFT JOIN usage_events u ON u.request_id = t.reference"
)


class StatementQueries(SqlBase):
    def statement(self, account_id: str, *, since_us: int, until_us: int) -> LedgerStatement:
        if since_us >= until_us:
            raise InvalidRequest("a statement's period must end after it starts", param="period")
        with self.read_transaction() as tx:
            row = tx.one(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?", (account_id,))
            if row is None:
                raise NotFound(f"no account {account_id}")
            opening = _posted_before(tx, account_id, since_us)
            closing = _posted_before(tx, account_id, until_us)
            charged = tx.one(
                "SELECT COALESCE(SUM(amount_nanos), 0) FROM transfers WHERE debit_account_id = ? "
                "AND kind IN (?, ?) AND created_us >= ? AND created_us < ?",
                (account_id, *_CHARGES, since_us, until_us),
            )
            transfers = tx.execute(
                f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE (debit_account_id = ? OR "
                "credit_account_id = ?) AND kind IN (?, ?, ?) AND created_us >= ? "
                "AND created_us < ? ORDER BY seq",
                (account_id, account_id, *_MOVEMENTS, since_us, until_us),
            )
            itemiser = Itemiser()
            for model, inp, cached, out, reasoning, nanos, detail in tx.execute(
                _CHARGED_USAGE, (account_id, *_CHARGES, since_us, until_us)
            ):
                counts = (int(inp), int(cached), int(out), int(reasoning))
                itemiser.add(str(model), counts, int(nanos), orjson.loads(detail))
            head = tx.one(
                "SELECT seq, hash FROM transfers WHERE created_us < ? ORDER BY seq DESC LIMIT 1",
                (until_us,),
            )
            chain_seq, chain_hash = (int(head[0]), str(head[1])) if head else (0, _GENESIS_HASH)
            signed = tx.one(
                "SELECT seq, hash, created_us, public_key, signature, merkle_root FROM checkpoints "
                "WHERE seq >= ? ORDER BY seq LIMIT 1",
                (chain_seq,),
            )
        assert charged is not None
        return LedgerStatement(
            account=account_from_row(row), since_us=since_us, until_us=until_us,
            opening=Amount(opening), closing=Amount(closing), charged=Amount(int(charged[0])),
            transfers=tuple(transfer_from_row(t) for t in transfers), usage=itemiser.items(),
            chain_seq=chain_seq, chain_hash=chain_hash,
            checkpoint=Checkpoint(*signed) if signed else None,
        )  # fmt: skip


def _posted_before(tx: Tx, account_id: str, before_us: int) -> int:
    params: tuple[Any, ...] = (account_id, account_id, account_id, before_us)
    row = tx.one(
        "SELECT COALESCE(SUM(CASE WHEN credit_account_id = ? THEN amount_nanos "
        "ELSE -amount_nanos END), 0) FROM transfers WHERE (debit_account_id = ? OR "
        "credit_account_id = ?) AND created_us < ?",
        params,
    )
    assert row is not None
    return int(row[0])
