"""Reserve+settle pairs per second on SQLite and PostgreSQL, 1 client and 16 concurrent
clients, next to the same database's bare rate of one INSERT per transaction, in one run.

    .venv/bin/python -m bench.ledger [--seconds 3] [--pg URL] [--durability process|power|both]

SQLite runs twice: with client threads calling the store (group commit by threads queued for
the connection), and with client coroutines on one event loop calling it inline through the
gateway's ``CommitBatcher`` (group commit once per loop turn), at ``process`` durability with the
WAL checkpointed from a thread of its own (``WalCheckpointer``): how the gateway runs.
Each line also gives the writes per COMMIT that group commit achieved.

Clients are threads sharing one store, as the gateway's request handlers do (on PostgreSQL the
store's pool gives each its own connection; on SQLite they share the one writer). The bare
rate uses its own connection per client with the same durability settings. Ratios are what to
compare across machines; absolute figures depend on the disk's fsync latency and on the GIL.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from ciyuan.clock import SystemClock
from ciyuan.gateway.group_commit import CommitBatcher
from ciyuan.metering.ports import Store, UsageEvent
from ciyuan.pricing.money import Amount
from ciyuan.store import open_store
from ciyuan.store.sqlite import SqliteStore, WalCheckpointer

CLIENTS = (1, 16)
SYNCHRONOUS = {"process": "NORMAL", "power": "FULL"}


def run_clients(
    clients: int, seconds: float, make_op: Callable[[int], Callable[[int], None]]
) -> float:
    """Operations per second of ``clients`` threads each looping its op for ``seconds``."""
    counts = [0] * clients
    start_at = time.perf_counter() + 0.05
    stop_at = start_at + seconds

    def loop(index: int) -> None:
        op = make_op(index)
        while time.perf_counter() < start_at:
            time.sleep(0.001)
        done = 0
        while time.perf_counter() < stop_at:
            op(done)
            done += 1
        counts[index] = done

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / seconds


def _funded_accounts(store: Store, clients: int, tag: str) -> list[str]:
    accounts = []
    for index in range(clients):
        account = store.create_account(f"{tag}-{clients}-{index}")
        store.grant(account.id, Amount.parse("1000000"))
        accounts.append(account.id)
    return accounts


def _event(request_id: str, account_id: str) -> UsageEvent:
    return UsageEvent(
        request_id=request_id, created_us=1, account_id=account_id, api_key_id="key_bench",
        api="chat", model="m", upstream="demo", status="ok", http_status=200,
    )  # fmt: skip


def loop_rate(store: SqliteStore, clients: int, seconds: float, tag: str) -> float:
    """Pairs per second of ``clients`` coroutines on one loop, through the gateway's batcher."""
    accounts = _funded_accounts(store, clients, tag)
    batcher = CommitBatcher(store)
    counts = [0] * clients

    async def client(index: int, stop_at: float) -> None:
        account_id = accounts[index]
        while time.perf_counter() < stop_at:
            request_id = f"{tag}-{clients}-{index}-{counts[index]}"
            hold = await batcher.call(
                store.reserve, account_id, Amount(2000), request_id=request_id, timeout_s=60
            )
            await batcher.call(store.settle, hold, Amount(1500), _event(request_id, account_id))
            counts[index] += 1

    async def main() -> None:
        stop_at = time.perf_counter() + seconds
        await asyncio.gather(*(client(i, stop_at) for i in range(clients)))

    asyncio.run(main())
    return sum(counts) / seconds


def ledger_rate(store: Store, clients: int, seconds: float, tag: str) -> float:
    accounts = _funded_accounts(store, clients, tag)

    def make_op(index: int) -> Callable[[int], None]:
        account_id = accounts[index]

        def op(n: int) -> None:
            request_id = f"{tag}-{clients}-{index}-{n}"
            hold = store.reserve(account_id, Amount(2000), request_id=request_id, timeout_s=60)
            store.settle(hold, Amount(1500), _event(request_id, account_id))

        return op

    return run_clients(clients, seconds, make_op)


