"""The pure budget arithmetic: UTC periods, exact threshold crossings, threshold parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ciyuan.clock import datetime_to_us
from ciyuan.metering.budgets import Period, crossed, iso_z, parse_thresholds, period_of
from ciyuan.pricing.money import Amount


def at(*parts: int) -> int:
    return datetime_to_us(datetime(*parts, tzinfo=UTC))  # type: ignore[misc]


@pytest.mark.parametrize(
    ("period", "now", "start", "end"),
    [
        ("day", at(2026, 11, 30, 23, 59, 59), at(2026, 11, 30), at(2026, 12, 1)),
        ("week", at(2026, 12, 3, 12), at(2026, 11, 30), at(2026, 12, 7)),  # Thu → Mon
        ("week", at(2026, 11, 30), at(2026, 11, 30), at(2026, 12, 7)),  # Monday itself
        ("month", at(2026, 12, 31, 23, 59), at(2026, 12, 1), at(2027, 1, 1)),
        ("month", at(2028, 2, 29, 8), at(2028, 2, 1), at(2028, 3, 1)),
    ],
)
def test_periods_are_utc_calendar_periods(period: str, now: int, start: int, end: int) -> None:
    assert period_of(period, now) == Period(start, end)
    assert period_of(period, end) == period_of(period, end + 1) != period_of(period, end - 1)


def test_total_never_resets() -> None:
    assert period_of("total", at(2030, 1, 1)) == Period(0, None)


def test_crossings_are_exact_integers() -> None:
    cap = Amount.parse("0.03")
    # 80 % of 0.03 is 0.024 exactly: reaching it crosses, one nano short does not.
    assert crossed((50, 80, 100), cap, Amount.parse("0.01"), Amount.parse("0.024")) == [50, 80]
    assert crossed((80,), cap, Amount.parse("0.01"), Amount(23_999_999)) == []
    assert crossed((80,), cap, Amount.parse("0.024"), Amount.parse("0.03")) == []


def test_thresholds_parse_and_format() -> None:
    assert parse_thresholds("80, 50,100%,50") == (50, 80, 100)
    assert parse_thresholds("") == ()
    for bad in ("fifty", "0", "1001", ",".join(str(n) for n in range(1, 12))):
        with pytest.raises(ValueError):
            parse_thresholds(bad)
    assert iso_z(at(2026, 12, 1)) == "2026-12-01T00:00:00Z"
