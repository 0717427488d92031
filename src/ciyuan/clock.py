"""Time and identifiers, injected so tests can fix them instead of sleeping or patching.

Timestamps are integer microseconds since the Unix epoch (UTC) everywhere they are stored: the
same column type and arithmetic on SQLite and PostgreSQL, and no naive datetimes.
"""

from __future__ import annotations

import os
import threading
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
_DIGIT_PAIRS: Final = tuple(high + low for high in _CROCKFORD for low in _CROCKFORD)
_PAIR_SHIFTS: Final = tuple(range(120, -1, -10))
_RANDOM_BITS: Final = 80
_last_id: list[int] = [0]
_id_lock = threading.Lock()


def new_id(kind: str, clock: Clock | None = None) -> str:
    """A sortable unique id: ``kind_`` + 48-bit milliseconds + 80 random bits, Crockford base32.

    Sortable by creation time (so ``request_id`` order is arrival order in reports) and
    unguessable (so ids leak nothing about other accounts' traffic volume beyond time). Within
    one process ids are strictly increasing, as ULID's monotonic mode makes them: two made in
    the same millisecond (or under a fixed test clock) still sort in the order they were made.
    """
    ms = (clock.now_us() if clock else time.time_ns() // 1000) // 1000
    value = (ms << _RANDOM_BITS) | int.from_bytes(os.urandom(10), "big")
    with _id_lock:
        if value <= _last_id[0] and value >> _RANDOM_BITS <= _last_id[0] >> _RANDOM_BITS:
            value = _last_id[0] + 1
        _last_id[0] = value
    # 26 digits of 5 bits, read two at a time (13 lookups of 10 bits, most significant first).
    return f"{kind}_{''.join([_DIGIT_PAIRS[(value >> shift) & 1023] for shift in _PAIR_SHIFTS])}"
