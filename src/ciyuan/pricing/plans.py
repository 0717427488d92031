"""Plans: what an account pays relative to the catalog's price.

A plan is an exact ratio (``6/5`` is a 20% markup, ``9/10`` a 10% discount, ``1`` list price)
and an optional free allowance, an amount of money per period that usage spends before credit
does. The ratio is a :class:`~fractions.Fraction`, never a float, and is applied once per request
in :func:`ciyuan.pricing.cost.cost_of`: that is the one place a cost is rounded.

How much of the allowance is left is state (it shrinks with every request), so it belongs to
the ledger; ``cost_of`` takes what is left and reports what it used.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Final

from ciyuan.pricing.errors import PriceError
from ciyuan.pricing.money import ZERO, Amount

RATIO_MAX: Final = Fraction(100)
"""A 100x markup is far beyond any real plan and catches a ratio typed as a percentage."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    name: str
    ratio: Fraction = Fraction(1)
    free_allowance: Amount = ZERO
    """Money per allowance period that usage spends before credit (0: none)."""

    def __post_init__(self) -> None:
        if not isinstance(self.ratio, Fraction):
            raise PriceError(
                f"plan {self.name!r}: ratio must be an exact Fraction, not "
                f"{type(self.ratio).__name__}",
                param="ratio",
            )
        if not 0 <= self.ratio <= RATIO_MAX:
            raise PriceError(
                f"plan {self.name!r}: ratio {self.ratio} is outside 0..{RATIO_MAX}", param="ratio"
            )
        if not isinstance(self.free_allowance, Amount) or self.free_allowance.nanos < 0:
            raise PriceError(
                f"plan {self.name!r}: free_allowance must be a non-negative Amount",
                param="free_allowance",
            )

    @classmethod
    def markup(cls, name: str, percent: str) -> Plan:
        """A plan from a percentage string: ``"20"`` is list price plus 20%, ``"-10"`` minus 10%."""
        return cls(name=name, ratio=1 + parse_percent(percent))


def parse_percent(text: str) -> Fraction:
    """``"12.5"`` or ``"12.5%"`` as the exact fraction 1/8."""
    cleaned = str(text).strip().removesuffix("%")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise PriceError(f"{text!r} is not a percentage", param="percent") from None
    if not value.is_finite():
        raise PriceError(f"{text!r} is not a finite percentage", param="percent")
    return Fraction(value) / 100
