"""What reading the ledger back reports: history lines and reconciliation (pure domain)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ciyuan.ledger.transfers import Transfer


@dataclass(frozen=True, slots=True)
class HistoryLine:
    transfer: Transfer
    change_nanos: int
    """What the transfer did to this account's posted balance: + credit, − debit."""
    posted_after_nanos: int


@dataclass(frozen=True, slots=True)
class Difference:
    account_id: str
    account_name: str
    field: str
    stored: int
    recomputed: int


@dataclass(frozen=True, slots=True)
class Reconciliation:
    accounts_checked: int
    posted_sum_nanos: int
    """The sum of every account's posted balance: zero in double entry."""
    differences: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.posted_sum_nanos == 0 and not self.differences

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "accounts_checked": self.accounts_checked,
            "posted_sum_nanos": self.posted_sum_nanos,
            "differences": [vars_of(d) for d in self.differences],
        }


def vars_of(diff: Difference) -> dict[str, Any]:
    return {
        "account_id": diff.account_id, "account": diff.account_name, "field": diff.field,
        "stored": diff.stored, "recomputed": diff.recomputed,
    }  # fmt: skip
