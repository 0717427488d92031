"""Time and identifiers, injected so tests can fix them instead of sleeping or patching.

Timestamps are integer microseconds since the Unix epoch (UTC) everywhere they are stored: the
same column type and arithmetic on SQLite and PostgreSQL, and no naive datetimes.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Final, Protocol

US_PER_S: Final = 1_000_000


class Clock(Protocol):
    def now_us(self) -> int: ...


class SystemClock:
    def now_us(self) -> int:
        return time.time_ns() // 1000


class FixedClock:
    """A clock that moves only when told to: for tests of timeouts and expiry."""

    def __init__(self, start_us: int = 1_700_000_000 * US_PER_S) -> None:
        self._now_us = start_us

    def now_us(self) -> int:
        return self._now_us

    def advance(self, seconds: float) -> None:
        self._now_us += int(seconds * US_PER_S)


def us_to_datetime(us: int) -> datetime:
    return datetime.fromtimestamp(us / US_PER_S, tz=UTC)


def datetime_to_us(moment: datetime) -> int:
    assert moment.tzinfo is not None, "naive datetimes are refused"
    return int(moment.timestamp() * US_PER_S)


_CROCKFORD: Final = "0123456789abcdefghjkmnpqrstvwxyz"


def new_id(kind: str, clock: Clock | None = None) -> str:
    """A sortable unique id: ``kind_`` + 48-bit milliseconds + 80 random bits, Crockford base32.

    Sortable by creation time (so ``request_id`` order is arrival order in reports) and
    unguessable (so ids leak nothing about other accounts' traffic volume beyond time).
    """
    ms = (clock.now_us() if clock else time.time_ns() // 1000) // 1000
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(_CROCKFORD[digit])
    return f"{kind}_{''.join(reversed(chars))}"
