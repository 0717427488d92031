"""The one interface every rate-limit backend implements, and the lease it hands out.

Backends: ``memory.MemoryLimiter`` (one process, the embedded default) and
``redis.RedisLimiter`` (shared by every gateway process); ``failsafe.FailSafeLimiter`` wraps
either and applies the failure policy. Each method is one atomic step in the backend, never a
read-modify-write in the caller, so N processes sharing Redis cannot over-admit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ciyuan.limits.algorithm import Charge, Decision, Rule


@dataclass(frozen=True, slots=True)
class Lease:
    """One in-flight slot under ``key``, held until released or until ``expires_at_ms``
    (backend clock). A degraded lease was granted by the fail-open policy without the backend;
    releasing it does nothing."""

    key: str
    lease_id: str
    expires_at_ms: int
    degraded: bool = False


class RateLimiter(Protocol):
    async def hit(self, key: str, rule: Rule, cost: int = 1) -> Decision:
        """Check ``rule`` for ``cost`` units under ``key`` and charge it if allowed."""
        ...

    async def hit_all(self, charges: Sequence[Charge]) -> tuple[Decision, ...]:
        """Admit only if every charge's rule allows, then charge all: one atomic step.

        The request is admitted when every returned decision is allowed."""
        ...

    async def adjust(self, key: str, rule: Rule, delta: int) -> None:
        """Correct an admission estimate with real usage: refund (< 0) or charge (> 0)."""
        ...

    async def acquire(self, key: str, limit: int, lease_s: float) -> Lease | None:
        """A slot if fewer than ``limit`` leases under ``key`` are live, else ``None``."""
        ...

    async def renew(self, lease: Lease, lease_s: float) -> Lease | None:
        """Extend a live lease to ``lease_s`` from now (long streams); ``None`` if it expired."""
        ...

    async def release(self, lease: Lease) -> None:
        """Give the slot back; releasing twice or after expiry changes nothing."""
        ...

    async def aclose(self) -> None:
        """Close what the backend opened (connections); the limiter is unusable after."""
        ...
