"""``ciyuan usage``: requests, model tokens and cost, grouped and over a period.

Answered from the rollups (fast over millions of requests) unless ``--source raw`` asks for the
raw events, which also give latency percentiles. ``--by tag:team`` groups by a key's tag, from
the raw events (rollups carry no tags). ``--csv`` writes one row per group with a
header, for spreadsheets; ``--json`` one object.
"""

from __future__ import annotations

import csv
import sys
from typing import Annotated, Any

import typer

from ciyuan.cli.context import opened_store
from ciyuan.cli.output import JsonOption, emit, fail, table
from ciyuan.metering.ports import GROUPS, TAG_GROUP_PREFIX, ReportRow
from ciyuan.pricing.money import CURRENCY, Amount
from ciyuan.reports.periods import PeriodError, parse_when

_MEASURES = (
    "requests", "errors", "input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens",
    "cost", "latency_ms_p50", "latency_ms_p99", "ttft_ms_p50",
)  # fmt: skip


def row_dict(row: ReportRow) -> dict[str, Any]:
    """A report row as flat JSON: its groups, then its measures (cost as an exact decimal)."""
    measures = {name: getattr(row, name) for name in _MEASURES}
    measures["cost"] = str(row.cost)
    return {**row.group, **measures}


def total_dict(rows: list[ReportRow]) -> dict[str, Any]:
    fields = _MEASURES[:6]
    summary: dict[str, Any] = {f: sum(getattr(r, f) for r in rows) for f in fields}
    summary["cost"] = str(Amount(sum(r.cost.nanos for r in rows)))
    return summary


def usage(
    ctx: typer.Context,
    by: Annotated[
        list[str] | None,
        typer.Option(
            "--by",
            help=f"Group by (repeatable, in order): {', '.join(GROUPS)}, or "
            f"{TAG_GROUP_PREFIX}NAME for a key tag (read from raw events).",
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="From this date or time (UTC), inclusive.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Up to this date or time (UTC), exclusive.")
    ] = None,
    account: Annotated[
        str | None, typer.Option("--account", help="Only this account's usage.")
    ] = None,
    source: Annotated[
        str, typer.Option("--source", help="auto (rollups), rollup, or raw (with percentiles).")
    ] = "auto",
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV on stdout.")] = False,
    as_json: bool = JsonOption,
) -> None:
    """Show requests, tokens and cost, grouped by account, key, model, key tag, day or hour."""
    group_by = by or ["model"]
    try:
        since_us = parse_when(since) if since else None
        until_us = parse_when(until) if until else None
    except PeriodError as error:
        fail(str(error), as_json=as_json)
    with opened_store(ctx, as_json=as_json) as store:
        account_id = store.get_account(account).id if account else None
        rows = store.usage_report(
            group_by=group_by, since_us=since_us, until_us=until_us, account_id=account_id,
            source=source,
        )  # fmt: skip
    lines = [row_dict(r) for r in rows]
    if as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=[*group_by, *_MEASURES])
        writer.writeheader()
        writer.writerows(lines)
        return
    summary = total_dict(rows)
    data = {
        "group_by": group_by, "since": since, "until": until, "account": account,
        "currency": CURRENCY, "usage": lines, "total": summary,
    }  # fmt: skip
    percentiles = source == "raw"
    columns = [*group_by, "requests", "errors", "input", "cached", "output", "cost"]
    if percentiles:
        columns += ["p50 ms", "p99 ms", "ttft p50"]
    cells = [
        [*(x[g] for g in group_by), x["requests"], x["errors"], x["input_tokens"],
         x["cached_tokens"], x["output_tokens"], x["cost"],
         *([x["latency_ms_p50"], x["latency_ms_p99"], x["ttft_ms_p50"]] if percentiles else [])]
        for x in lines
    ]  # fmt: skip
    cells.append(
        ["total", *([""] * (len(group_by) - 1)), summary["requests"], summary["errors"],
         summary["input_tokens"], summary["cached_tokens"], summary["output_tokens"],
         summary["cost"]]
    )  # fmt: skip
    title = f"Usage ({CURRENCY})" + (f" for {account}" if account else "")
    emit(data, as_json=as_json, human=table(title, [c.title() for c in columns], cells))


def register(app: typer.Typer) -> None:
    app.command("usage")(usage)
