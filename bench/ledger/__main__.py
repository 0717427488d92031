"""Reserve+settle pairs per second on SQLite and PostgreSQL, 1 client and 16 concurrent
clients, next to the same database's bare rate of one INSERT per transaction, in one run.

    .venv/bin/python -m bench.ledger [--seconds 3] [--pg URL] [--durability process|power]

Clients are threads sharing one store, as the gateway's request handlers do (on PostgreSQL the
store's pool gives each its own connection; on SQLite they share the one writer). The bare
rate uses its own connection per client with the same durability settings. Ratios are what to
compare across machines; absolute figures depend on the disk's fsync latency and on the GIL.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from ciyuan.metering.ports import Store, UsageEvent
from ciyuan.pricing.money import Amount
from ciyuan.store import open_store

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


def ledger_rate(store: Store, clients: int, seconds: float, tag: str) -> float:
    accounts = []
    for index in range(clients):
        account = store.create_account(f"{tag}-{clients}-{index}")
        store.grant(account.id, Amount.parse("1000000"))
        accounts.append(account.id)

    def make_op(index: int) -> Callable[[int], None]:
        account_id = accounts[index]

        def op(n: int) -> None:
            request_id = f"{tag}-{clients}-{index}-{n}"
            hold = store.reserve(account_id, Amount(2000), request_id=request_id, timeout_s=60)
            event = UsageEvent(
                request_id=request_id, created_us=1, account_id=account_id, api_key_id="key_bench",
                api="chat", model="m", upstream="demo", status="ok", http_status=200,
            )  # fmt: skip
            store.settle(hold, Amount(1500), event)

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


def report(name: str, bare: dict[int, float], ledger: dict[int, float]) -> None:
    for clients in CLIENTS:
        ratio = ledger[clients] / bare[clients]
        print(
            f"{name:<22} clients={clients:<3} bare INSERT/s={bare[clients]:>9.0f}   "
            f"reserve+settle pairs/s={ledger[clients]:>8.0f}   ratio={ratio:5.2f}"
        )
    print(f"{name:<22} 16-client pairs/s vs 1-client bare INSERT/s: {ledger[16] / bare[1]:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--durability", choices=sorted(SYNCHRONOUS), default="process")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        bare_path = Path(folder) / "bare.db"
        bare = {c: sqlite_bare_rate(bare_path, c, args.seconds, args.durability) for c in CLIENTS}
        store = open_store(f"sqlite:///{Path(folder) / 'ledger.db'}", durability=args.durability)
        ledger = {c: ledger_rate(store, c, args.seconds, "s") for c in CLIENTS}
        store.close()
        report(f"sqlite ({args.durability})", bare, ledger)
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
