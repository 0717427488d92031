"""Soak: minutes of mixed load through one real gateway, watching for leaks, drift and surprises.

    .venv/bin/python -m bench.soak [--minutes 10] [--out FILE] [--concurrency 12]

Starts, each in its own process on loopback: the demo upstream, a Ciyuan gateway on a fresh
SQLite file (admin API on), and a load generator (aiohttp) driving a fixed number of closed
loops with a mix of plain and streaming OpenAI chat, streaming Anthropic messages, embeddings,
injected upstream 500s, streams the upstream cuts, and clients hanging up mid-stream, over
several customers and keys, while the admin API tops every balance up at a fixed pace (and
replays each grant, which must change nothing). Every interval (30 s, shorter for short runs so
there are at least eight) it samples the gateway's RSS, open fds and threads from /proc; the
load's rate, p50/p99 and unexpected errors are binned into the same intervals.

At the end it prints a table per interval and a verdict, writes everything as JSON to ``--out``
(default ``bench/results/soak-<UTC time>.json``), and exits 1 when, after warm-up, open fds grew
by more than ``--fd-growth-max`` or RSS by more than 20% between the first and the last third,
when any 5xx other than the injected ones (or any other unasked-for failure) appeared, when a
grant replay was not idempotent, when the billed usage events are not exactly as many as the
200 answers, on a traceback or ERROR line in the gateway's log, when the SQLite WAL file ends
larger than twice the size the gateway rewinds it at (it must not grow with the load), or
when ``ciyuan ledger verify`` or ``ciyuan ledger reconcile`` fails on the database afterwards.
Latency drift (p50 of the last third over the first) is reported, never judged: on a shared
machine a neighbour's build moves it more than the gateway does.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

from bench.gateway import servers
from bench.gateway.cpu import tree_cpu_s
from bench.gateway.runner import REPO
from bench.soak import report
from bench.soak.loadgen import LoadSpec
from bench.soak.probe import probe
from ciyuan import apikeys
from ciyuan.pricing.money import Amount
from ciyuan.store import open_store
from ciyuan.store.sqlite import WAL_REWIND_PAGES

INTERVAL_S_MAX: Final = 30.0
INTERVALS_MIN: Final = 8
WARMUP_FRACTION: Final = 0.1
REQUEST_TIMEOUT_S: Final = 30.0
IDLE_SETTLE_S: Final = 3.0
"""After the load stops: time for pooled connections to close before the idle sample."""
WAL_BYTES_MAX: Final = 2 * WAL_REWIND_PAGES * 4096
"""Twice the WAL the gateway rewinds at (4 KiB pages): more means it is not being rewound."""
CLI_TIMEOUT_S: Final = 300.0
INITIAL_CREDIT: Final = "5"
GRANT_EVERY_S: Final = 10.0
GRANT_AMOUNT: Final = "2"
"""Generous: at a few hundred requests a second a customer spends well under 1 USD in 10 s."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the load")
    parser.add_argument("--out", type=Path, default=None, help="where to write the JSON results")
    parser.add_argument("--concurrency", type=int, default=12, help="closed loops in the load")
    parser.add_argument("--customers", type=int, default=4, help="accounts under load")
    parser.add_argument("--keys", type=int, default=2, help="API keys per account")
    parser.add_argument(
        "--interval",
        type=float,
        default=None,
        help="seconds between samples (default: 30 s,"
        f" shorter so there are at least {INTERVALS_MIN})",
    )
    parser.add_argument(
        "--fd-growth-max", type=int, default=24, help="open fds allowed to grow after warm-up"
    )
    parser.add_argument("--seed", type=int, default=20261125)
    args = parser.parse_args()
    if args.minutes <= 0 or args.concurrency < 1 or args.customers < 1 or args.keys < 1:
        parser.error("--minutes, --concurrency, --customers and --keys must be positive")
    return args


def fund(db_url: str, customers: int, keys_per_customer: int) -> tuple[list[str], list[str]]:
    """Accounts with some credit and their API keys: (account names, key secrets)."""
    store = open_store(db_url)
    names, keys = [], []
    try:
        for index in range(customers):
            account = store.create_account(f"soak-{index}")
            store.grant(account.id, Amount.parse(INITIAL_CREDIT))
            names.append(account.name)
            for _ in range(keys_per_customer):
                key = apikeys.generate()
                store.create_api_key(account.id, key.prefix, key.hash_hex, "soak")
                keys.append(key.secret.reveal())
    finally:
        store.close()
    return names, keys


