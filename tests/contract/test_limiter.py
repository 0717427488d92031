"""One rate-limiter contract, run on every backend: memory and a real Redis.

The shared tests use windows long enough that the few milliseconds a test takes refill less
than one unit, so counts are exact on Redis's own clock too; waits are checked as ranges.
Redis-only tests then check what only Redis has: keys that expire, agreement with the pure
algorithm at Redis's clock, and several real processes hammering one key. The degraded tests
point the Redis backend at a closed port and at a server that never answers.

Each test uses its own key prefix and deletes its keys afterwards. Redis tests skip with a
reason when Redis is unreachable, and fail when ``CI`` is set (as in tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import random
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from multiprocessing.sharedctypes import Synchronized
from typing import Any

import pytest
import redis
import redis.asyncio

from ciyuan.errors import Unavailable
from ciyuan.limits import (
    Charge,
    FailSafeLimiter,
    FailurePolicy,
    MemoryLimiter,
    RateLimiter,
    Rule,
)
from ciyuan.limits.algorithm import Tat, gcra_adjust, gcra_hit, gcra_hit_all
from ciyuan.limits.redis import RedisLimiter
from tests.conftest import REDIS_URL, free_port

IN_CI = bool(os.environ.get("CI"))
RPH3 = Rule("rph", 3, 3600)  # one request per 1 200 000 ms: nothing refills during a test
TPH1000 = Rule("tph", 1000, 3600)  # one token per 3 600 ms


def _unavailable(what: str, error: Exception) -> None:
    message = f"{what} is not reachable ({type(error).__name__}: {error})"
    if IN_CI:
        pytest.fail(message + " — CI must run these tests, not skip them", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_server() -> str:
    try:
        with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2) as client:
            client.ping()
    except redis.RedisError as error:
        _unavailable("Redis", error)
    return REDIS_URL


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own, so tests never see each other's keys."""
    return f"test:limits:{secrets.token_hex(6)}:"


def _delete_keys(url: str, prefix: str) -> None:
    with redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)


@pytest.fixture
def redis_prefix(redis_server: str, prefix: str) -> Iterator[str]:
    yield prefix
    _delete_keys(redis_server, prefix)


