"""The printed tables, the ratios against the issue's targets, and the JSON results file."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from bench.gateway.stats import CellResult

ADDED_P50_MS_MAX: Final = 1.0
LITELLM_MULTIPLE_MIN: Final = 50.0
DIRECT_RATIO_MIN_AT_64: Final = 0.25


@dataclass(frozen=True, slots=True)
class Comparison:
    """Ciyuan against the direct upstream (and LiteLLM when it ran) under one load."""

    mode: str
    concurrency: int
    added_p50_ms: float | None
    added_ttft_p50_ms: float | None
    ciyuan_over_direct: float | None
    ciyuan_over_litellm: float | None
    litellm_added_p50_ms: float | None
    litellm_added_ttft_p50_ms: float | None
    overhead_p50_ms: float | None
    litellm_cpu_over_ciyuan: float | None


@dataclass(frozen=True, slots=True)
class TargetCheck:
    name: str
    value: str
    met: bool | None


def _cell(cells: Sequence[CellResult], target: str, mode: str, c: int) -> CellResult | None:
    return next((x for x in cells if (x.target, x.mode, x.concurrency) == (target, mode, c)), None)


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _over(a: CellResult | None, b: CellResult | None) -> float | None:
    return None if a is None or b is None or b.rps == 0 else a.rps / b.rps


def _cpu_over(a: CellResult | None, b: CellResult | None) -> float | None:
    if a is None or b is None:
        return None
    x, y = a.server_cpu_ms_per_request, b.server_cpu_ms_per_request
    return None if x is None or not y else x / y


def compare(cells: Sequence[CellResult], mode: str, concurrency: int) -> Comparison:
    direct = _cell(cells, "direct", mode, concurrency)
    ciyuan = _cell(cells, "ciyuan", mode, concurrency)
    litellm = _cell(cells, "litellm", mode, concurrency)
    assert direct is not None and ciyuan is not None
    return Comparison(
        mode=mode,
        concurrency=concurrency,
        added_p50_ms=_minus(ciyuan.p50_ms, direct.p50_ms),
        added_ttft_p50_ms=_minus(ciyuan.ttft_p50_ms, direct.ttft_p50_ms),
        ciyuan_over_direct=_over(ciyuan, direct),
        ciyuan_over_litellm=_over(ciyuan, litellm),
        litellm_added_p50_ms=_minus(litellm.p50_ms, direct.p50_ms) if litellm else None,
        litellm_added_ttft_p50_ms=_minus(litellm.ttft_p50_ms, direct.ttft_p50_ms)
        if litellm
        else None,
        overhead_p50_ms=ciyuan.overhead_p50_ms,
        litellm_cpu_over_ciyuan=_cpu_over(litellm, ciyuan),
    )


def _check(name: str, value: float | None, ok: bool | None, fmt: str) -> TargetCheck:
    shown = "n/a" if value is None else format(value, fmt)
    return TargetCheck(name, shown, None if value is None else ok)


def targets(comparisons: Sequence[Comparison]) -> list[TargetCheck]:
    """The issue's targets, each with its measured value."""
    by = {(c.mode, c.concurrency): c for c in comparisons}
    checks: list[TargetCheck] = []
    plain1, stream1 = by.get(("plain", 1)), by.get(("stream", 1))
    if plain1:
        v = plain1.added_p50_ms
        checks.append(_check("added p50 at c=1, plain < 1 ms", v, v is not None and v < 1, ".2f"))
    if stream1:
        v = stream1.added_ttft_p50_ms
        checks.append(_check("added TTFT p50 at c=1 < 1 ms", v, v is not None and v < 1, ".2f"))
    for c in comparisons:
        v = c.ciyuan_over_litellm
        ok = v is not None and v >= LITELLM_MULTIPLE_MIN
        checks.append(_check(f"Ciyuan/LiteLLM {c.mode} c={c.concurrency} >= 50x", v, ok, ".1f"))
    for mode in ("plain", "stream"):
        c64 = by.get((mode, 64))
        if c64:
            v = c64.ciyuan_over_direct
            ok = v is not None and v >= DIRECT_RATIO_MIN_AT_64
            checks.append(_check(f"Ciyuan/direct {mode} c=64 >= 0.25", v, ok, ".2f"))
    return checks


def _f(value: float | None, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}x"


def cells_table(cells: Sequence[CellResult]) -> str:
    head = (
        f"{'mode':<7}{'conc':>5}  {'target':<8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'TTFT p50':>10}{'TTFT p99':>10}{'overhead':>10}{'cpu/req':>9}{'n':>7}{'err':>5}"
    )
    rows = [head, "-" * len(head)]
    for x in cells:
        rows.append(
            f"{x.mode:<7}{x.concurrency:>5}  {x.target:<8}{x.rps:>9.1f}{_f(x.p50_ms):>9}"
            f"{_f(x.p99_ms):>9}{_f(x.ttft_p50_ms):>10}{_f(x.ttft_p99_ms):>10}"
            f"{_f(x.overhead_p50_ms, '.3f'):>10}{_f(x.server_cpu_ms_per_request, '.3f'):>9}"
            f"{x.requests:>7}{x.errors:>5}"
        )
    return "\n".join(rows)


def ratios_table(comparisons: Sequence[Comparison]) -> str:
    head = (
        f"{'mode':<7}{'conc':>5}{'added p50':>11}{'added TTFT':>12}{'overhead':>10}"
        f"{'Ciyuan/direct':>15}{'Ciyuan/LiteLLM':>16}{'LiteLLM +p50':>14}{'LiteLLM +TTFT':>15}"
        f"{'LiteLLM cpu/req':>17}"
    )
    rows = [head, "-" * len(head)]
    for c in comparisons:
        rows.append(
            f"{c.mode:<7}{c.concurrency:>5}{_f(c.added_p50_ms):>11}{_f(c.added_ttft_p50_ms):>12}"
            f"{_f(c.overhead_p50_ms, '.3f'):>10}{_f(c.ciyuan_over_direct):>15}"
            f"{_f(c.ciyuan_over_litellm, '.1f'):>16}{_f(c.litellm_added_p50_ms):>14}"
            f"{_f(c.litellm_added_ttft_p50_ms):>15}{_times(c.litellm_cpu_over_ciyuan):>17}"
        )
    return "\n".join(rows)


def targets_table(checks: Sequence[TargetCheck]) -> str:
    mark = {True: "met", False: "MISSED", None: "not measured"}
    return "\n".join(f"  {c.name:<42}{c.value:>9}  {mark[c.met]}" for c in checks)


def write_json(path: Path, meta: dict[str, Any], payload: dict[str, Sequence[Any]]) -> None:
    """``payload`` holds lists of dataclasses (cells, comparisons, targets, profiles)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {"meta": meta}
    document.update({k: [asdict(item) for item in v] for k, v in payload.items()})
    path.write_text(json.dumps(document, indent=2) + "\n")
