"""bench/reports: the month-by-day-by-model report over millions of usage events, from the
rollups and from raw events, on SQLite and PostgreSQL side by side.

    .venv/bin/python -m bench.reports                 # 1,000,000 events (about 3 min)
    .venv/bin/python -m bench.reports --events 5000000

Events are bulk-loaded (executemany on SQLite, COPY on PostgreSQL) rather than through
settle, and the rollups are then built with the migration's own GROUP BY; the bench checks
that the rollup report equals the raw one before timing anything. Workload: November 2026,
50 accounts, 200 keys each using 2 of 12 models, 3 upstreams, 97% ok / 2% error / 1% partial.
Target: the rollup report under 200 ms.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg

from ciyuan.metering.ports import ReportRow
from ciyuan.reports.periods import month_range
from ciyuan.store import open_store
from ciyuan.store.sql_store import SqlStore

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
MODELS = [f"model-{i:02d}" for i in range(12)]
COLUMNS = (
    "request_id, created_us, account_id, api_key_id, api, model, upstream, status, http_status, "
    "input_tokens, cached_tokens, output_tokens, reasoning_tokens, prompt_tokens_local, "
    "usage_source, cost_nanos, reserved_nanos, unbilled_nanos, latency_ms, ttft_ms, error_code, "
    "detail"
)
ROLLUP_SQL = """
INSERT INTO usage_rollup_hour
SELECT created_us / 3600000000 * 3600000000, account_id, api_key_id, model, upstream, api, status,
       COUNT(*), SUM(CASE WHEN status <> 'ok' THEN 1 ELSE 0 END), SUM(input_tokens),
       SUM(cached_tokens), SUM(output_tokens), SUM(reasoning_tokens), SUM(cost_nanos),
       SUM(latency_ms), COALESCE(SUM(ttft_ms), 0), COUNT(ttft_ms)
FROM usage_events
GROUP BY 1, 2, 3, 4, 5, 6, 7;
INSERT INTO usage_rollup_day
SELECT bucket_us / 86400000000 * 86400000000, account_id, api_key_id, model, upstream, api, status,
       SUM(requests), SUM(errors), SUM(input_tokens), SUM(cached_tokens), SUM(output_tokens),
       SUM(reasoning_tokens), SUM(cost_nanos), SUM(latency_ms_sum), SUM(ttft_ms_sum),
       SUM(ttft_count)
FROM usage_rollup_hour
GROUP BY 1, 2, 3, 4, 5, 6, 7
"""


def events(count: int, seed: int = 1) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(seed)
    since_us, until_us = month_range("2026-11")
    step = (until_us - since_us) // count
    keys = [
        (f"acc_bench_{k % 50:02d}", f"key_bench_{k:03d}", rng.sample(MODELS, 2)) for k in range(200)
    ]
    for n in range(count):
        account_id, key_id, models = keys[rng.randrange(200)]
        roll = rng.random()
        status = "ok" if roll < 0.97 else ("error" if roll < 0.99 else "partial")
        inp, out = rng.randint(10, 4000), rng.randint(0, 1000)
        yield (
            f"req_{n:09d}", since_us + n * step, account_id, key_id, "chat", rng.choice(models),
            ("openai", "anthropic", "vllm")[n % 3], status, 200 if status != "error" else 502,
            inp, inp // 4, out, 0, inp, "reported", inp * 150 + out * 600, 0, 0,
            rng.randint(50, 3000), rng.randint(20, 500), None, "{}",
        )  # fmt: skip


ACCOUNTS_SQL = (
    "INSERT INTO accounts (id, name, kind, floor_nanos, created_us) VALUES (?, ?, 'customer', 0, 0)"
)
ACCOUNTS = [(f"acc_bench_{a:02d}", f"bench-{a:02d}") for a in range(50)]


def load_sqlite(store: SqlStore, path: Path, count: int) -> None:
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    conn.executemany(ACCOUNTS_SQL, ACCOUNTS)
    marks = ", ".join("?" * 22)
    conn.executemany(f"INSERT INTO usage_events ({COLUMNS}) VALUES ({marks})", events(count))
    for statement in ROLLUP_SQL.split(";"):
        conn.execute(statement)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


def load_postgres(url: str, count: int) -> None:
    with psycopg.connect(url) as conn:
        with conn.cursor() as cursor:
            cursor.executemany(ACCOUNTS_SQL.replace("?", "%s"), ACCOUNTS)
        with (
            conn.cursor() as cursor,
            cursor.copy(f"COPY usage_events ({COLUMNS}) FROM STDIN") as copy,
        ):
            for row in events(count):
                copy.write_row(row)
        for statement in ROLLUP_SQL.split(";"):
            conn.execute(statement)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")


def median_ms(run: Callable[[], list[ReportRow]], repeats: int) -> tuple[float, list[ReportRow]]:
    timings, rows = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        rows = run()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings), rows


def measure(store: SqlStore) -> dict[str, float]:
    since_us, until_us = month_range("2026-11")

    def report(source: str) -> Callable[[], list[ReportRow]]:
        return lambda: store.usage_report(
            group_by=["day", "model"], since_us=since_us, until_us=until_us, source=source
        )

    rollup_ms, from_rollups = median_ms(report("rollup"), 7)
    raw_ms, from_raw = median_ms(report("raw"), 1)
    sums = [(r.group, r.requests, r.input_tokens, r.cost) for r in from_rollups]
    assert sums == [(r.group, r.requests, r.input_tokens, r.cost) for r in from_raw]
    assert len(from_rollups) == 30 * len(MODELS)
    return {"rollup_ms": rollup_ms, "raw_ms": raw_ms, "rows": float(len(from_rollups))}


def bench_postgres(count: int) -> dict[str, float]:
    schema = f"bench_reports_{int(time.time())}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    try:
        store = open_store(url)
        assert isinstance(store, SqlStore)
        started = time.perf_counter()
        load_postgres(url, count)
        load_s = time.perf_counter() - started
        result = measure(store) | {"load_s": load_s}
        store.close()
        return result
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def bench_sqlite(count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"
        store = open_store(f"sqlite:///{path}")
        assert isinstance(store, SqlStore)
        started = time.perf_counter()
        load_sqlite(store, path, count)
        load_s = time.perf_counter() - started
        result = measure(store) | {"load_s": load_s}
        store.close()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.reports")
    parser.add_argument("--events", type=int, default=1_000_000)
    count = parser.parse_args().events
    results = {"SQLite": bench_sqlite(count), "PostgreSQL": bench_postgres(count)}
    print(f"\nmonth-by-day-by-model report over {count:,} usage events (median; raw: one run)")
    print(f"{'':12}{'load s':>10}{'rollups ms':>12}{'raw ms':>12}{'speed-up':>10}  target <200 ms")
    for name, r in results.items():
        verdict = "ok" if r["rollup_ms"] < 200 else "MISSED"
        print(f"{name:12}{r['load_s']:>10.1f}{r['rollup_ms']:>12.1f}{r['raw_ms']:>12.0f}"
              f"{r['raw_ms'] / r['rollup_ms']:>9.0f}x  {verdict}")  # fmt: skip


if __name__ == "__main__":
    main()
