"""Running the load matrix: every (mode, concurrency) cell against every target, interleaved.

Targets take turns within a cell, in ABBA order over the rounds (direct, ciyuan, litellm, then
litellm, ciyuan, direct), so drift on a shared machine (another engineer's build starting)
lands on every target alike; each target's rounds are merged into one cell result.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from bench.gateway.cpu import tree_cpu_s
from bench.gateway.loadgen import CellSpec
from bench.gateway.stats import CellResult, summarize

REPO: Final = Path(__file__).resolve().parents[2]
REQUEST_TIMEOUT_S: Final = 30.0
REQUESTS_MAX_PER_CELL: Final = 200_000
MODES: Final = ("plain", "stream")


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    url: str
    api_key: str
    server_pid: int


@dataclass(frozen=True, slots=True)
class Plan:
    concurrencies: tuple[int, ...]
    rounds: int
    round_s: float
    warmup_s: float
    profile_s: int


FULL: Final = Plan(concurrencies=(1, 16, 64), rounds=2, round_s=3.5, warmup_s=0.7, profile_s=8)
QUICK: Final = Plan(concurrencies=(1, 16, 64), rounds=1, round_s=1.5, warmup_s=0.4, profile_s=4)


def spec_for(
    target: Target, mode: str, concurrency: int, duration_s: float, warmup_s: float
) -> CellSpec:
    return CellSpec(
        url=target.url,
        api_key=target.api_key,
        concurrency=concurrency,
        duration_s=duration_s,
        warmup_s=warmup_s,
        stream=mode == "stream",
        requests_max=REQUESTS_MAX_PER_CELL,
        timeout_s=REQUEST_TIMEOUT_S,
    )


def start_cell(spec: CellSpec) -> subprocess.Popen[str]:
    """The load generator for one cell, in its own process."""
    return subprocess.Popen(
        [sys.executable, "-m", "bench.gateway.loadgen", json.dumps(asdict(spec))],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_cell(process: subprocess.Popen[str], spec: CellSpec) -> dict[str, Any]:
    # Each request is bounded by timeout_s, so the cell ends by this deadline or has hung.
    limit_s = spec.warmup_s + spec.duration_s + 2 * spec.timeout_s + 30
    try:
        out, err = process.communicate(timeout=limit_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise RuntimeError(f"load generator hung past {limit_s:.0f} s on {spec.url}") from None
    if process.returncode != 0:
        raise RuntimeError(f"load generator failed on {spec.url}:\n{err[-2000:]}")
    raw: dict[str, Any] = json.loads(out)
    return raw


def run_cell(spec: CellSpec) -> dict[str, Any]:
    return finish_cell(start_cell(spec), spec)


def run_measured(spec: CellSpec, server_pid: int) -> dict[str, Any]:
    """A cell, with the CPU its server spent over all of the cell's requests (warm-up too)."""
    before = tree_cpu_s(server_pid)
    raw = run_cell(spec)
    after = tree_cpu_s(server_pid)
    raw["server_cpu_s"] = None if before is None or after is None else after - before
    raw["server_requests"] = raw["warmup_requests"] + len(raw["latency_s"]) + raw["errors"]
    return raw


def merge(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One cell from several rounds: samples concatenated, wall times added."""
    merged: dict[str, Any] = {"latency_s": [], "ttfb_s": [], "overhead_ms": [], "errors": 0}
    merged["error_examples"] = []
    merged["elapsed_s"] = 0.0
    merged["server_requests"] = 0
    cpu = [raw["server_cpu_s"] for raw in rounds]
    merged["server_cpu_s"] = None if None in cpu else sum(cpu)
    for raw in rounds:
        for key in ("latency_s", "ttfb_s", "overhead_ms", "error_examples"):
            merged[key] += raw[key]
        for key in ("errors", "elapsed_s", "server_requests"):
            merged[key] += raw[key]
    return merged


def warm_up(targets: Sequence[Target]) -> None:
    """A short unrecorded run per target and mode: tokenizers, connections, caches."""
    for target in targets:
        for mode in MODES:
            run_cell(spec_for(target, mode, 4, 1.0, 0.5))


def _order(targets: Sequence[Target], round_index: int) -> Sequence[Target]:
    return targets if round_index % 2 == 0 else list(reversed(targets))


def run_matrix(
    plan: Plan, targets: Sequence[Target], progress: Callable[[CellResult], None]
) -> list[CellResult]:
    results: list[CellResult] = []
    for mode in MODES:
        for concurrency in plan.concurrencies:
            rounds: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
            for index in range(plan.rounds):
                for target in _order(targets, index):
                    spec = spec_for(target, mode, concurrency, plan.round_s, plan.warmup_s)
                    rounds[target.name].append(run_measured(spec, target.server_pid))
            for target in targets:
                result = summarize(target.name, mode, concurrency, merge(rounds[target.name]))
                progress(result)
                results.append(result)
    return results
