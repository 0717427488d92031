"""Rate limits shared by every gateway process, in Redis: each method is one Lua script call.

Atomicity lives in Redis, never in a process-local lock: a script runs alone on the server,
so the check and the charge of every rule of a request happen in one step whatever the number
of gateway processes. Time is Redis's ``TIME``, read inside the script, so processes whose
clocks disagree still share one timeline. Every key carries a TTL that ends when its state
becomes the same as no state, so idle keys vanish.

Scripts live in ``scripts/*.lua`` and are registered once per limiter (``register_script``
sends EVALSHA, and loads the script only when the server lacks it, e.g. after a restart).

Keys: ``{prefix}{rule name}:{key}`` for a GCRA bucket and ``{prefix}inflight:{key}`` for a
lease set. ``hit_all`` touches several keys in one script, which Redis Cluster allows only
within one hash slot; this backend targets a single Redis (or a primary with replicas).

Every Redis failure is translated here, at the seam, into ``ciyuan.errors.Unavailable``
(chained); ``failsafe.FailSafeLimiter`` turns it into a decision by policy.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from functools import cache
from importlib import resources
from typing import Any, Final, TypeVar

import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ciyuan.errors import Unavailable
from ciyuan.limits.algorithm import (
    DEBT_WINDOWS_MAX,
    REFUND_UNITS_MAX_WINDOWS,
    Charge,
    Decision,
    Rule,
)
from ciyuan.limits.limiter import Lease

DEFAULT_PREFIX: Final = "ciyuan:rl:"
DEFAULT_SOCKET_TIMEOUT_S: Final = 1.0
"""The client's own bound on a stuck socket; the per-call budget is FailSafeLimiter's."""
RETRIES: Final = 1
"""One immediate retry on a connection error: the first command on a pooled connection that
died with a Redis restart fails, and the retry gets a fresh one. A retry whose first attempt
did run charges twice (refusing sooner) or leaks a lease until it expires: bounded either way."""

T = TypeVar("T")


@cache
def _script(name: str) -> str:
    return resources.files("ciyuan.limits").joinpath("scripts", name).read_text("utf-8")


class RedisLimiter:
    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        owns_client: bool = False,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._owns_client = owns_client
        # register_script does no I/O: it computes the SHA; the first call loads the script.
        self._hit_all = client.register_script(_script("gcra_hit.lua"))
        self._adjust = client.register_script(_script("gcra_adjust.lua"))
        self._acquire = client.register_script(_script("lease_acquire.lua"))
        self._renew = client.register_script(_script("lease_renew.lua"))

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        socket_timeout_s: float = DEFAULT_SOCKET_TIMEOUT_S,
    ) -> RedisLimiter:
        """A limiter that owns its client: ``aclose`` closes it. Opens no connection yet."""
        client = redis.asyncio.Redis.from_url(
            url,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
            retry=Retry(NoBackoff(), RETRIES),
        )
        return cls(client, prefix=prefix, owns_client=True)

    def _bucket_key(self, key: str, rule: Rule) -> str:
        return f"{self._prefix}{rule.name}:{key}"

    def _lease_key(self, key: str) -> str:
        return f"{self._prefix}inflight:{key}"

    async def _call(self, operation: str, step: Callable[[], Awaitable[T]]) -> T:
        try:
            return await step()
        except redis.exceptions.RedisError as exc:
            # Connection refused, timeouts, LOADING, READONLY, OOM: all mean "no limiter now".
            raise Unavailable(f"rate limiter {operation} failed: {type(exc).__name__}") from exc

    async def hit(self, key: str, rule: Rule, cost: int = 1) -> Decision:
        (decision,) = await self.hit_all([Charge(key, rule, cost)])
        return decision

    async def hit_all(self, charges: Sequence[Charge]) -> tuple[Decision, ...]:
        if not charges:
            return ()  # no rule configured: admitted, as in memory, without a round trip
        assert all(c.cost >= 0 for c in charges)
        assert len({(c.key, c.rule.name) for c in charges}) == len(charges), "duplicate charge"
        keys = [self._bucket_key(c.key, c.rule) for c in charges]
        args: list[int] = []
        for charge in charges:
            args += [charge.rule.limit, charge.rule.window_ms, charge.cost]
        reply: list[int] = await self._call("hit", lambda: self._hit_all(keys=keys, args=args))
        now_ms = int(reply[0])
        decisions = []
        for index, charge in enumerate(charges):
            allowed, remaining, reset_ms, retry_ms = (int(v) for v in reply[2 + 4 * index :][:4])
            decisions.append(
                Decision(
                    rule=charge.rule,
                    allowed=bool(allowed),
                    remaining=remaining,
                    reset_ms=reset_ms,
                    retry_after_ms=None if retry_ms < 0 else retry_ms,
                    at_ms=now_ms,
                )
            )
        return tuple(decisions)

    async def adjust(self, key: str, rule: Rule, delta: int) -> None:
        args: list[int] = [
            rule.limit,
            rule.window_ms,
            delta,
            REFUND_UNITS_MAX_WINDOWS * rule.limit,
            DEBT_WINDOWS_MAX,
        ]
        bucket_key = self._bucket_key(key, rule)
        await self._call("adjust", lambda: self._adjust(keys=[bucket_key], args=args))

    async def acquire(self, key: str, limit: int, lease_s: float) -> Lease | None:
        assert limit >= 1
        lease_id = os.urandom(12).hex()
        lease_key = self._lease_key(key)
        args: list[int | str] = [limit, _ms(lease_s), lease_id]
        reply: list[int] = await self._call(
            "acquire", lambda: self._acquire(keys=[lease_key], args=args)
        )
        acquired, expires_at_ms = (int(v) for v in reply)
        return Lease(key, lease_id, expires_at_ms) if acquired else None

    async def renew(self, lease: Lease, lease_s: float) -> Lease | None:
        if lease.degraded:
            return lease
        lease_key = self._lease_key(lease.key)
        args: list[int | str] = [_ms(lease_s), lease.lease_id]
        reply: list[int] = await self._call(
            "renew", lambda: self._renew(keys=[lease_key], args=args)
        )
        renewed, expires_at_ms = (int(v) for v in reply)
        return Lease(lease.key, lease.lease_id, expires_at_ms) if renewed else None

    async def release(self, lease: Lease) -> None:
        if lease.degraded:
            return
        lease_key = self._lease_key(lease.key)
        # One ZREM is atomic on its own; the set's TTL still bounds an emptied key's life.
        zrem: Callable[[], Awaitable[Any]] = lambda: self._client.zrem(lease_key, lease.lease_id)  # noqa: E731
        await self._call("release", zrem)

    async def ping(self) -> None:
        """One bare round trip (PING), for readiness checks and as the benchmark's yardstick."""
        await self._call("ping", self._client.ping)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def _ms(seconds: float) -> int:
    assert seconds > 0
    return max(1, round(seconds * 1000))
