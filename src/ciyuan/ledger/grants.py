"""Grant lots: which credit a charge spends and what an expiry takes (pure domain: no I/O).

Each grant (and each refund) opens a *lot* on the customer account. A debit of the customer
(charge, overage, expiry) consumes lots earliest-expiring first, lots that never expire last,
so promotional credit is spent before it lapses. The invariant the store keeps and
reconciliation checks: an account's open lots add up to ``max(0, posted balance)``. Credit that
pays off an overdraft (posted below zero) opens a lot only for what is left above zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Lot:
    id: str
    remaining_nanos: int
    expires_us: int | None
    created_us: int


def spending_order(lot: Lot) -> tuple[bool, int, int, str]:
    """Earliest expiry first; never-expiring lots last; ties by age then id (deterministic)."""
    return (lot.expires_us is None, lot.expires_us or 0, lot.created_us, lot.id)


def consume(lots: Sequence[Lot], amount_nanos: int) -> list[tuple[str, int]]:
    """(lot id, nanos taken) for a debit of ``amount_nanos``; what no lot covers is overdraft."""
    assert amount_nanos >= 0
    taken: list[tuple[str, int]] = []
    left = amount_nanos
    for lot in sorted(lots, key=spending_order):
        if left == 0:
            break
        take = min(lot.remaining_nanos, left)
        if take > 0:
            taken.append((lot.id, take))
            left -= take
    return taken


def expiring(lots: Sequence[Lot], now_us: int, free_nanos: int) -> list[tuple[str, int]]:
    """(lot id, nanos to expire) for lots past their expiry, within ``free_nanos``.

    ``free_nanos`` is the available balance above zero: credit held by a reservation in flight
    is not taken away under it (the account would drop below its floor). What is left of an
    expired lot expires at a later sweep, once the hold is settled or released.
    """
    taken: list[tuple[str, int]] = []
    free = max(0, free_nanos)
    for lot in sorted(lots, key=spending_order):
        if lot.expires_us is None or lot.expires_us > now_us or free == 0:
            continue
        take = min(lot.remaining_nanos, free)
        if take > 0:
            taken.append((lot.id, take))
            free -= take
    return taken


def opened_lot_nanos(amount_nanos: int, posted_before_nanos: int) -> int:
    """How much of a credit of ``amount_nanos`` opens a lot: what is left after any overdraft."""
    assert amount_nanos > 0
    return max(0, min(amount_nanos, posted_before_nanos + amount_nanos))
