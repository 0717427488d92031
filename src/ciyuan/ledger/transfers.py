"""Transfers, reservations and what settling one produces (pure domain: no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ciyuan.pricing.money import Amount


class TransferKind(StrEnum):
    GRANT = "grant"
    CHARGE = "charge"
    OVERAGE = "overage"
    REFUND = "refund"
    EXPIRY = "expiry"


class ReservationState(StrEnum):
    PENDING = "pending"
    SETTLED = "settled"
    VOIDED = "voided"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Transfer:
    id: str
    debit_account_id: str
    credit_account_id: str
    amount: Amount
    kind: TransferKind
    reference: str | None
    idempotency_key: str | None
    created_us: int
    metadata: str | None = None
    """Canonical JSON (sorted keys) or None; hashed with the rest, so it is tamper-evident too."""
    seq: int = 0
    """The position in the hash chain, from 1; 0 only before the transfer is written."""
    hash: str = ""
    """The chain hash at this position (hex), covering this transfer and every one before."""


@dataclass(frozen=True, slots=True)
class Reservation:
    id: str
    account_id: str
    amount: Amount
    request_id: str
    expires_us: int


@dataclass(frozen=True, slots=True)
class Settlement:
    """The outcome of settling a reservation: what was charged and the balance after."""

    reservation_id: str
    charged: Amount
    unbilled: Amount
    """Cost beyond the reservation that the balance and its allowance could not cover."""
    available_after: Amount


def chargeable(cost: Amount, reserved: Amount, headroom: Amount) -> Amount:
    """How much of ``cost`` may be charged when settling a reservation of ``reserved``.

    Up to the reservation is always chargeable: it was held. Beyond it the charge may use the
    ``headroom``, the available balance above the account's floor once this reservation's hold
    is released, and no more; the rest is recorded as unbilled.
    """
    assert cost.nanos >= 0 and reserved.nanos >= 0
    if cost <= reserved:
        return cost
    return Amount(min(cost.nanos, max(reserved.nanos, headroom.nanos)))


@dataclass(frozen=True, slots=True)
class ChargeSplit:
    """How the cost of a settled request is booked: a charge, an overage and what is unbilled."""

    charge: Amount
    overage: Amount
    unbilled: Amount


def split_charge(cost: Amount, reserved: Amount, held: Amount, headroom: Amount) -> ChargeSplit:
    """Book ``cost`` for a reservation of ``reserved`` of which ``held`` is still held.

    The part up to the reservation is a *charge*; the part beyond it is an *overage*, its own
    transfer so reports show it. Together they never exceed what :func:`chargeable` allows.
    """
    assert reserved.nanos >= 0 and 0 <= held.nanos <= reserved.nanos
    total = chargeable(cost, held, headroom)
    charge = min(total, reserved)
    split = ChargeSplit(charge=charge, overage=total - charge, unbilled=cost - total)
    assert split.charge + split.overage + split.unbilled == cost and split.overage.nanos >= 0
    return split
