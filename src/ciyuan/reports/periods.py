"""Dates and periods as operators type them, turned into UTC microsecond bounds.

A range is half-open, ``[since, until)``: a month is ``[first day, first day of the next)``,
so consecutive periods never share or miss a request.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from typing import Final

from ciyuan.reports.buckets import us_of

_MONTH: Final = re.compile(r"^(\d{4})-(\d{2})$")


class PeriodError(ValueError):
    """A date or period that cannot be read; the message says what was expected."""


def parse_when(text: str) -> int:
    """``2026-11-25`` (midnight UTC) or ``2026-11-25T13:30[:00][Z|+hh:mm]`` → microseconds."""
    cleaned = text.strip()
    try:
        if len(cleaned) == 10:
            return us_of(datetime.combine(date.fromisoformat(cleaned), time(), tzinfo=UTC))
        moment = datetime.fromisoformat(cleaned.replace("Z", "+00:00"))
    except ValueError:
        raise PeriodError(
            f"{text!r} is not a date (2026-11-25) or a time (2026-11-25T13:00)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # times without an offset are UTC, as stored
    return us_of(moment)


def month_range(period: str) -> tuple[int, int]:
    """``2026-11`` → the bounds of that month in UTC."""
    found = _MONTH.match(period.strip())
    if not found or not 1 <= int(found.group(2)) <= 12:
        raise PeriodError(f"{period!r} is not a month; write it as 2026-11")
    year, month = int(found.group(1)), int(found.group(2))
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return us_of(start), us_of(end)
