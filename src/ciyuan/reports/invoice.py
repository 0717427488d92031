"""An invoice: one account's period, built from a ledger statement, summing exactly.

Invariant, checked when the invoice is built (a failure means the ledger holds a movement the
invoice does not know, which is a programmer error):

    opening + grants - charges + refunds - expiries == closing

where ``closing`` was summed by the store on its own, and the charges itemised by model (and
within a model by price line) add up to ``charges`` to the nano.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ciyuan.ledger.checkpoints import Checkpoint
from ciyuan.ledger.transfers import Transfer, TransferKind
from ciyuan.metering.ports import LedgerStatement, ModelUsage
from ciyuan.pricing.money import CURRENCY, Amount, nanos_per_token_to_per_million
from ciyuan.reports.buckets import datetime_of

SUMMARY_LABELS: Final = (
    ("opening", "Opening balance"),
    ("grants", "Credit granted"),
    ("charges", "Usage charged"),
    ("refunds", "Refunds"),
    ("expiries", "Credit expired"),
    ("closing", "Closing balance"),
)
"""The summary lines, in order, as every rendering shows them."""


@dataclass(frozen=True, slots=True)
class Movement:
    """A grant, refund or expiry on the account, with its chain position."""

    kind: str
    created_us: int
    amount: Amount
    reference: str | None
    seq: int
    transfer_id: str


@dataclass(frozen=True, slots=True)
class Invoice:
    account_name: str
    account_id: str
    period: str
    since_us: int
    until_us: int
    opening: Amount
    grants: Amount
    charges: Amount
    refunds: Amount
    expiries: Amount
    closing: Amount
    movements: tuple[Movement, ...]
    usage: tuple[ModelUsage, ...]
    chain_seq: int
    chain_hash: str
    checkpoint: Checkpoint | None
    currency: str = CURRENCY

    @property
    def number(self) -> str:
        return f"{self.account_name}-{self.period}"

    def summary(self) -> list[tuple[str, str, Amount]]:
        """(key, label, amount) for each summary line, charges and expiries as amounts taken."""
        return [(key, label, getattr(self, key)) for key, label in SUMMARY_LABELS]

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "account": {"name": self.account_name, "id": self.account_id},
            "period": {
                "label": self.period,
                "since": iso(self.since_us),
                "until": iso(self.until_us),
            },
            "currency": self.currency,
            "summary": {key: str(amount) for key, _, amount in self.summary()},
            "summary_nanos": {key: amount.nanos for key, _, amount in self.summary()},
            "usage": [model_dict(m) for m in self.usage],
            "movements": [
                {
                    "kind": m.kind,
                    "at": iso(m.created_us),
                    "amount": str(m.amount),
                    "amount_nanos": m.amount.nanos,
                    "reference": m.reference,
                    "seq": m.seq,
                    "transfer_id": m.transfer_id,
                }
                for m in self.movements
            ],
            "ledger": {
                "chain_seq": self.chain_seq,
                "chain_hash": self.chain_hash,
                "checkpoint": self.checkpoint.to_dict() if self.checkpoint else None,
            },
        }


def iso(at_us: int) -> str:
    return datetime_of(at_us).isoformat().replace("+00:00", "Z")


def unit_price(unit_nanos: int) -> str:
    """A unit price as operators read catalogs: per million tokens, exact."""
    return nanos_per_token_to_per_million(unit_nanos) if unit_nanos else ""


def model_dict(usage: ModelUsage) -> dict[str, Any]:
    return {
        "model": usage.model, "requests": usage.requests, "input_tokens": usage.input_tokens,
        "cached_tokens": usage.cached_tokens, "output_tokens": usage.output_tokens,
        "reasoning_tokens": usage.reasoning_tokens, "charged": str(usage.charged),
        "charged_nanos": usage.charged.nanos,
        "lines": [
            {
                "bucket": line.bucket, "tokens": line.tokens, "unit_nanos": line.unit_nanos,
                "unit_per_million": unit_price(line.unit_nanos), "amount": str(line.amount),
                "amount_nanos": line.amount.nanos,
            }
            for line in usage.lines
        ],
    }  # fmt: skip


def _movement(transfer: Transfer) -> Movement:
    return Movement(
        kind=transfer.kind.value, created_us=transfer.created_us, amount=transfer.amount,
        reference=transfer.reference, seq=transfer.seq, transfer_id=transfer.id,
    )  # fmt: skip


def build_invoice(statement: LedgerStatement, period: str) -> Invoice:
    account_id = statement.account.id
    totals = {kind: 0 for kind in (TransferKind.GRANT, TransferKind.REFUND, TransferKind.EXPIRY)}
    for transfer in statement.transfers:
        assert transfer.kind in totals, transfer
        # Grants and refunds credit the account; an expiry debits it.
        side = transfer.debit_account_id if transfer.kind is TransferKind.EXPIRY else None
        assert (side or transfer.credit_account_id) == account_id, transfer
        totals[transfer.kind] += transfer.amount.nanos
    itemised = sum(m.charged.nanos for m in statement.usage)
    assert itemised == statement.charged.nanos, (itemised, statement.charged)
    invoice = Invoice(
        account_name=statement.account.name, account_id=account_id, period=period,
        since_us=statement.since_us, until_us=statement.until_us, opening=statement.opening,
        grants=Amount(totals[TransferKind.GRANT]), charges=statement.charged,
        refunds=Amount(totals[TransferKind.REFUND]), expiries=Amount(totals[TransferKind.EXPIRY]),
        closing=statement.closing,
        movements=tuple(_movement(t) for t in statement.transfers),
        usage=statement.usage, chain_seq=statement.chain_seq, chain_hash=statement.chain_hash,
        checkpoint=statement.checkpoint,
    )  # fmt: skip
    assert balances(invoice), invoice.to_dict()["summary"]
    return invoice


def balances(invoice: Invoice) -> bool:
    """The invoice's arithmetic: what every rendering must also satisfy when parsed back."""
    moved = invoice.grants - invoice.charges + invoice.refunds - invoice.expiries
    return invoice.opening + moved == invoice.closing
