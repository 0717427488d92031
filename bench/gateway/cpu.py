"""CPU seconds used by a server process and its children, read from /proc (Linux).

Throughput on a shared two-core machine moves with whatever else runs; the CPU a server spends
per request moves much less, so it is the fairer figure for "what does a gateway cost".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

CLOCK_TICKS_PER_S: Final = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(child) for child in task.read_text().split()]
    return found


def _own_cpu_s(pid: int) -> float:
    # Fields after the ")" that closes the command name; utime and stime are the 12th and 13th.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


def tree_cpu_s(pid: int) -> float | None:
    """User plus system CPU of ``pid`` and its live descendants; None where /proc is missing."""
    try:
        total = 0.0
        pending = [pid]
        while pending:
            current = pending.pop()
            total += _own_cpu_s(current)
            pending += _children(current)
        return total
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
