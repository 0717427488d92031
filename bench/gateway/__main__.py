"""Gateway overhead: direct to the demo upstream, through Ciyuan, and through LiteLLM's proxy,
under the same closed-loop load, in one run.

    .venv/bin/python -m bench.gateway [--quick] [--litellm | --no-litellm] [--profile]

Starts the demo upstream, the Ciyuan gateway (SQLite ledger, full metering, a funded key) and
optionally LiteLLM's proxy (one worker), each in its own process, and drives each from a
load generator in another process: non-streaming and streaming chat completions at
concurrency 1, 16 and 64. Prints throughput, p50/p99 latency and time to first byte of the
stream per target, then Ciyuan's added latency and its throughput as a fraction of direct and
as a multiple of LiteLLM's, checked against issue 6's targets; writes everything to
``bench/results/gateway-<UTC time>.json``. ``--profile`` then samples the gateway with py-spy
under load at concurrency 16 and prints where its time goes.

The full run takes about four minutes (LiteLLM's first install up to eight more), ``--quick``
about a minute. The machine is shared: compare ratios from one run, not absolute figures
across runs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.gateway import litellm_proxy, profiling, report, servers
from bench.gateway.runner import (
    FULL,
    QUICK,
    REPO,
    Plan,
    Target,
    finish_cell,
    run_matrix,
    spec_for,
    start_cell,
    warm_up,
)
from bench.gateway.stats import CellResult
from ciyuan import apikeys
from ciyuan.pricing.money import Amount
from ciyuan.store import open_store

CHAT_PATH = "/v1/chat/completions"
PROFILE_CONCURRENCY = 16


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gateway", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="short cells (about a minute)")
    parser.add_argument(
        "--litellm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="compare with LiteLLM's proxy (default: on for the full run, off with --quick)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="sample the gateway with py-spy under load"
    )
    return parser.parse_args()


def fund_key(db_url: str) -> str:
    """A fresh account with ample credit and an API key for it: the secret, for the load."""
    store = open_store(db_url)
    try:
        account = store.create_account("bench")
        store.grant(account.id, Amount.parse("1000000"))
        key = apikeys.generate()
        store.create_api_key(account.id, key.prefix, key.hash_hex, "bench")
        return key.secret.reveal()
    finally:
        store.close()


def _git(*args: str) -> str:
    result = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    return result.stdout.strip()


def meta(plan: Plan, litellm: dict[str, Any]) -> dict[str, Any]:
    return {
        "time_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": _git("rev-parse", "HEAD"),
        "work_tree_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "plan": dataclasses.asdict(plan),
        "litellm": litellm,
    }


def _progress(result: CellResult) -> None:
    ttft = f", TTFT p50 {result.ttft_p50_ms:.2f} ms" if result.ttft_p50_ms is not None else ""
    p50 = f"{result.p50_ms:.2f}" if result.p50_ms is not None else "-"
    errors = f", {result.errors} errors: {result.error_examples[:1]}" if result.errors else ""
    print(
        f"  {result.mode:<6} c={result.concurrency:<3} {result.target:<8}"
        f"{result.rps:9.1f} req/s, p50 {p50} ms{ttft}{errors}",
        flush=True,
    )


def _want_litellm(args: argparse.Namespace) -> bool:
    return bool(args.litellm) if args.litellm is not None else not args.quick


def start_litellm(
    stack: contextlib.ExitStack, workdir: Path, upstream_url: str
) -> tuple[Target | None, dict[str, Any]]:
    """LiteLLM's proxy as a target, or None and why not; never fails the run."""
    why_not = litellm_proxy.ensure_installed()
    if why_not is None:
        try:
            started = time.monotonic()
            proxy = stack.enter_context(litellm_proxy.proxy(workdir, upstream_url))
        except RuntimeError as error:
            why_not = f"the proxy did not start: {str(error)[-600:]}"
        else:
            startup_s = round(time.monotonic() - started, 1)
            info = {"version": litellm_proxy.version(), "startup_s": startup_s, "workers": 1}
            print(f"LiteLLM {info['version']} proxy ready in {startup_s} s", flush=True)
            target = Target(
                "litellm", proxy.base_url + CHAT_PATH, litellm_proxy.MASTER_KEY, proxy.pid
            )
            return target, info
    print(f"LiteLLM comparison skipped: {why_not}", flush=True)
    return None, {"skipped": why_not}


