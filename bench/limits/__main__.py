"""The cost of a rate-limit check, memory vs Redis, with a bare Redis PING in the same run.

    .venv/bin/python -m bench.limits [--redis redis://127.0.0.1:6379/0] [--ops 4000] [--repeat 3]

For one client (sequential awaits) and for 16 concurrent tasks on one event loop, it times:
a bare ``PING`` (the floor of any Redis round trip), ``hit`` of one rule and ``hit_all`` of
three rules (rpm + tpm per key, tpm per account: one Lua script over three keys) on Redis and
in memory. It prints microseconds per check and checks per second, and the ratio to PING, so a
loaded shared machine shifts every row alike. Each figure is the best of ``--repeat`` runs,
with the variants interleaved.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable

import redis.asyncio

from ciyuan.limits import Charge, MemoryLimiter, RateLimiter, Rule
from ciyuan.limits.redis import RedisLimiter

# Limits high enough that every check is admitted: the path the gateway takes most.
RPM = Rule("rpm", 10**9, 60)
TPM = Rule("tpm", 10**9, 60)
THREE = [Charge("key-1", RPM, 1), Charge("key-1", TPM, 700), Charge("account-1", TPM, 700)]

Op = Callable[[], Awaitable[object]]


async def _run(op: Op, ops: int, concurrency: int) -> tuple[float, list[float]]:
    """Wall seconds for ``ops`` calls spread over ``concurrency`` tasks, and each call's time."""
    latencies: list[float] = []

    async def worker(count: int) -> None:
        for _ in range(count):
            start = time.perf_counter()
            await op()
            latencies.append(time.perf_counter() - start)

    share = ops // concurrency
    started = time.perf_counter()
    await asyncio.gather(*(worker(share) for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


async def _bench(
    variants: dict[str, Op], ops: int, repeat: int, concurrency: int
) -> dict[str, tuple[float, float, float]]:
    """Per variant: (best µs per op of wall time, p50 µs, p99 µs of the best run)."""
    best: dict[str, tuple[float, float, float]] = {}
    for op in variants.values():  # warm up: connections, script load, caches
        await _run(op, 200, concurrency)
    for _ in range(repeat):
        for name, op in variants.items():
            wall_s, latencies = await _run(op, ops, concurrency)
            per_op_us = wall_s / (ops // concurrency * concurrency) * 1e6
            if name not in best or per_op_us < best[name][0]:
                cuts = statistics.quantiles(latencies, n=100)
                best[name] = (per_op_us, cuts[49] * 1e6, cuts[98] * 1e6)
    return best


def _print(title: str, results: dict[str, tuple[float, float, float]]) -> None:
    ping_us = results["redis PING"][0]
    print(f"\n{title}")
    print(f"  {'':<28}{'µs/op':>9}{'ops/s':>10}{'p50 µs':>9}{'p99 µs':>9}{'x PING':>8}")
    for name, (per_op_us, p50_us, p99_us) in results.items():
        print(
            f"  {name:<28}{per_op_us:>9.1f}{1e6 / per_op_us:>10.0f}"
            f"{p50_us:>9.1f}{p99_us:>9.1f}{per_op_us / ping_us:>8.2f}"
        )


async def main_async(url: str, ops: int, repeat: int) -> None:
    prefix = f"bench:limits:{secrets.token_hex(4)}:"
    client = redis.asyncio.Redis.from_url(url)
    shared: RateLimiter = RedisLimiter(client, prefix=prefix)
    memory: RateLimiter = MemoryLimiter()
    variants: dict[str, Op] = {
        "redis PING": client.ping,
        "redis hit (1 rule)": lambda: shared.hit("key-1", RPM),
        "redis hit_all (3 rules)": lambda: shared.hit_all(THREE),
        "memory hit (1 rule)": lambda: memory.hit("key-1", RPM),
        "memory hit_all (3 rules)": lambda: memory.hit_all(THREE),
    }
    try:
        for concurrency in (1, 16):
            results = await _bench(variants, ops, repeat, concurrency)
            clients = "1 client" if concurrency == 1 else f"{concurrency} concurrent tasks"
            _print(f"{clients}, {ops} checks, best of {repeat}:", results)
    finally:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.limits")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL")
    parser.add_argument("--ops", type=int, default=4000, help="checks per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best is kept)")
    args = parser.parse_args()
    asyncio.run(main_async(args.redis, args.ops, args.repeat))


if __name__ == "__main__":
    main()
