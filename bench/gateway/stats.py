"""From a cell's raw samples to the figures the table prints: throughput and percentiles."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class CellResult:
    """One target under one load: ``mode`` is ``plain`` or ``stream``."""

    target: str
    mode: str
    concurrency: int
    requests: int
    errors: int
    elapsed_s: float
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    overhead_p50_ms: float | None
    server_cpu_ms_per_request: float | None
    error_examples: tuple[str, ...]


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100): always a value that was measured."""
    assert 0 <= q <= 100
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def summarize(target: str, mode: str, concurrency: int, raw: dict[str, Any]) -> CellResult:
    latency: list[float] = raw["latency_s"]
    ttfb: list[float] = raw["ttfb_s"]
    overhead: list[float] = raw["overhead_ms"]
    elapsed: float = raw["elapsed_s"]
    cpu_s: float | None = raw["server_cpu_s"]
    served: int = raw["server_requests"]
    return CellResult(
        target=target,
        mode=mode,
        concurrency=concurrency,
        requests=len(latency),
        errors=int(raw["errors"]),
        elapsed_s=elapsed,
        rps=len(latency) / elapsed if elapsed > 0 else 0.0,
        p50_ms=_ms(percentile(latency, 50)),
        p99_ms=_ms(percentile(latency, 99)),
        ttft_p50_ms=_ms(percentile(ttfb, 50)),
        ttft_p99_ms=_ms(percentile(ttfb, 99)),
        overhead_p50_ms=statistics.median(overhead) if overhead else None,
        server_cpu_ms_per_request=None if cpu_s is None or not served else 1000 * cpu_s / served,
        error_examples=tuple(raw["error_examples"]),
    )