def profile_gateway(pid: int, target: Target, plan: Plan, workdir: Path) -> list[profiling.Profile]:
    """py-spy on the gateway while the load generator drives it, once per mode."""
    if profiling.py_spy() is None:
        print("profile skipped: py-spy not found (pip install py-spy, not into pyproject)")
        return []
    profiles: list[profiling.Profile] = []
    for mode in ("plain", "stream"):
        spec = spec_for(target, mode, PROFILE_CONCURRENCY, plan.profile_s + 1.0, plan.warmup_s)
        load = start_cell(spec)
        time.sleep(plan.warmup_s + 0.5)
        out = workdir / f"py-spy-{mode}.txt"
        spy = profiling.record(pid, plan.profile_s, out)
        _, err = spy.communicate(timeout=plan.profile_s + 60)
        finish_cell(load, spec)
        if spy.returncode != 0 or not out.exists():
            print(f"profile skipped: py-spy failed: {err.decode(errors='replace')[-400:]}")
            return profiles
        label = f"{mode}, c={PROFILE_CONCURRENCY}"
        profiles.append(profiling.summarize(label, out, plan.profile_s))
    return profiles


def print_results(
    cells: Sequence[CellResult],
    comparisons: Sequence[report.Comparison],
    checks: Sequence[report.TargetCheck],
) -> None:
    print(
        "\nper target (ms; overhead = median x-ciyuan-overhead-ms;"
        " cpu/req = the server process's CPU ms per request)"
    )
    print(report.cells_table(cells))
    print(
        "\nCiyuan against direct and LiteLLM (added = Ciyuan p50 - direct p50, in ms;"
        " LiteLLM cpu/req = its CPU per request over Ciyuan's)"
    )
    print(report.ratios_table(comparisons))
    print("\nissue 6 targets")
    print(report.targets_table(checks))


def main() -> None:
    args = parse_args()
    plan = QUICK if args.quick else FULL
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="ciyuan-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        workdir = Path(tmp)
        db_url = f"sqlite:///{workdir / 'ciyuan.db'}"
        demo = stack.enter_context(servers.demo_upstream(workdir))
        key = fund_key(db_url)
        gateway = stack.enter_context(servers.ciyuan_gateway(workdir, db_url, demo.base_url))
        targets = [
            Target("direct", demo.base_url + CHAT_PATH, "unused", demo.pid),
            Target("ciyuan", gateway.base_url + CHAT_PATH, key, gateway.pid),
        ]
        litellm_info: dict[str, Any] = {"skipped": "not asked for (--litellm)"}
        if _want_litellm(args):
            litellm, litellm_info = start_litellm(stack, workdir, demo.base_url)
            targets += [litellm] if litellm else []
        print(f"warming up {', '.join(t.name for t in targets)}...", flush=True)
        warm_up(targets)
        cells = run_matrix(plan, targets, _progress)
        profiles = profile_gateway(gateway.pid, targets[1], plan, workdir) if args.profile else []
    comparisons = [
        report.compare(cells, mode, c) for mode in ("plain", "stream") for c in plan.concurrencies
    ]
    checks = report.targets(comparisons)
    print_results(cells, comparisons, checks)
    for profile in profiles:
        print("\n" + profiling.render(profile))
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = REPO / "bench" / "results" / f"gateway-{stamp}.json"
    payload: dict[str, Sequence[Any]] = {
        "cells": cells,
        "comparisons": comparisons,
        "targets": checks,
        "profiles": profiles,
    }
    report.write_json(out, meta(plan, litellm_info), payload)
    print(f"\nwrote {out.relative_to(REPO)} in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