@pytest.fixture
async def redis_limiter(redis_server: str, redis_prefix: str) -> AsyncIterator[RedisLimiter]:
    limiter = RedisLimiter.from_url(redis_server, prefix=redis_prefix)
    yield limiter
    await limiter.aclose()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def limiter(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[RateLimiter]:
    if request.param == "memory":
        yield MemoryLimiter()
        return
    url = request.getfixturevalue("redis_server")  # a sync fixture: skips or fails here
    redis_limiter = RedisLimiter.from_url(url, prefix=prefix)
    yield redis_limiter
    await redis_limiter.aclose()
    _delete_keys(url, prefix)


pytestmark = pytest.mark.anyio


async def test_a_fresh_key_spends_its_burst_then_is_refused(limiter: RateLimiter) -> None:
    decisions = [await limiter.hit("k", RPH3) for _ in range(4)]
    assert [(d.allowed, d.remaining) for d in decisions] == [
        (True, 2),
        (True, 1),
        (True, 0),
        (False, 0),
    ]
    refused = decisions[-1]
    assert refused.retry_after_ms is not None
    assert 1_200_000 - 1000 < refused.retry_after_ms <= 1_200_000
    assert 3_600_000 - 1000 < refused.reset_ms <= 3_600_000
    assert not any(d.degraded for d in decisions)


async def test_keys_and_rules_are_independent(limiter: RateLimiter) -> None:
    for _ in range(3):
        await limiter.hit("a", RPH3)
    assert not (await limiter.hit("a", RPH3)).allowed
    assert (await limiter.hit("b", RPH3)).remaining == 2
    assert (await limiter.hit("a", Rule("rpd", 3, 86_400))).remaining == 2


async def test_all_rules_are_charged_or_none(limiter: RateLimiter) -> None:
    charges = [Charge("key-1", RPH3, 1), Charge("account-1", TPH1000, 700)]
    first = await limiter.hit_all(charges)
    assert [(d.allowed, d.remaining) for d in first] == [(True, 2), (True, 300)]
    second = await limiter.hit_all(charges)  # 700 more tokens do not fit: nothing is charged
    assert [(d.allowed, d.remaining) for d in second] == [(True, 2), (False, 300)]
    assert (await limiter.hit("key-1", RPH3)).remaining == 1


async def test_no_rules_means_admitted(limiter: RateLimiter) -> None:
    assert await limiter.hit_all([]) == ()


async def test_a_cost_above_the_limit_is_refused_for_good(limiter: RateLimiter) -> None:
    decision = await limiter.hit("k", TPH1000, 1001)
    assert (decision.allowed, decision.retry_after_ms, decision.remaining) == (False, None, 1000)


async def test_real_usage_corrects_the_estimate_both_ways(limiter: RateLimiter) -> None:
    assert (await limiter.hit("k", TPH1000, 800)).remaining == 200
    await limiter.adjust("k", TPH1000, -500)  # used 300 of 800
    assert (await limiter.hit("k", TPH1000, 0)).remaining == 700
    await limiter.adjust("k", TPH1000, -(10**9))  # never below an empty bucket
    assert (await limiter.hit("k", TPH1000, 0)).remaining == 1000
    assert (await limiter.hit("k", TPH1000, 1000)).allowed
    await limiter.adjust("k", TPH1000, 250)  # a stream ran 250 past its estimate
    refused = await limiter.hit("k", TPH1000, 1)
    assert refused.retry_after_ms is not None
    assert 251 * 3600 - 1000 < refused.retry_after_ms <= 251 * 3600


async def test_capacity_comes_back_after_retry_after(limiter: RateLimiter) -> None:
    rule = Rule("rps", 10, 1)  # one request per 100 ms
    admitted = [(await limiter.hit("k", rule)).allowed for _ in range(10)]
    refused = await limiter.hit("k", rule)
    assert all(admitted) and not refused.allowed
    assert refused.retry_after_s is not None and 0 < refused.retry_after_s <= 0.1
    await asyncio.sleep(refused.retry_after_s + 0.01)
    assert (await limiter.hit("k", rule)).allowed


async def test_leases_bound_the_requests_in_flight(limiter: RateLimiter) -> None:
    first = await limiter.acquire("k", 2, lease_s=60)
    second = await limiter.acquire("k", 2, lease_s=60)
    assert first is not None and second is not None and first.lease_id != second.lease_id
    assert await limiter.acquire("k", 2, lease_s=60) is None
    await limiter.release(first)
    await limiter.release(first)  # twice changes nothing
    third = await limiter.acquire("k", 2, lease_s=60)
    assert third is not None and await limiter.acquire("k", 2, lease_s=60) is None


async def test_a_lease_never_released_comes_back_at_expiry(limiter: RateLimiter) -> None:
    crashed = await limiter.acquire("k", 1, lease_s=0.05)
    assert crashed is not None and await limiter.acquire("k", 1, lease_s=0.05) is None
    await asyncio.sleep(0.08)
    assert await limiter.renew(crashed, lease_s=1) is None
    assert await limiter.acquire("k", 1, lease_s=1) is not None


async def test_a_renewed_lease_keeps_its_slot(limiter: RateLimiter) -> None:
    held = await limiter.acquire("k", 1, lease_s=0.1)
    assert held is not None
    renewed = await limiter.renew(held, lease_s=60)
    assert renewed is not None and renewed.expires_at_ms >= held.expires_at_ms
    await asyncio.sleep(0.15)
    assert await limiter.acquire("k", 1, lease_s=1) is None


# Redis only.


@pytest.mark.redis
async def test_redis_keys_expire_when_their_state_is_empty_again(
    redis_limiter: RedisLimiter, redis_prefix: str
) -> None:
    prefix = redis_prefix
    async with redis.asyncio.Redis.from_url(REDIS_URL) as client:
        decision = await redis_limiter.hit("k", TPH1000, 10)
        ttl_ms = await client.pttl(f"{prefix}tph:k")
        assert 0 < ttl_ms <= decision.reset_ms == 36_000
        await redis_limiter.adjust("k", TPH1000, -10)
        assert await client.exists(f"{prefix}tph:k") == 0
        lease = await redis_limiter.acquire("k", 3, lease_s=30)
        assert lease is not None
        assert 0 < await client.pttl(f"{prefix}inflight:k") <= 30_000


@pytest.mark.redis
async def test_redis_decides_exactly_as_the_pure_algorithm_at_redis_time(
    redis_limiter: RedisLimiter,
) -> None:
    """Random costs against rules whose arithmetic is hardest for Lua's doubles (an interval of
    a fraction of a millisecond, the largest rule allowed); each Redis decision carries Redis's
    clock, so the pure algorithm can replay it and must agree to the last field."""
    rng = random.Random(7)
    rules = [Rule("r7", 7, 60), Rule("tpd", 104_249_991, 86_400), Rule("rps", 3, 1)]
    for rule in rules:
        state: Tat | None = None
        for _ in range(60):
            cost = rng.choice([0, 1, rng.randint(0, rule.limit), rule.limit, rule.limit + 1])
            actual = await redis_limiter.hit("k", rule, cost)
            expected, state = gcra_hit(state, actual.at_ms, rule, cost)
            assert actual == expected


@pytest.mark.redis
async def test_redis_charges_all_rules_or_none_exactly_as_the_pure_algorithm(
    redis_limiter: RedisLimiter,
) -> None:
    rng = random.Random(11)
    rules = [Rule("r7", 7, 60), Rule("tpd", 104_249_991, 86_400), Rule("rps", 3, 1)]
    states: dict[tuple[str, str], Tat | None] = {}
    for _ in range(80):
        charges = [
            Charge(key, rule, rng.randint(0, rule.limit // 2))
            for rule in rules
            for key in rng.sample(["key", "account"], rng.randint(0, 2))
        ] or [Charge("key", rules[0], 1)]
        actual = await redis_limiter.hit_all(charges)
        names = [(c.key, c.rule.name) for c in charges]
        expected, new_states = gcra_hit_all(
            [states.get(name) for name in names], actual[0].at_ms, charges
        )
        assert actual == expected
        states.update(zip(names, new_states, strict=True))


@pytest.mark.redis
async def test_redis_adjusts_the_state_exactly_as_the_pure_algorithm(
    redis_limiter: RedisLimiter, redis_prefix: str
) -> None:
    """Refunds and overcharges small enough that no clamp applies, so the stored state does
    not depend on the instant of the adjustment and can be compared field by field."""
    async with redis.asyncio.Redis.from_url(REDIS_URL) as client:
        for rule, cost, deltas in [
            (Rule("tpd", 104_249_991, 86_400), 90_000_000, [-12_345_677, 3_333_333, -1]),
            (Rule("r7", 7, 60), 7, [-3, 1, -2]),
        ]:
            decision = await redis_limiter.hit("k", rule, cost)
            _, state = gcra_hit(None, decision.at_ms, rule, cost)
            for delta in deltas:
                await redis_limiter.adjust("k", rule, delta)
                state = gcra_adjust(state, decision.at_ms, rule, delta)
                ms, frac = await client.hmget(f"{redis_prefix}{rule.name}:k", ["t", "f"])
                assert isinstance(ms, bytes) and isinstance(frac, bytes)
                assert state == Tat(int(ms), int(frac))


def _hammer(url: str, prefix: str, rule: Rule, ready: Any, duration_s: float) -> list[int]:
    """One process: hit one shared key as fast as it can; the Redis times of its admissions.

    It starts when every process has started (``ready``, a shared barrier): spawning takes
    seconds on a busy machine, and a fixed start time let late processes miss the window."""
    ready.wait(60)
    start_at = time.time()

    async def run() -> list[int]:
        limiter = RedisLimiter.from_url(url, prefix=prefix)
        admitted: list[int] = []
        try:
            await asyncio.sleep(max(0.0, start_at - time.time()))
            while time.time() < start_at + duration_s:
                decision = await limiter.hit("shared", rule)
                if decision.allowed:
                    admitted.append(decision.at_ms)
        finally:
            await limiter.aclose()
        return admitted

    return asyncio.run(run())


@pytest.mark.redis
@pytest.mark.slow
def test_processes_hammering_one_key_never_admit_more_than_the_rate(
    redis_server: str, redis_prefix: str
) -> None:
    """Four processes, one key, 20 per second: over any span of admissions, the count is at
    most the burst plus the rate times the span (so at most 2 x 20 in any one second), and the
    burst itself was admitted. Times are Redis's, as returned with each decision."""
    rule = Rule("rps", 20, 1)
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(4) as pool:
        ready = manager.Barrier(4)
        runs = pool.starmap(_hammer, [(redis_server, redis_prefix, rule, ready, 1.5)] * 4)
    times = sorted(t for run in runs for t in run)
    assert len(times) >= rule.limit
    for i in range(len(times)):
        for j in range(i, len(times)):
            count = j - i + 1
            # GCRA with cost 1: (count - limit) * T <= t_j - t_i, with T = window / limit.
            assert (count - rule.limit) * rule.window_ms <= (times[j] - times[i]) * rule.limit


def _hold_leases(
    url: str,
    prefix: str,
    ready: Any,
    in_flight: Synchronized[int],
    peak: Synchronized[int],
    granted: Synchronized[int],
) -> None:
    ready.wait(60)  # every process has started: see _hammer
    start_at = time.time()

    async def run() -> None:
        limiter = RedisLimiter.from_url(url, prefix=prefix)
        try:
            await asyncio.sleep(max(0.0, start_at - time.time()))
            while time.time() < start_at + 1.0:
                lease = await limiter.acquire("shared", 3, lease_s=10)
                if lease is None:
                    continue
                with in_flight.get_lock():  # counted after acquire and before release, so
                    in_flight.value += 1  # this never exceeds the true number of holders
                    peak.value = max(peak.value, in_flight.value)
                    granted.value += 1
                await asyncio.sleep(0.01)
                with in_flight.get_lock():
                    in_flight.value -= 1
                await limiter.release(lease)
        finally:
            await limiter.aclose()

    asyncio.run(run())


@pytest.mark.redis
@pytest.mark.slow
def test_processes_sharing_a_concurrency_limit_never_hold_more_slots(
    redis_server: str, redis_prefix: str
) -> None:
    context = multiprocessing.get_context("spawn")
    in_flight, peak, granted = (context.Value("i", 0) for _ in range(3))
    ready = context.Barrier(4)
    workers = [
        context.Process(
            target=_hold_leases,
            args=(redis_server, redis_prefix, ready, in_flight, peak, granted),
        )
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert [w.exitcode for w in workers] == [0] * 4
    assert 1 <= peak.value <= 3 and granted.value > 3


# Degraded: the backend is down or too slow, and the policy decides.


async def test_an_unreachable_redis_raises_unavailable_at_the_seam() -> None:
    limiter = RedisLimiter.from_url(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(Unavailable) as caught:
            await limiter.hit("k", RPH3)
        assert isinstance(caught.value.__cause__, redis.ConnectionError)
    finally:
        await limiter.aclose()


@pytest.mark.parametrize("policy", [FailurePolicy.OPEN, FailurePolicy.CLOSED])
async def test_an_unreachable_redis_fails_as_configured_and_says_so(
    policy: FailurePolicy, caplog: pytest.LogCaptureFixture
) -> None:
    clock = [0.0]
    limiter = FailSafeLimiter(
        RedisLimiter.from_url(f"redis://127.0.0.1:{free_port()}/0"),
        policy,
        log_interval_s=10,
        monotonic=lambda: clock[0],
    )
    try:
        with caplog.at_level(logging.WARNING, logger="ciyuan.limits"):
            decisions = await limiter.hit_all([Charge("k", RPH3, 1), Charge("k", TPH1000, 5)])
            lease = await limiter.acquire("k", 1, lease_s=1)
            await limiter.adjust("k", TPH1000, -5)
            clock[0] = 10.0
            await limiter.hit("k", RPH3)
    finally:
        await limiter.aclose()
    opened = policy is FailurePolicy.OPEN
    assert [(d.allowed, d.degraded) for d in decisions] == [(opened, True)] * 2
    if opened:
        assert lease is not None and lease.degraded
        await limiter.release(lease)  # nothing to give back
    else:
        assert lease is None
        assert [d.retry_after_ms for d in decisions] == [1000, 1000]
    assert limiter.degraded_count == 4
    # Loud but not flooding: one warning, then one per interval with the count in between.
    messages = [r.getMessage() for r in caplog.records if r.name == "ciyuan.limits"]
    assert len(messages) == 2
    assert f"failing {policy.value}" in messages[0] and "(1 degraded calls" in messages[0]
    assert "(3 degraded calls" in messages[1]


async def test_a_redis_that_never_answers_times_out_into_a_degraded_decision() -> None:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts the connection, reads, never answers, until closed
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    limiter = FailSafeLimiter(
        RedisLimiter.from_url(f"redis://127.0.0.1:{port}/0"), FailurePolicy.CLOSED
    )
    try:
        started = time.monotonic()
        decision = await limiter.hit("k", RPH3)
        elapsed_s = time.monotonic() - started
    finally:
        await limiter.aclose()
        server.close()
        await server.wait_closed()
    assert (decision.allowed, decision.degraded) == (False, True)
    assert elapsed_s < 1.0  # the 50 ms budget, not the client's 1 s socket timeout
    assert limiter.degraded_count == 1