def gateway(
    workdir: Path, db_url: str, upstream_url: str, admin_key: str
) -> contextlib.AbstractContextManager[servers.Server]:
    """``bench.gateway``'s gateway, plus the admin API the grants go through."""
    port = servers.free_port()
    upstreams = json.dumps([{"name": "demo", "kind": "demo", "base_url": upstream_url + "/v1"}])
    return servers.running(
        "ciyuan",
        [str(servers.CIYUAN), "serve", "--port", str(port)],
        port=port,
        workdir=workdir,
        ready=lambda log: servers.printed(log, "Ciyuan gateway listening on"),
        env={"CIYUAN_DB": db_url, "CIYUAN_UPSTREAMS": upstreams, "CIYUAN_ADMIN_KEY": admin_key},
    )


def sample(pid: int) -> report.Sample:
    found = probe(pid)
    if found is None:
        raise RuntimeError(f"the gateway (pid {pid}) is gone")
    return report.Sample(time.monotonic(), found, tree_cpu_s(pid))


def drive(
    gateway_server: servers.Server, spec: LoadSpec, interval_s: float
) -> tuple[list[report.Sample], dict[str, Any]]:
    """Run the load generator to its end, sampling the gateway on a fixed grid of instants."""
    spec_path = Path(spec.records_path).with_name("loadgen-spec.json")
    spec_path.write_text(json.dumps(asdict(spec)))
    samples = [sample(gateway_server.pid)]
    load = subprocess.Popen(
        [sys.executable, "-m", "bench.soak.loadgen", str(spec_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ticks = math.ceil(spec.duration_s / interval_s - 1e-9)
        for tick in range(1, ticks + 1):
            # On a grid from the start, so a slow sample does not push every later one back.
            wake = samples[0].t + min(tick * interval_s, spec.duration_s)
            time.sleep(max(0.0, wake - time.monotonic()))
            if load.poll() is not None:
                break
            samples.append(sample(gateway_server.pid))
            last = samples[-1]
            print(
                f"  {last.t - samples[0].t:7.1f} s  RSS {last.probe.rss_kb / 1024:7.1f} MB"
                f"  fds {last.probe.fds:4}  threads {last.probe.threads:3}",
                flush=True,
            )
        out, err = load.communicate(timeout=2 * spec.timeout_s + 30)
    except BaseException:
        load.kill()
        load.communicate()
        raise
    if load.returncode != 0:
        raise RuntimeError(f"the load generator failed:\n{err[-2000:]}")
    summary: dict[str, Any] = json.loads(out)
    return samples, summary


def ledger_check(command: str, db_url: str) -> dict[str, Any]:
    """``ciyuan ledger <command> --json`` on the soak's database: its exit code and report."""
    done = subprocess.run(
        [str(servers.CIYUAN), "ledger", command, "--json"],
        env={**os.environ, "CIYUAN_DB": db_url},
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    try:
        output: Any = json.loads(done.stdout)
    except json.JSONDecodeError:
        output = (done.stdout + done.stderr)[-2000:]
    return {"exit_code": done.returncode, "ok": done.returncode == 0, "output": output}


def usage_by_status(db_url: str) -> dict[str, int]:
    store = open_store(db_url)
    try:
        rows = store.usage_report(group_by=["status"], source="raw")
    finally:
        store.close()
    return {row.group["status"]: row.requests for row in rows}


def log_problems(log_path: Path) -> list[str]:
    """Tracebacks and error-level lines in the gateway's log: each is a finding to read."""
    # Text logs say " ERROR " (ours) or "ERROR:" (uvicorn's); CIYUAN_LOG_FORMAT=json says level.
    marks = ("Traceback", " ERROR ", "ERROR:", '"level": "error"', '"level":"error"')
    lines = log_path.read_text(errors="replace").splitlines()
    return [line for line in lines if any(mark in line for mark in marks)]


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    return done.stdout.strip()


def main() -> int:
    args = parse_args()
    duration_s = args.minutes * 60
    interval_s = args.interval or min(INTERVAL_S_MAX, duration_s / INTERVALS_MIN)
    warmup_s = max(interval_s, WARMUP_FRACTION * duration_s)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out_path: Path = args.out or REPO / "bench" / "results" / f"soak-{stamp}.json"
    admin_key = secrets.token_urlsafe(24)
    started = time.monotonic()
    print(
        f"soak: {args.minutes:g} min at concurrency {args.concurrency}, {args.customers}"
        f" customers x {args.keys} keys, a sample every {interval_s:g} s,"
        f" warm-up {warmup_s:g} s",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="ciyuan-soak-") as tmp:
        workdir = Path(tmp)
        db_url = f"sqlite:///{workdir / 'ciyuan.db'}"
        records_path = workdir / "records.txt"
        with servers.demo_upstream(workdir) as demo:
            accounts, keys = fund(db_url, args.customers, args.keys)
            with gateway(workdir, db_url, demo.base_url, admin_key) as server:
                idle_before = probe(server.pid)
                spec = LoadSpec(
                    base_url=server.base_url,
                    api_keys=keys,
                    accounts=accounts,
                    admin_key=admin_key,
                    concurrency=args.concurrency,
                    duration_s=duration_s,
                    timeout_s=REQUEST_TIMEOUT_S,
                    grant_every_s=GRANT_EVERY_S,
                    grant_amount=GRANT_AMOUNT,
                    records_path=str(records_path),
                    seed=args.seed,
                )
                samples, load_summary = drive(server, spec, interval_s)
                time.sleep(IDLE_SETTLE_S)
                idle_after = probe(server.pid)
                wal = workdir / "ciyuan.db-wal"
                wal_bytes = wal.stat().st_size if wal.exists() else 0
            gateway_exit = server.process.returncode
            problems = log_problems(server.log_path)
        records = report.read_records(records_path)
        checks = {name: ledger_check(name, db_url) for name in ("verify", "reconcile")}
        events = usage_by_status(db_url)
    table = report.intervals(samples, records, warmup_s)
    verdict = report.judge(table, records, fd_growth_max=args.fd_growth_max)
    for name, check in checks.items():
        if not check["ok"]:
            verdict.fail(f"`ciyuan ledger {name}` failed (exit {check['exit_code']})")
    if load_summary["grant_failures"]:
        verdict.fail(f"{load_summary['grant_failures']} grants failed or were not idempotent")
    # Every answer that reached the client with a 200 must have left exactly one usage event
    # (status ok or partial); the injected 502s leave at most an unbilled error event.
    answered = sum(1 for r in records if r.status == 200)
    billed = events.get("ok", 0) + events.get("partial", 0)
    if billed != answered:
        verdict.fail(f"{answered} requests answered 200 but {billed} usage events billed")
    if gateway_exit not in (0, None):
        verdict.notes.append(f"the gateway exited with {gateway_exit} on SIGINT")
    if problems:
        verdict.fail(f"{len(problems)} tracebacks or ERROR lines in the gateway log")
    # The WAL must be rewound under steady load, not grow with every write (nor its mapped index).
    if wal_bytes > WAL_BYTES_MAX:
        verdict.fail(f"the WAL file grew to {wal_bytes} bytes (limit {WAL_BYTES_MAX})")

    print("\nper interval (w = warm-up; latency of the requests meant to succeed)")
    print(report.render(table))
    if idle_before and idle_after:
        print(
            f"\nidle before the load: RSS {idle_before.rss_kb / 1024:.1f} MB,"
            f" {idle_before.fds} fds, {idle_before.threads} threads; idle after it:"
            f" RSS {idle_after.rss_kb / 1024:.1f} MB, {idle_after.fds} fds,"
            f" {idle_after.threads} threads"
        )
    print(
        f"requests {load_summary['requests']} ({load_summary['outcomes']}), grants"
        f" {load_summary['grants']}; usage events by status {events}"
    )
    for name, check in checks.items():
        print(f"ciyuan ledger {name}: {'ok' if check['ok'] else 'FAILED'}")
    growth = (
        f"RSS {verdict.rss_growth:+.1%}" if verdict.rss_growth is not None else "RSS -",
        f"fds {verdict.fd_growth:+g}" if verdict.fd_growth is not None else "fds -",
        f"threads {verdict.thread_growth:+g}" if verdict.thread_growth is not None else "",
        f"p50 drift {verdict.latency_drift:.2f}x" if verdict.latency_drift else "p50 drift -",
    )
    print("after warm-up, last third against first: " + ", ".join(g for g in growth if g))
    print(f"WAL file at the end: {wal_bytes / 2**20:.1f} MiB (limit {WAL_BYTES_MAX / 2**20:.0f})")
    for note in verdict.notes:
        print(f"note: {note}")
    for line in problems[:5]:
        print(f"gateway log: {line}")
    for example in load_summary["examples"]:
        print(f"example: {example}")
    print("verdict: " + ("PASS" if verdict.ok else "FAIL: " + "; ".join(verdict.reasons)))

    document = {
        "meta": {
            "time_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "commit": _git("rev-parse", "HEAD"),
            "work_tree_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "minutes": args.minutes,
            "concurrency": args.concurrency,
            "customers": args.customers,
            "keys_per_customer": args.keys,
            "interval_s": interval_s,
            "warmup_s": warmup_s,
            "fd_growth_max": args.fd_growth_max,
            "rss_growth_max": report.RSS_GROWTH_MAX,
            "seed": args.seed,
        },
        "verdict": asdict(verdict),
        "intervals": [asdict(i) for i in table],
        "idle_before": asdict(idle_before) if idle_before else None,
        "idle_after": asdict(idle_after) if idle_after else None,
        "load": load_summary,
        "usage_events_by_status": events,
        "ledger": checks,
        "gateway_log_problems": problems[:50],
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {out_path} in {time.monotonic() - started:.0f} s")
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
