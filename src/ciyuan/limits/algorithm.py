"""The rate-limit algorithm, pure: (state, now, cost, rule) -> (decision, new state).

Rates use GCRA (the generic cell rate algorithm), with a cost per request: 1 for a
requests-per-minute rule, the model tokens for a tokens-per-minute rule. A rule of ``limit``
units per ``window_s`` emits one unit every ``T = window / limit``; the burst tolerance is one
whole window, so a fresh key may spend its full ``limit`` at once and then ``limit`` per window.
The only state is the theoretical arrival time (TAT): the instant at which the bucket would
be empty again. A key with no state, or a TAT in the past, has its whole limit available.

Invariants (tests/unit/limits checks each one):
- a request is admitted only if ``max(TAT, now) + cost·T - window <= now``; then TAT moves by
  ``cost·T`` and nothing else changes, so in any interval of length ``d`` the admitted cost is
  at most ``limit + d·limit/window``, and in any one window at most ``limit + burst``;
- a refused request changes no state;
- a refund (negative adjustment) never takes TAT below ``now``: it can give back at most what
  was charged and never more than a full bucket;
- an overcharge (positive adjustment) may push TAT past the burst tolerance (debt), by at most
  ``DEBT_WINDOWS_MAX`` windows, so a gross underestimate delays the key by a bounded time.

Arithmetic is exact and integer: time in milliseconds, and TAT as whole milliseconds plus a
remainder in units of ``1/limit`` ms, so ``T`` needs no rounding whatever the limit. The Redis
backend runs the same steps in Lua, whose numbers are doubles; every intermediate value stays
below 2**53 because ``Rule`` requires ``limit * window_ms <= 2**53`` and costs are split into
whole windows before they are multiplied (see ``_span``). Keep scripts/*.lua in step with this.

The concurrency limit (requests in flight) is a set of leases, each with an expiry, so the
slots of a process that crashed without releasing come back by themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

EXACT_INT_MAX: Final = 2**53
"""Largest integer every double (Lua's only number type) holds exactly, with all below it."""

DEBT_WINDOWS_MAX: Final = 1
"""How far past an empty bucket an overcharge may push a key, in windows: usage above the
admission estimate is charged, but one wildly wrong estimate cannot lock a key for hours."""

REFUND_UNITS_MAX_WINDOWS: Final = 2 + DEBT_WINDOWS_MAX
"""Adjustments are clamped to this many limits: no TAT is further ahead than that, so a
larger value changes nothing, and the clamp keeps ``_span`` small."""


@dataclass(frozen=True, slots=True)
class Rule:
    """``limit`` units per ``window_s`` seconds under the name ``name`` (rpm, tpm, ...)."""

    name: str
    limit: int
    window_s: int

    def __post_init__(self) -> None:
        # Rules come from operator configuration, so these are errors to report, not asserts.
        if not self.name or ":" in self.name:
            raise ValueError(f"rule name {self.name!r} must be non-empty and contain no ':'")
        if self.limit < 1:
            raise ValueError(f"rule {self.name}: limit {self.limit} must be at least 1")
        if self.window_s < 1:
            raise ValueError(f"rule {self.name}: window_s {self.window_s} must be at least 1")
        if self.limit * self.window_ms > EXACT_INT_MAX:
            raise ValueError(
                f"rule {self.name}: limit {self.limit} over {self.window_s}s is too large; "
                f"limit * window_ms must be at most 2**53"
            )

    @property
    def window_ms(self) -> int:
        return self.window_s * 1000


@dataclass(frozen=True, slots=True, order=True)
class Tat:
    """Theoretical arrival time: ``ms + frac / limit`` milliseconds since the epoch.

    ``frac`` is in ``[0, limit)`` of the rule it belongs to; the ordering compares ``ms`` and
    then ``frac``, which is the order of the instants.
    """

    ms: int
    frac: int = 0


@dataclass(frozen=True, slots=True)
class Charge:
    """One rule to check and charge for one request: ``cost`` units under ``key``."""

    key: str
    rule: Rule
    cost: int


@dataclass(frozen=True, slots=True)
class Decision:
    """What one rule says about one request, with what OpenAI's headers need.

    ``remaining`` counts units still available after this request (before it, when refused).
    ``reset_ms`` is the time until the bucket is full again. ``retry_after_ms`` is 0 when
    allowed, the wait until this cost would fit when refused, and ``None`` when the cost exceeds
    the limit on its own, so no wait can ever admit it. ``at_ms`` is the backend's clock.
    ``degraded`` marks a decision made by the failure policy, without the backend (its
    ``at_ms`` is 0 and its counts say nothing about the bucket).
    """

    rule: Rule
    allowed: bool
    remaining: int
    reset_ms: int
    retry_after_ms: int | None
    at_ms: int
    degraded: bool = False

    @property
    def limit(self) -> int:
        return self.rule.limit

    @property
    def reset_s(self) -> float:
        return self.reset_ms / 1000

    @property
    def retry_after_s(self) -> float | None:
        return None if self.retry_after_ms is None else self.retry_after_ms / 1000


def _span(units: int, rule: Rule) -> tuple[int, int]:
    """``units * T`` as (whole ms, remainder in 1/limit ms), with no product above 2**53.

    Whole windows are split off first because ``units * window_ms`` alone could exceed 2**53
    for a large tokens-per-day rule; the rest is below ``limit``, so its product is bounded by
    the check in ``Rule``.
    """
    assert units >= 0
    whole, part = divmod(units, rule.limit)
    ms, frac = divmod(part * rule.window_ms, rule.limit)
    return whole * rule.window_ms + ms, frac


def _shift(tat: Tat, ms: int, frac: int, rule: Rule) -> Tat:
    """``tat`` plus (``ms``, ``frac``) when ``ms >= 0``, minus their magnitudes otherwise."""
    total_ms, total_frac = tat.ms + ms, tat.frac + frac
    if total_frac >= rule.limit:
        total_ms, total_frac = total_ms + 1, total_frac - rule.limit
    elif total_frac < 0:
        total_ms, total_frac = total_ms - 1, total_frac + rule.limit
    return Tat(total_ms, total_frac)


def _start(tat: Tat | None, now_ms: int, rule: Rule) -> Tat:
    """``max(TAT, now)``: a past TAT means an empty bucket, exactly as no state does."""
    if tat is None or tat.ms < now_ms:
        return Tat(now_ms)
    # A rule whose limit shrank since the state was written may see a remainder out of range;
    # clamping moves TAT by under a millisecond.
    return Tat(tat.ms, min(tat.frac, rule.limit - 1))


def _ceil_ms(tat: Tat) -> int:
    return tat.ms + (1 if tat.frac else 0)


def _remaining(tat: Tat, now_ms: int, rule: Rule) -> int:
    """Whole units that fit before TAT passes the burst tolerance: ``(now + window - TAT) / T``."""
    ahead_ms = tat.ms - now_ms
    if ahead_ms >= rule.window_ms:
        return 0
    return ((rule.window_ms - ahead_ms) * rule.limit - tat.frac) // rule.window_ms


def gcra_hit(tat: Tat | None, now_ms: int, rule: Rule, cost: int) -> tuple[Decision, Tat | None]:
    """Check and charge ``cost`` units; the state is unchanged when the request is refused."""
    assert cost >= 0, "a cost is never negative; refunds go through gcra_adjust"
    start = _start(tat, now_ms, rule)
    retry_after_ms: int | None = None  # a cost above the limit can never be admitted
    if cost <= rule.limit:
        new = _shift(start, *_span(cost, rule), rule)
        allow_at = Tat(new.ms - rule.window_ms, new.frac)
        if allow_at <= Tat(now_ms):
            allowed = Decision(
                rule, True, _remaining(new, now_ms, rule), _ceil_ms(new) - now_ms, 0, now_ms
            )
            # A TAT at now is an empty bucket: store nothing (the Lua script deletes the key).
            return allowed, (new if new > Tat(now_ms) else None)
        retry_after_ms = _ceil_ms(allow_at) - now_ms
        assert retry_after_ms > 0
    remaining = _remaining(start, now_ms, rule)
    refused = Decision(rule, False, remaining, _ceil_ms(start) - now_ms, retry_after_ms, now_ms)
    return refused, tat


def gcra_hit_all(
    states: Sequence[Tat | None], now_ms: int, charges: Sequence[Charge]
) -> tuple[tuple[Decision, ...], tuple[Tat | None, ...]]:
    """Admit only if every rule allows, and then charge every rule; otherwise charge none.

    When refused, each rule's decision still says whether it alone would have allowed, with
    its remaining units uncharged, so the headers describe the state the caller is in.
    """
    assert len(states) == len(charges)
    assert len({(c.key, c.rule.name) for c in charges}) == len(charges), "duplicate charge"
    results = [
        gcra_hit(tat, now_ms, c.rule, c.cost) for tat, c in zip(states, charges, strict=True)
    ]
    if all(decision.allowed for decision, _ in results):
        return tuple(d for d, _ in results), tuple(s for _, s in results)
    decisions = tuple(
        decision if not decision.allowed else _uncharged(tat, now_ms, charge.rule)
        for (decision, _), tat, charge in zip(results, states, charges, strict=True)
    )
    return decisions, tuple(states)


def _uncharged(tat: Tat | None, now_ms: int, rule: Rule) -> Decision:
    start = _start(tat, now_ms, rule)
    return Decision(
        rule=rule,
        allowed=True,
        remaining=_remaining(start, now_ms, rule),
        reset_ms=_ceil_ms(start) - now_ms,
        retry_after_ms=0,
        at_ms=now_ms,
    )


def gcra_adjust(tat: Tat | None, now_ms: int, rule: Rule, delta: int) -> Tat | None:
    """Charge (``delta > 0``) or refund (``delta < 0``) units after the fact.

    A refund stops at an empty bucket (TAT = now); a charge may go into debt, up to
    ``DEBT_WINDOWS_MAX`` windows past an empty bucket. Returns ``None`` when the bucket ends
    empty, which is the same state as no state at all.
    """
    start = _start(tat, now_ms, rule)
    units = min(abs(delta), REFUND_UNITS_MAX_WINDOWS * rule.limit)
    ms, frac = _span(units, rule)
    if delta >= 0:
        cap = Tat(now_ms + (1 + DEBT_WINDOWS_MAX) * rule.window_ms)
        new = min(_shift(start, ms, frac, rule), cap)
    else:
        new = max(_shift(start, -ms, -frac, rule), Tat(now_ms))
    return None if new <= Tat(now_ms) else new


def lease_acquire(
    leases: Mapping[str, int], now_ms: int, limit: int, lease_ms: int, lease_id: str
) -> dict[str, int] | None:
    """Leases (id -> expiry ms) with one more, or ``None`` when ``limit`` are live already.

    A lease is live while its expiry is after ``now``; expired ones are dropped here, which is
    how a crashed process's slots come back.
    """
    assert limit >= 1 and lease_ms >= 1
    assert lease_id not in leases
    live = _live(leases.items(), now_ms)
    if len(live) >= limit:
        return None
    live[lease_id] = now_ms + lease_ms
    return live


def lease_renew(
    leases: Mapping[str, int], now_ms: int, lease_id: str, lease_ms: int
) -> dict[str, int] | None:
    """Leases with ``lease_id`` extended to ``now + lease_ms``; ``None`` if it is not live."""
    assert lease_ms >= 1
    if leases.get(lease_id, now_ms) <= now_ms:
        return None
    live = _live(leases.items(), now_ms)
    live[lease_id] = now_ms + lease_ms
    return live


def lease_release(leases: Mapping[str, int], now_ms: int, lease_id: str) -> dict[str, int]:
    """Leases without ``lease_id``; releasing twice, or after expiry, changes nothing."""
    return _live(((k, v) for k, v in leases.items() if k != lease_id), now_ms)


def _live(items: Iterable[tuple[str, int]], now_ms: int) -> dict[str, int]:
    return {lease_id: expiry for lease_id, expiry in items if expiry > now_ms}
