"""Scale-out on PostgreSQL + Redis: throughput with 1, 2 and 3 gateway processes, the cost of a
rate-limit check (Redis vs memory), and how fast one hot account's ledger can go.

    .venv/bin/python -m bench.scale [--duration 8] [--concurrency 32] [--redis URL] [--pg URL]

Everything runs as real processes on this machine: ``ciyuan demo-upstream``, N ``ciyuan serve``
on one PostgreSQL schema and one Redis (rate limits on, so every request pays one Redis
``hit_all``), and a closed-loop aiohttp load generator in this process spreading requests over
the gateways round-robin, over 64 funded accounts (spend does not queue on one balance row).
On a small machine the load generator, the gateways, PostgreSQL and Redis share the same
cores: the figures say what this box does, not what the design's ceiling is.

The ledger section calls the PostgreSQL store directly from threads (no HTTP), reserve then
settle, on one account and on many: each pair is two transactions, and both lock the account
row and then the global chain-head row, so one hot account is bounded by that serial section.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import quote

import aiohttp
import psycopg

from ciyuan import apikeys
from ciyuan.clock import SystemClock
from ciyuan.limits import Charge, MemoryLimiter, Rule
from ciyuan.limits.redis import RedisLimiter
from ciyuan.metering.pipeline import Metering, MeteringPolicy
from ciyuan.pricing.catalog import Catalog
from ciyuan.pricing.money import Amount
from ciyuan.pricing.usage import Usage
from ciyuan.store import open_store

CIYUAN = [sys.executable, "-m", "ciyuan.cli.__main__"]
ACCOUNTS = 64
BODY = (
    b'{"model":"gpt-4o-mini","max_tokens":16,'
    b'"messages":[{"role":"user","content":"Say hello to the benchmark."}]}'
)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIYUAN_")}
    env.update(extra)
    return env


def _wait_log(log: Path, text: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"{text!r} not in {log}:\n{log.read_text(errors='replace')}")


@contextmanager
def _process(args: list[str], env: dict[str, str], log: Path, ready: str) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_log(log, ready, proc)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def _schema(pg_url: str) -> Iterator[str]:
    schema = f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in pg_url else "?"
    try:
        yield f"{pg_url}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _fund(db_url: str, accounts: int) -> list[str]:
    store = open_store(db_url)
    keys = []
    try:
        for index in range(accounts):
            account = store.create_account(f"bench-{index}")
            store.grant(account.id, Amount.parse("1000000"))
            new = apikeys.generate()
            store.create_api_key(account.id, new.prefix, new.hash_hex, "bench")
            keys.append(new.secret.reveal())
    finally:
        store.close()
    return keys


async def _load(
    bases: list[str], keys: list[str], concurrency: int, duration_s: float
) -> dict[str, float]:
    """Closed loop: ``concurrency`` workers, each sends, waits for the whole answer, repeats."""
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(index: int, until: float, record: bool) -> None:
            nonlocal errors
            step = index
            while time.perf_counter() < until:
                url = f"{bases[step % len(bases)]}/v1/chat/completions"
                headers = {
                    "authorization": f"Bearer {keys[step % len(keys)]}",
                    "content-type": "application/json",
                }
                step += concurrency
                started = time.perf_counter()
                async with session.post(url, data=BODY, headers=headers) as response:
                    await response.read()
                    ok = response.status == 200
                if record:
                    if ok:
                        latencies.append(time.perf_counter() - started)
                    else:
                        errors += 1

        warm_until = time.perf_counter() + 1.5
        await asyncio.gather(*(worker(i, warm_until, False) for i in range(concurrency)))
        started = time.perf_counter()
        until = started + duration_s
        await asyncio.gather(*(worker(i, until, True) for i in range(concurrency)))
        wall_s = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": len(latencies) / wall_s,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else float("nan"),
        "errors": errors,
    }


def throughput(args: argparse.Namespace, workdir: Path) -> list[tuple[int, dict[str, float]]]:
    demo_port = _free_port()
    demo_log = workdir / "demo.log"
    results = []
    with (
        _process(
            [*CIYUAN, "demo-upstream", "--port", str(demo_port)], _env(), demo_log, "listening"
        ),
        _schema(args.pg) as db_url,
    ):
        keys = _fund(db_url, ACCOUNTS)
        upstreams = (
            f'[{{"name":"demo","kind":"demo","base_url":"http://127.0.0.1:{demo_port}/v1"}}]'
        )
        for count in (1, 2, 3):
            ports = [_free_port() for _ in range(count)]
            env = _env(
                CIYUAN_DB=db_url,
                CIYUAN_REDIS=args.redis,
                CIYUAN_UPSTREAMS=upstreams,
                CIYUAN_RATE_RPM_DEFAULT="100000000",
                CIYUAN_RATE_TPM_DEFAULT="1000000000",
            )
            with ExitStack() as stack:
                for index, port in enumerate(ports):
                    stack.enter_context(
                        _process(
                            [*CIYUAN, "serve", "--port", str(port)],
                            env,
                            workdir / f"gw-{count}-{index}.log",
                            "Ciyuan gateway listening on",
                        )
                    )
                bases = [f"http://127.0.0.1:{port}" for port in ports]
                figures = asyncio.run(_load(bases, keys, args.concurrency, args.duration))
            results.append((count, figures))
            print(
                f"  {count} gateway(s): {figures['rps']:8.0f} req/s   "
                f"p50 {figures['p50_ms']:6.1f} ms   p99 {figures['p99_ms']:6.1f} ms   "
                f"errors {figures['errors']:.0f}",
                flush=True,
            )
    return results


def contextlib_exit_stack() -> ExitStack:
    from contextlib import ExitStack

    return ExitStack()


async def limit_check_cost(redis_url: str, ops: int) -> dict[str, float]:
    """Microseconds per ``hit_all`` of rpm + tpm per key and tpm per account, and a PING."""
    rpm, tpm = Rule("rpm", 10**9, 60), Rule("tpm", 10**9, 60)
    tag = secrets.token_hex(4)
    charges = [Charge(f"k{tag}", rpm, 1), Charge(f"k{tag}", tpm, 700), Charge(f"a{tag}", tpm, 700)]
    memory = MemoryLimiter()
    redis_limiter = RedisLimiter.from_url(redis_url, prefix=f"bench:{tag}:")
    out: dict[str, float] = {}
    try:
        for name, op in (
            ("memory hit_all", lambda: memory.hit_all(charges)),
            ("redis PING", redis_limiter.ping),
            ("redis hit_all", lambda: redis_limiter.hit_all(charges)),
        ):
            for _ in range(200):
                await op()
            best = float("inf")
            for _ in range(3):
                started = time.perf_counter()
                for _ in range(ops):
                    await op()
                best = min(best, (time.perf_counter() - started) / ops)
            out[name] = best * 1e6
    finally:
        await redis_limiter.aclose()
    return out


def hot_account(pg_url: str, threads: int, duration_s: float, accounts: int) -> float:
    """Reserve + settle pairs per second through the PostgreSQL store, ``threads`` at once,
    spread over ``accounts`` accounts (1: the hot-account case)."""
    with _schema(pg_url) as db_url:
        store = open_store(db_url)
        try:
            records = []
            for index in range(accounts):
                account = store.create_account(f"hot-{index}")
                store.grant(account.id, Amount.parse("1000000"))
                new = apikeys.generate()
                store.create_api_key(account.id, new.prefix, new.hash_hex, "hot")
                record = store.find_api_key(new.prefix)
                assert record is not None
                records.append(record)
            catalog = Catalog.load()
            price = catalog.price_for("gpt-4o-mini")
            metering = Metering(
                store,
                catalog,
                MeteringPolicy(900, 16, 5, False),
                SystemClock(),
            )
            done = [0] * threads
            until = time.perf_counter() + duration_s

            def worker(index: int) -> None:
                record = records[index % len(records)]
                while time.perf_counter() < until:
                    ticket = metering.admit(
                        record,
                        api="chat",
                        model="gpt-4o-mini",
                        upstream="bench",
                        prompt_tokens=12,
                        output_tokens_max=16,
                        price=price,
                    )
                    metering.settle(
                        ticket, Usage(input_tokens=12, output_tokens=9), usage_source="reported"
                    )
                    done[index] += 1

            started = time.perf_counter()
            pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
            for thread in pool:
                thread.start()
            for thread in pool:
                thread.join()
            return sum(done) / (time.perf_counter() - started)
        finally:
            store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--redis", default=os.environ.get("CIYUAN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument(
        "--pg",
        default=os.environ.get("CIYUAN_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--ops", type=int, default=3000)
    args = parser.parse_args()
    print(
        f"bench.scale on {os.cpu_count()} cores; PostgreSQL {args.pg.split('@')[-1]}, "
        f"Redis {args.redis.split('@')[-1]}"
    )

    print("\nrate-limit check (hit_all of 3 rules, one client, best of 3):")
    costs = asyncio.run(limit_check_cost(args.redis, args.ops))
    for name, us in costs.items():
        print(f"  {name:16s} {us:8.1f} µs   {1e6 / us:10.0f} /s")
    print(
        f"  Redis costs {costs['redis hit_all'] / costs['memory hit_all']:.0f}× memory; "
        f"{costs['redis hit_all'] - costs['redis PING']:.1f} µs above a bare PING"
    )

    print("\nledger on PostgreSQL, reserve + settle pairs/s (store called directly, 8 threads):")
    for accounts in (1, 16):
        pairs = hot_account(args.pg, 8, 5.0, accounts)
        label = "one hot account" if accounts == 1 else f"{accounts} accounts"
        print(f"  {label:16s} {pairs:8.0f} pairs/s", flush=True)

    print(
        f"\nthroughput, non-streaming chat, closed loop c={args.concurrency}, "
        f"{args.duration:.0f} s, PostgreSQL + Redis (rate limits on):"
    )
    with tempfile.TemporaryDirectory() as tmp:
        throughput(args, Path(tmp))


if __name__ == "__main__":
    main()
