"""Budgets: spend caps in money per API key or per account and period, on top of the balance.

Pure arithmetic, no I/O: which period an instant falls in (UTC calendar periods), whether a
hold fits under a cap, which soft thresholds a settle crossed, and the words a refusal uses.
The store keeps, per (budget, period), the settled spend and the pending holds in one row that
reserve and settle update in their own transactions, so the cap is exact under concurrency.

Periods start at UTC midnight (``day``), Monday 00:00 UTC (``week``, ISO weeks), the 1st of the
month 00:00 UTC (``month``), or never reset (``total``, one period starting at the epoch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from ciyuan.clock import US_PER_S, datetime_to_us, us_to_datetime
from ciyuan.pricing.money import CURRENCY, Amount

PERIODS: Final = ("day", "week", "month", "total")
PERIOD_ADJECTIVES: Final = {"day": "daily", "week": "weekly", "month": "monthly", "total": "total"}
THRESHOLDS_MAX: Final = 10
"""A budget's soft thresholds, in whole percent of its amount (each fires one webhook)."""
THRESHOLD_PCT_MAX: Final = 1000


@dataclass(frozen=True, slots=True)
class Period:
    """One period of a budget: ``start_us <= t < end_us`` (``end_us`` None: it never ends)."""

    start_us: int
    end_us: int | None


@dataclass(frozen=True, slots=True)
class Budget:
    """A cap on what one API key (``api_key_id`` set) or one whole account spends per period."""

    id: str
    account_id: str
    account_name: str
    api_key_id: str | None
    api_key_prefix: str | None
    period: str
    amount: Amount
    thresholds_pct: tuple[int, ...]
    webhook_url: str | None
    created_us: int

    @property
    def subject(self) -> str:
        """How messages name what the budget caps: ``key ck-Ab12…`` or ``account acme``."""
        if self.api_key_prefix is not None:
            return f"key {self.api_key_prefix}"
        return f"account {self.account_name}"


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """A budget and where its current period stands."""

    budget: Budget
    period: Period
    spent: Amount
    held: Amount

    @property
    def remaining(self) -> Amount:
        left = self.budget.amount - self.spent - self.held
        return left if left.nanos > 0 else Amount.zero()


def period_of(period: str, now_us: int) -> Period:
    """The period of kind ``period`` that contains the instant ``now_us`` (UTC)."""
    assert period in PERIODS, period
    if period == "total":
        return Period(0, None)
    moment = us_to_datetime(now_us)
    day = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    if period == "day":
        start, end = day, day + timedelta(days=1)
    elif period == "week":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    # Whole seconds: exact in microseconds (datetime_to_us goes through a float timestamp).
    return Period(datetime_to_us(start), datetime_to_us(end))


def fits(cap: Amount, spent: Amount, held: Amount, amount: Amount) -> bool:
    """Whether a hold of ``amount`` keeps settled spend plus pending holds within the cap."""
    return spent.nanos + held.nanos + amount.nanos <= cap.nanos


def crossed(thresholds_pct: Sequence[int], cap: Amount, before: Amount, after: Amount) -> list[int]:
    """The thresholds that settled spend reached by going from ``before`` to ``after``.

    Integer comparisons (``spent * 100 >= cap * pct``), so 80 % of 0.03 USD is exact.
    """
    return [
        pct for pct in thresholds_pct if before.nanos * 100 < cap.nanos * pct <= after.nanos * 100
    ]


def parse_thresholds(text: str) -> tuple[int, ...]:
    """``"50,80,100"`` → ``(50, 80, 100)``: whole percents, sorted, unique; ValueError if not."""
    values: set[int] = set()
    for raw in text.split(","):
        part = raw.strip().removesuffix("%")
        if not part:
            continue
        if not part.isdigit():
            raise ValueError(f"threshold {part!r} is not a whole percent")
        value = int(part)
        if not 1 <= value <= THRESHOLD_PCT_MAX:
            raise ValueError(f"threshold {value} % is outside 1 to {THRESHOLD_PCT_MAX}")
        values.add(value)
    if len(values) > THRESHOLDS_MAX:
        raise ValueError(f"at most {THRESHOLDS_MAX} thresholds per budget")
    return tuple(sorted(values))


def iso_z(us: int) -> str:
    """``2026-12-01T00:00:00Z``: how budget messages and webhooks write an instant."""
    moment = us_to_datetime(us)
    if us % US_PER_S == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.isoformat().replace("+00:00", "Z")


def resets_phrase(period: Period) -> str:
    if period.end_us is None:
        return "it does not reset"
    return f"it resets at {iso_z(period.end_us)}"


def refusal_message(status: BudgetStatus, needed: Amount) -> str:
    """Which cap refused, its amount, what is left, and when it resets."""
    budget = status.budget
    cap = f"{PERIOD_ADJECTIVES[budget.period]} budget of {budget.amount} {CURRENCY}"
    resets = resets_phrase(status.period)
    if status.spent.nanos >= budget.amount.nanos:
        return f"{cap} for {budget.subject} is spent; {resets}"
    return (
        f"{cap} for {budget.subject} has {status.remaining} {CURRENCY} left, less than this "
        f"request may cost (up to {needed} {CURRENCY}); {resets}"
    )
