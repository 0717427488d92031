"""Degradation as a decision: what rate limits do when their backend is down or slow.

``FailSafeLimiter`` wraps a backend (in practice Redis) and bounds every call by ``timeout_s``
(50 ms by default: a limit check must add almost no latency, and a Redis that slow is as good
as down). When the call times out or the backend raises ``Unavailable``, the failure policy
decides: fail open admits (rates protect capacity, and an outage of the limiter should not
become an outage of the gateway), fail closed refuses with a short retry-after. Either way the
decision is marked ``degraded=True``, ``degraded_count`` goes up, and a warning is logged, at
most once per ``log_interval_s`` with the number of degraded calls since the last one, so a
Redis outage at thousands of requests per second does not flood the logs.

Corrections (``adjust``) and releases that fail are dropped after counting: the first only
shifts a bucket by the estimate's error, and a lease expires by itself.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeVar

from ciyuan.errors import Unavailable
from ciyuan.limits.algorithm import Charge, Decision, Rule
from ciyuan.limits.limiter import Lease, RateLimiter

DEFAULT_TIMEOUT_S: Final = 0.05
DEFAULT_LOG_INTERVAL_S: Final = 10.0
DEGRADED_RETRY_AFTER_MS: Final = 1000
"""Retry-after of a fail-closed refusal: short, since the backend may be back any moment."""

logger = logging.getLogger("ciyuan.limits")
T = TypeVar("T")


class _Failed:
    """The backend did not answer: distinct from a ``None`` it may return (no lease)."""


_FAILED: Final = _Failed()


class FailurePolicy(enum.Enum):
    OPEN = "open"
    """Admit while the backend is unavailable."""
    CLOSED = "closed"
    """Refuse while the backend is unavailable."""


class FailSafeLimiter:
    def __init__(
        self,
        inner: RateLimiter,
        policy: FailurePolicy,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        log_interval_s: float = DEFAULT_LOG_INTERVAL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        assert timeout_s > 0
        self.inner = inner
        self.policy = policy
        self.timeout_s = timeout_s
        self.degraded_count = 0
        """Calls answered by the policy instead of the backend since start (for metrics)."""
        self._log_interval_s = log_interval_s
        self._monotonic = monotonic
        self._logged_at: float | None = None
        self._unlogged = 0

    async def _guarded(self, operation: str, step: Callable[[], Awaitable[T]]) -> T | _Failed:
        """The step's result, or ``_FAILED`` after counting and logging a backend failure."""
        try:
            async with asyncio.timeout(self.timeout_s):
                return await step()
        except (Unavailable, TimeoutError) as exc:
            self._record(operation, exc)
            return _FAILED

    def _record(self, operation: str, exc: Exception) -> None:
        self.degraded_count += 1
        self._unlogged += 1
        now = self._monotonic()
        if self._logged_at is not None and now - self._logged_at < self._log_interval_s:
            return
        reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
        logger.warning(
            "rate limiter degraded: %s %s; failing %s (%d degraded calls since the last warning)",
            operation,
            reason,
            self.policy.value,
            self._unlogged,
        )
        self._logged_at = now
        self._unlogged = 0

    def _fallback(self, rule: Rule) -> Decision:
        if self.policy is FailurePolicy.OPEN:
            return Decision(rule, True, rule.limit, 0, 0, at_ms=0, degraded=True)
        return Decision(rule, False, 0, 0, DEGRADED_RETRY_AFTER_MS, at_ms=0, degraded=True)

    async def hit(self, key: str, rule: Rule, cost: int = 1) -> Decision:
        (decision,) = await self.hit_all([Charge(key, rule, cost)])
        return decision

    async def hit_all(self, charges: Sequence[Charge]) -> tuple[Decision, ...]:
        decisions = await self._guarded("hit", lambda: self.inner.hit_all(charges))
        if isinstance(decisions, _Failed):
            return tuple(self._fallback(charge.rule) for charge in charges)
        return decisions

    async def adjust(self, key: str, rule: Rule, delta: int) -> None:
        await self._guarded("adjust", lambda: self.inner.adjust(key, rule, delta))

    async def acquire(self, key: str, limit: int, lease_s: float) -> Lease | None:
        lease = await self._guarded("acquire", lambda: self.inner.acquire(key, limit, lease_s))
        if isinstance(lease, _Failed):
            return self._fallback_lease(key)
        return lease

    async def renew(self, lease: Lease, lease_s: float) -> Lease | None:
        if lease.degraded:
            return lease
        renewed = await self._guarded("renew", lambda: self.inner.renew(lease, lease_s))
        if isinstance(renewed, _Failed):
            return self._fallback_lease(lease.key)
        return renewed

    async def release(self, lease: Lease) -> None:
        if lease.degraded:
            return
        await self._guarded("release", lambda: self.inner.release(lease))

    async def aclose(self) -> None:
        await self.inner.aclose()

    def _fallback_lease(self, key: str) -> Lease | None:
        if self.policy is FailurePolicy.OPEN:
            return Lease(key, "degraded", 0, degraded=True)
        return None
