"""Rate limits: requests and model tokens per window (GCRA) and requests in flight (leases).

    algorithm.py  the pure algorithm: Rule, Decision, (state, now, cost) -> (decision, state)
    headers.py    OpenAI's x-ratelimit-* / Anthropic's anthropic-ratelimit-* headers from decisions
    limiter.py    RateLimiter, the one interface of every backend, and Lease
    memory.py     MemoryLimiter: one process (the embedded default)
    redis.py      RedisLimiter: shared by every gateway process, one Lua script per call
    failsafe.py   FailSafeLimiter and FailurePolicy: timeouts and fail open/closed, degraded

``RedisLimiter`` is imported from ``ciyuan.limits.redis`` and not from here, so the embedded
default never imports the Redis client.
"""

from __future__ import annotations

from ciyuan.limits.algorithm import Charge, Decision, Rule
from ciyuan.limits.failsafe import DEFAULT_TIMEOUT_S, FailSafeLimiter, FailurePolicy
from ciyuan.limits.headers import (
    anthropic_ratelimit_headers,
    go_duration,
    openai_ratelimit_headers,
    retry_after_s,
    rfc3339,
)
from ciyuan.limits.limiter import Lease, RateLimiter
from ciyuan.limits.memory import MemoryLimiter

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "Charge",
    "Decision",
    "FailSafeLimiter",
    "FailurePolicy",
    "Lease",
    "MemoryLimiter",
    "RateLimiter",
    "Rule",
    "anthropic_ratelimit_headers",
    "go_duration",
    "openai_ratelimit_headers",
    "retry_after_s",
    "rfc3339",
]
