"""Money: exact integer amounts in one fixed minor unit, never a float.

The minor unit is the *nano*: 10⁻⁹ of the currency (USD), the same unit Google's ``Money``
type uses for its ``nanos`` field. Providers quote prices per million tokens down to tenths of a
cent (``$0.005 / 1M`` = 5 nanos per token), so every listed per-token price is a whole number of
nanos and the cost of a usage record is an exact integer product with no rounding at all. A
64-bit signed integer of nanos holds ±9.2 billion USD, the limit of every balance column.

Rounding happens only where an exact ratio (a plan's markup or discount) meets an amount, in
:func:`Amount.scaled`, and there it rounds half to even: unbiased over many requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from functools import lru_cache
from typing import Final

CURRENCY: Final = "USD"
NANOS_PER_UNIT: Final = 10**9
AMOUNT_NANOS_MAX: Final = 2**63 - 1
"""The largest magnitude any stored amount or balance may reach (a signed 64-bit column)."""


class MoneyError(ValueError):
    """A decimal string or a number that is not an exact amount of money."""


@dataclass(frozen=True, slots=True, order=True)
class Amount:
    """An exact amount of money in nanos (10⁻⁹ USD)."""

    nanos: int

    def __post_init__(self) -> None:
        # bool is an int subclass and float must never reach the money path.
        if type(self.nanos) is not int:
            raise TypeError(f"Amount takes an int of nanos, not {type(self.nanos).__name__}")
        if not -AMOUNT_NANOS_MAX <= self.nanos <= AMOUNT_NANOS_MAX:
            raise MoneyError(f"amount of {self.nanos} nanos is beyond the 64-bit limit")

    @classmethod
    def zero(cls) -> Amount:
        return _ZERO

    @classmethod
    def parse(cls, text: str) -> Amount:
        """Parse a decimal string in the currency's major unit: ``"10"``, ``"0.25"``, ``"-1.5"``."""
        if not isinstance(text, str):
            raise TypeError(f"Amount.parse takes a str, not {type(text).__name__}")
        cleaned = text.strip().removeprefix("$")
        try:
            value = Decimal(cleaned)
        except InvalidOperation:
            raise MoneyError(f"{text!r} is not a decimal amount") from None
        if not value.is_finite():
            raise MoneyError(f"{text!r} is not a finite amount")
        nanos = value * NANOS_PER_UNIT
        if nanos != nanos.to_integral_value():
            raise MoneyError(f"{text!r} has more than 9 decimal places (the ledger's unit is 1e-9)")
        return cls(int(nanos))

    def __str__(self) -> str:
        """The exact decimal string, with at least two decimals: ``10.00``, ``0.000375``."""
        sign = "-" if self.nanos < 0 else ""
        whole, frac = divmod(abs(self.nanos), NANOS_PER_UNIT)
        digits = f"{frac:09d}".rstrip("0").ljust(2, "0")
        return f"{sign}{whole}.{digits}"

    def __add__(self, other: Amount) -> Amount:
        return Amount(self.nanos + other.nanos)

    def __sub__(self, other: Amount) -> Amount:
        return Amount(self.nanos - other.nanos)

    def __neg__(self) -> Amount:
        return Amount(-self.nanos)

    def __mul__(self, count: int) -> Amount:
        if type(count) is not int:
            raise TypeError("an Amount is multiplied only by an int count")
        return Amount(self.nanos * count)

    __rmul__ = __mul__

    def __bool__(self) -> bool:
        return self.nanos != 0

    def scaled(self, ratio: Fraction) -> Amount:
        """This amount times an exact ratio, rounded half to even: the one rounding rule."""
        return Amount(round(self.nanos * ratio))

    def to_decimal(self) -> Decimal:
        return Decimal(self.nanos) / NANOS_PER_UNIT


_ZERO: Final = Amount(0)
ZERO: Final = _ZERO
"""No money: a default that is a constant rather than a call (dataclass and argument defaults)."""


def total(amounts: list[Amount]) -> Amount:
    """The exact sum of amounts (sum() would start from the int 0)."""
    return Amount(sum(a.nanos for a in amounts))


def per_million_to_nanos_per_token(text: str) -> int:
    """A price quoted in currency per million tokens, as whole nanos per token.

    ``"2.50"`` → 2500. A price finer than one nano per token is refused rather than rounded, so
    that every price in the catalog is exact.
    """
    try:
        value = Decimal(str(text).strip().removeprefix("$"))
    except InvalidOperation:
        raise MoneyError(f"price {text!r} is not a decimal number") from None
    if not value.is_finite() or value < 0:
        raise MoneyError(f"price {text!r} must be a finite, non-negative number")
    per_token = value * NANOS_PER_UNIT / 10**6
    if per_token != per_token.to_integral_value():
        raise MoneyError(
            f"price {text!r} per million tokens is finer than 1e-9 per token; "
            "the ledger cannot charge it exactly"
        )
    return int(per_token)


@lru_cache(maxsize=1024)  # a handful of rates, formatted on every usage event's cost lines
def nanos_per_token_to_per_million(nanos: int) -> str:
    """The inverse of :func:`per_million_to_nanos_per_token`, as a trimmed decimal string."""
    value = Decimal(nanos) * 10**6 / NANOS_PER_UNIT
    text = format(value.normalize(), "f")
    return text
