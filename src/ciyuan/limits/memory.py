"""In-process rate limits: the embedded default, a plain dict around the pure algorithm.

No lock: every method reads, decides and writes with no ``await`` in between, and one event
loop runs one coroutine step at a time, so each method is atomic with respect to every other
task in the process. This holds only within one event loop thread and one process: limits are
per process, so a deployment with several gateway processes (``--workers N``) must use Redis.

Idle keys vanish: a bucket whose TAT is past is the same as no bucket, and a lease set with no
live lease is empty, so a sweep drops both at most once per ``sweep_interval_s``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Final

from ciyuan.clock import Clock, SystemClock
from ciyuan.limits.algorithm import (
    Charge,
    Decision,
    Rule,
    Tat,
    gcra_adjust,
    gcra_hit_all,
    lease_acquire,
    lease_release,
    lease_renew,
)
from ciyuan.limits.limiter import Lease

SWEEP_INTERVAL_S: Final = 60.0


class MemoryLimiter:
    def __init__(
        self, clock: Clock | None = None, *, sweep_interval_s: float = SWEEP_INTERVAL_S
    ) -> None:
        self._clock = clock or SystemClock()
        self._buckets: dict[tuple[str, str], Tat] = {}
        self._leases: dict[str, dict[str, int]] = {}
        self._sweep_interval_ms = int(sweep_interval_s * 1000)
        self._swept_ms = self._now_ms()

    def _now_ms(self) -> int:
        return self._clock.now_us() // 1000

    def _sweep(self, now_ms: int) -> None:
        """Drop empty buckets and lease sets: O(keys), run once per interval, so amortised."""
        if now_ms - self._swept_ms < self._sweep_interval_ms:
            return
        self._swept_ms = now_ms
        self._buckets = {k: tat for k, tat in self._buckets.items() if tat > Tat(now_ms)}
        self._leases = {
            key: live
            for key, leases in self._leases.items()
            if (live := {i: e for i, e in leases.items() if e > now_ms})
        }

    @property
    def size(self) -> int:
        """Keys held (buckets plus lease sets), for tests and metrics of the sweep."""
        return len(self._buckets) + len(self._leases)

    async def hit(self, key: str, rule: Rule, cost: int = 1) -> Decision:
        (decision,) = await self.hit_all([Charge(key, rule, cost)])
        return decision

    async def hit_all(self, charges: Sequence[Charge]) -> tuple[Decision, ...]:
        now_ms = self._now_ms()
        self._sweep(now_ms)
        names = [(c.key, c.rule.name) for c in charges]
        states = [self._buckets.get(name) for name in names]
        decisions, new_states = gcra_hit_all(states, now_ms, charges)
        for name, tat in zip(names, new_states, strict=True):
            self._store(name, tat)
        return decisions

    def _store(self, name: tuple[str, str], tat: Tat | None) -> None:
        if tat is None:
            self._buckets.pop(name, None)
        else:
            self._buckets[name] = tat

    async def adjust(self, key: str, rule: Rule, delta: int) -> None:
        now_ms = self._now_ms()
        name = (key, rule.name)
        self._store(name, gcra_adjust(self._buckets.get(name), now_ms, rule, delta))

    async def acquire(self, key: str, limit: int, lease_s: float) -> Lease | None:
        now_ms = self._now_ms()
        self._sweep(now_ms)
        lease_id = os.urandom(12).hex()
        leases = lease_acquire(self._leases.get(key, {}), now_ms, limit, _ms(lease_s), lease_id)
        if leases is None:
            return None
        self._leases[key] = leases
        return Lease(key, lease_id, leases[lease_id])

    async def renew(self, lease: Lease, lease_s: float) -> Lease | None:
        if lease.degraded:
            return lease
        now_ms = self._now_ms()
        leases = lease_renew(self._leases.get(lease.key, {}), now_ms, lease.lease_id, _ms(lease_s))
        if leases is None:
            return None
        self._leases[lease.key] = leases
        return Lease(lease.key, lease.lease_id, leases[lease.lease_id])

    async def release(self, lease: Lease) -> None:
        if lease.degraded or lease.key not in self._leases:
            return
        leases = lease_release(self._leases[lease.key], self._now_ms(), lease.lease_id)
        if leases:
            self._leases[lease.key] = leases
        else:
            del self._leases[lease.key]

    async def aclose(self) -> None:
        """Nothing to close; present so every backend has the same lifecycle."""


def _ms(seconds: float) -> int:
    assert seconds > 0
    return max(1, round(seconds * 1000))
