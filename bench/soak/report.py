"""From /proc samples and per-request records to per-interval figures and the soak's verdict.

Growth is judged on medians of thirds, not on single samples: RSS and the fd count move with
what is in flight at the sampling instant (open streams, pooled upstream connections), and a
median of several samples ignores one unlucky instant while a real leak, which grows with every
request, still shows.
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bench.gateway.stats import percentile
from bench.soak.probe import Probe

RSS_GROWTH_MAX: Final = 0.20
LATENCY_DRIFT_WARN: Final = 1.5
INTERVALS_MIN_FOR_THIRDS: Final = 3


@dataclass(frozen=True, slots=True)
class Sample:
    """The gateway at one instant: when (monotonic s), what it holds, its CPU so far."""

    t: float
    probe: Probe
    cpu_s: float | None


@dataclass(frozen=True, slots=True)
class Record:
    t: float
    kind: str
    status: int
    latency_ms: float
    outcome: str


@dataclass(frozen=True, slots=True)
class Interval:
    index: int
    end_s: float
    """Seconds since the load started, at the sample that closes this interval."""
    seconds: float
    warmup: bool
    requests: int
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    rss_mb: float
    fds: int
    threads: int
    cpu_pct: float | None
    outcomes: dict[str, int]
    errors_by_status: dict[str, int]
    """Statuses of the requests that went wrong in a way nobody asked for (0 = no response)."""


@dataclass(slots=True)
class Verdict:
    ok: bool = True
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rss_growth: float | None = None
    fd_growth: float | None = None
    thread_growth: float | None = None
    latency_drift: float | None = None
    unexpected_5xx: int = 0
    unexpected_errors: int = 0

    def fail(self, reason: str) -> None:
        self.ok = False
        self.reasons.append(reason)


def read_records(path: Path) -> list[Record]:
    records = []
    for line in path.read_text(encoding="ascii").splitlines():
        t, kind, status, latency, outcome = line.split()
        records.append(Record(float(t), kind, int(status), float(latency), outcome))
    return records


def intervals(
    samples: Sequence[Sample], records: Sequence[Record], warmup_s: float
) -> list[Interval]:
    """One interval between each pair of consecutive samples; ``samples[0]`` is the start."""
    start = samples[0].t
    found = []
    ordered = sorted(records, key=lambda r: r.t)
    cursor = 0
    for index, (before, after) in enumerate(itertools.pairwise(samples), 1):
        inside = []
        while cursor < len(ordered) and ordered[cursor].t <= after.t:
            if ordered[cursor].t > before.t:
                inside.append(ordered[cursor])
            cursor += 1
        seconds = after.t - before.t
        # Latency of the requests meant to succeed: the mix's deliberately slow or short kinds
        # (hang-ups, cut streams, injected failures) would only add noise to the drift figure.
        latencies = [r.latency_ms for r in inside if r.outcome == "ok"]
        cpu = (
            None
            if before.cpu_s is None or after.cpu_s is None
            else 100 * (after.cpu_s - before.cpu_s) / seconds
        )
        found.append(
            Interval(
                index=index,
                end_s=round(after.t - start, 1),
                seconds=round(seconds, 2),
                warmup=after.t - start <= warmup_s,
                requests=len(inside),
                rps=round(len(inside) / seconds, 1) if seconds > 0 else 0.0,
                p50_ms=percentile(latencies, 50),
                p99_ms=percentile(latencies, 99),
                rss_mb=round(after.probe.rss_kb / 1024, 1),
                fds=after.probe.fds,
                threads=after.probe.threads,
                cpu_pct=None if cpu is None else round(cpu, 1),
                outcomes=dict(Counter(r.outcome for r in inside)),
                errors_by_status=dict(
                    Counter(str(r.status) for r in inside if r.outcome in ("error", "incomplete"))
                ),
            )
        )
    return found


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def judge(
    table: Sequence[Interval],
    records: Sequence[Record],
    *,
    fd_growth_max: int,
    rss_growth_max: float = RSS_GROWTH_MAX,
) -> Verdict:
    """Growth and drift between the first and last third after warm-up, and every surprise."""
    verdict = Verdict()
    steady = [i for i in table if not i.warmup]
    if len(steady) < INTERVALS_MIN_FOR_THIRDS:
        verdict.fail(f"only {len(steady)} intervals after warm-up; need {INTERVALS_MIN_FOR_THIRDS}")
    else:
        third = max(1, len(steady) // 3)
        first, last = steady[:third], steady[-third:]
        rss_first = _median([i.rss_mb for i in first])
        verdict.rss_growth = round(_median([i.rss_mb for i in last]) / rss_first - 1, 4)
        verdict.fd_growth = _median([i.fds for i in last]) - _median([i.fds for i in first])
        verdict.thread_growth = _median([i.threads for i in last]) - _median(
            [i.threads for i in first]
        )
        p50_first = [i.p50_ms for i in first if i.p50_ms is not None]
        p50_last = [i.p50_ms for i in last if i.p50_ms is not None]
        if p50_first and p50_last:
            verdict.latency_drift = round(_median(p50_last) / _median(p50_first), 3)
        if verdict.rss_growth > rss_growth_max:
            verdict.fail(
                f"RSS grew {verdict.rss_growth:.1%} after warm-up (limit {rss_growth_max:.0%})"
            )
        if verdict.fd_growth > fd_growth_max:
            verdict.fail(f"open fds grew by {verdict.fd_growth:g} (limit {fd_growth_max})")
        if verdict.thread_growth > 0:
            verdict.notes.append(f"threads grew by {verdict.thread_growth:g}")
        if verdict.latency_drift is not None and verdict.latency_drift > LATENCY_DRIFT_WARN:
            verdict.notes.append(
                f"p50 latency drifted {verdict.latency_drift:.2f}x (a loaded machine does this"
                " too; compare with a quiet run)"
            )
    verdict.unexpected_5xx = sum(1 for r in records if r.status >= 500 and r.outcome != "injected")
    if verdict.unexpected_5xx:
        verdict.fail(f"{verdict.unexpected_5xx} 5xx answers other than the injected ones")
    verdict.unexpected_errors = sum(1 for r in records if r.outcome in ("error", "incomplete"))
    if verdict.unexpected_errors > verdict.unexpected_5xx:
        verdict.fail(
            f"{verdict.unexpected_errors - verdict.unexpected_5xx} requests failed or ended"
            " early without being asked to (4xx, transport errors, truncated bodies)"
        )
    return verdict


def _cell(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(table: Sequence[Interval]) -> str:
    header = (
        f"{'#':>3} {'end s':>7} {'':1} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'RSS MB':>7}"
        f" {'fds':>5} {'thr':>4} {'cpu %':>6}  outcomes / unexpected errors by status"
    )
    lines = [header, "-" * len(header)]
    for i in table:
        outcomes = " ".join(f"{k}={v}" for k, v in sorted(i.outcomes.items()))
        errors = " ".join(f"{k}:{v}" for k, v in sorted(i.errors_by_status.items()))
        lines.append(
            f"{i.index:>3} {i.end_s:>7.1f} {'w' if i.warmup else ' ':1} {i.rps:>7.1f}"
            f" {_cell(i.p50_ms, 2):>8} {_cell(i.p99_ms, 2):>8} {i.rss_mb:>7.1f} {i.fds:>5}"
            f" {i.threads:>4} {_cell(i.cpu_pct):>6}  {outcomes}"
            + (f"  !! {errors}" if errors else "")
        )
    return "\n".join(lines)