def sqlite_bare_rate(path: Path, clients: int, seconds: float, durability: str) -> float:
    def make_op(index: int) -> Callable[[int], None]:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS[durability]}")
        return lambda n: conn.execute("INSERT INTO bare (v) VALUES (?)", (f"{index}-{n}",))

    setup = sqlite3.connect(str(path), isolation_level=None)
    setup.execute("PRAGMA journal_mode = WAL")
    setup.execute("CREATE TABLE IF NOT EXISTS bare (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    setup.close()
    return run_clients(clients, seconds, make_op)


def pg_bare_rate(url: str, clients: int, seconds: float) -> float:
    with psycopg.connect(url, autocommit=True) as setup:
        setup.execute("CREATE TABLE IF NOT EXISTS bare (id BIGSERIAL PRIMARY KEY, v TEXT NOT NULL)")
    connections: list[psycopg.Connection[tuple[object, ...]]] = []

    def make_op(index: int) -> Callable[[int], None]:
        conn = psycopg.connect(url, autocommit=True)
        connections.append(conn)
        return lambda n: (
            conn.execute("INSERT INTO bare (v) VALUES (%s)", (f"{index}-{n}",), prepare=True)
            and None
        )

    try:
        return run_clients(clients, seconds, make_op)
    finally:
        for conn in connections:
            conn.close()


def report(
    name: str,
    bare: dict[int, float],
    ledger: dict[int, float],
    batching: dict[int, float] | None = None,
) -> None:
    for clients in CLIENTS:
        ratio = ledger[clients] / bare[clients]
        per_commit = f"   writes/commit={batching[clients]:5.1f}" if batching else ""
        print(
            f"{name:<30} clients={clients:<3} bare INSERT/s={bare[clients]:>9.0f}   "
            f"reserve+settle pairs/s={ledger[clients]:>8.0f}   ratio={ratio:5.2f}{per_commit}"
        )
    print(f"{name:<30} 16-client pairs/s vs 1-client bare INSERT/s: {ledger[16] / bare[1]:5.2f}")


def sqlite_run(folder: Path, durability: str, seconds: float) -> None:
    bare = {c: sqlite_bare_rate(folder / "bare.db", c, seconds, durability) for c in CLIENTS}
    for mode, rate in (("threads", ledger_rate), ("event loop", loop_rate)):
        store = SqliteStore(
            f"sqlite:///{folder / f'{mode}.db'}", SystemClock(), durability=durability
        )
        # The gateway checkpoints the WAL from its own thread at durability=process (see
        # bootstrap.build_app); the threads mode keeps SQLite's automatic checkpoint, as every
        # other process (the CLI) does.
        checkpointer = WalCheckpointer(store)
        if mode == "event loop" and durability == "process":
            checkpointer.start()
        ledger, batching = {}, {}
        for clients in CLIENTS:
            writes, commits = store.writes_committed, store.commits
            ledger[clients] = rate(store, clients, seconds, mode[0])
            batching[clients] = (store.writes_committed - writes) / max(1, store.commits - commits)
        checkpointer.stop()
        store.close()
        report(f"sqlite ({durability}, {mode})", bare, ledger, batching)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--durability", choices=[*sorted(SYNCHRONOUS), "both"], default="both")
    args = parser.parse_args()
    durabilities = sorted(SYNCHRONOUS) if args.durability == "both" else [args.durability]
    for durability in durabilities:
        with tempfile.TemporaryDirectory() as folder:
            sqlite_run(Path(folder), durability, args.seconds)
    schema = f"bench_{int(time.time())}"
    with psycopg.connect(args.pg, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    url = f"{args.pg}?options=-csearch_path%3D{schema}"
    try:
        bare = {c: pg_bare_rate(url, c, args.seconds) for c in CLIENTS}
        store = open_store(url)
        ledger = {c: ledger_rate(store, c, args.seconds, "p") for c in CLIENTS}
        store.close()
        report("postgresql", bare, ledger)
    finally:
        with psycopg.connect(args.pg, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()
