"""The in-memory backend under an injected clock: exact decisions, expiry and the sweep that
makes idle keys vanish. (Its behaviour shared with Redis is in tests/contract/test_limiter.py.)"""

from __future__ import annotations

import pytest

from ciyuan.clock import FixedClock
from ciyuan.limits import Charge, MemoryLimiter, Rule

RPM = Rule("rpm", 2, 60)
TPM = Rule("tpm", 100, 60)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_decisions_follow_the_injected_clock_exactly() -> None:
    clock = FixedClock()
    limiter = MemoryLimiter(clock)
    assert [(await limiter.hit("k", RPM)).remaining for _ in range(2)] == [1, 0]
    refused = await limiter.hit("k", RPM)
    assert (refused.allowed, refused.retry_after_ms) == (False, 30_000)
    clock.advance(30)
    assert (await limiter.hit("k", RPM)).allowed


@pytest.mark.anyio
async def test_a_token_estimate_is_corrected_by_real_usage() -> None:
    clock = FixedClock()
    limiter = MemoryLimiter(clock)
    admitted = await limiter.hit_all([Charge("k", RPM, 1), Charge("k", TPM, 90)])
    assert [d.remaining for d in admitted] == [1, 10]
    await limiter.adjust("k", TPM, -60)  # used 30 of the 90 estimated
    assert (await limiter.hit("k", TPM, 0)).remaining == 70
    await limiter.adjust("k", TPM, 80)  # a stream ran 80 past its estimate: 10 in debt
    refused = await limiter.hit("k", TPM, 1)
    assert (refused.allowed, refused.remaining, refused.retry_after_ms) == (False, 0, 6_600)


@pytest.mark.anyio
async def test_idle_keys_vanish_at_the_sweep() -> None:
    clock = FixedClock()
    limiter = MemoryLimiter(clock, sweep_interval_s=60)
    await limiter.hit("a", RPM)
    lease = await limiter.acquire("b", 1, lease_s=5)
    assert lease is not None and limiter.size == 2
    clock.advance(59)
    await limiter.hit("c", RPM)
    assert limiter.size == 3  # not yet time for a sweep
    clock.advance(1)
    await limiter.hit("c", RPM)  # a's TAT (30 s) and b's lease (5 s) are past: both go
    assert limiter.size == 1
    await limiter.release(lease)  # a lease that vanished releases quietly
    await limiter.aclose()


@pytest.mark.anyio
async def test_a_crashed_holders_slot_comes_back_at_expiry() -> None:
    clock = FixedClock()
    limiter = MemoryLimiter(clock)
    held = await limiter.acquire("k", 1, lease_s=2)
    assert held is not None and await limiter.acquire("k", 1, lease_s=2) is None
    clock.advance(1.5)
    renewed = await limiter.renew(held, lease_s=2)
    assert renewed is not None and renewed.expires_at_ms == held.expires_at_ms + 1500
    clock.advance(2)
    assert await limiter.renew(held, lease_s=2) is None
    assert await limiter.acquire("k", 1, lease_s=2) is not None
