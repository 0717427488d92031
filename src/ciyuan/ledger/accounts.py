"""Accounts and their balances (pure domain: no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from ciyuan.pricing.money import Amount


class AccountKind(StrEnum):
    CUSTOMER = "customer"
    FUNDING = "funding"
    REVENUE = "revenue"
    EXPIRY = "expiry"


FUNDING_ACCOUNT: Final = "ciyuan:funding"
REVENUE_ACCOUNT: Final = "ciyuan:revenue"
EXPIRY_ACCOUNT: Final = "ciyuan:expiry"
SYSTEM_ACCOUNTS: Final = (FUNDING_ACCOUNT, REVENUE_ACCOUNT, EXPIRY_ACCOUNT)
# Fixed ids from the migrations: known without a query, so a transaction can lock them in order.
FUNDING_ID: Final = "acc_funding"
REVENUE_ID: Final = "acc_revenue"
EXPIRY_ID: Final = "acc_expiry"


@dataclass(frozen=True, slots=True)
class Balance:
    """The maintained balance row of one account, in nanos."""

    credits_posted: int
    debits_posted: int
    debits_pending: int

    @property
    def posted(self) -> Amount:
        return Amount(self.credits_posted - self.debits_posted)

    @property
    def pending(self) -> Amount:
        return Amount(self.debits_pending)

    @property
    def available(self) -> Amount:
        return Amount(self.credits_posted - self.debits_posted - self.debits_pending)


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    name: str
    kind: AccountKind
    floor_nanos: int | None
    """The lowest available balance allowed; None for system accounts, which have no floor."""
    created_us: int
    balance: Balance


def validate_account_name(name: str) -> str | None:
    """Why ``name`` cannot name a customer account, or None when it can."""
    if not 1 <= len(name) <= 64:
        return "account name must be 1 to 64 characters"
    if name.startswith("ciyuan:"):
        return "names starting with 'ciyuan:' are reserved for system accounts"
    if not all(ch.isalnum() or ch in "-_.@" for ch in name):
        return "account name may contain letters, digits and - _ . @ only"
    return None
