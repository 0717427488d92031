"""``ciyuan top``: a live view of the gateway's traffic, read from the database every second.

Rates are over a sliding window (the last ``--window`` seconds of recorded usage), so the view
works beside any number of gateway processes sharing the database, and needs none of them to
be reachable. ``--once`` prints one frame and exits (for scripts and tests).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live

from ciyuan.cli.context import opened_store
from ciyuan.cli.output import JsonOption, console, emit, table
from ciyuan.clock import SystemClock
from ciyuan.metering.ports import Store
from ciyuan.pricing.money import CURRENCY, Amount
from ciyuan.reports.buckets import DAY_US, floor_us

WINDOW_S_DEFAULT = 60
KEYS_SHOWN_MAX = 20


def frame(store: Store, *, now_us: int, window_s: int, account_id: str | None) -> dict[str, Any]:
    """One frame: totals and rates over the window, and per key, with today's spend (UTC)."""
    recent = store.usage_report(
        group_by=["account", "key"], since_us=now_us - window_s * 1_000_000, until_us=now_us,
        account_id=account_id,
    )  # fmt: skip
    today = store.usage_report(
        group_by=["account", "key"], since_us=floor_us(now_us, DAY_US), until_us=now_us,
        account_id=account_id,
    )  # fmt: skip
    spent_today = {(r.group["account"], r.group["key"]): r.cost for r in today}
    keys = []
    for row in sorted(recent, key=lambda r: (-r.cost.nanos, -r.requests))[:KEYS_SHOWN_MAX]:
        tokens = row.input_tokens + row.output_tokens
        today_cost = spent_today.get((row.group["account"], row.group["key"]), Amount(0))
        keys.append({
            "account": row.group["account"], "key": row.group["key"],
            "requests_per_s": round(row.requests / window_s, 3),
            "tokens_per_s": round(tokens / window_s, 1), "errors": row.errors,
            "spend_window": str(row.cost),
            "spend_today": str(today_cost),
        })  # fmt: skip
    requests = sum(r.requests for r in recent)
    tokens = sum(r.input_tokens + r.output_tokens for r in recent)
    return {
        "window_s": window_s, "currency": CURRENCY,
        "requests_per_s": round(requests / window_s, 3),
        "tokens_per_s": round(tokens / window_s, 1),
        "spend_window": str(Amount(sum(r.cost.nanos for r in recent))),
        "spend_today": str(Amount(sum(r.cost.nanos for r in today))), "keys": keys,
    }  # fmt: skip


def render(data: dict[str, Any]) -> Group:
    head = (
        f"[bold]{data['requests_per_s']}[/bold] req/s  [bold]{data['tokens_per_s']}[/bold] "
        f"tokens/s  spend {data['spend_window']} in {data['window_s']} s, "
        f"{data['spend_today']} today ({data['currency']})"
    )
    grid = table(
        "Spend by key",
        ["Account", "Key", "Req/s", "Tokens/s", "Errors", "Spend (window)", "Spend today"],
        [[k["account"], k["key"], k["requests_per_s"], k["tokens_per_s"], k["errors"],
          k["spend_window"], k["spend_today"]] for k in data["keys"]],
    )  # fmt: skip
    return Group(head, grid)


def top(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Print one frame and exit.")] = False,
    window_s: Annotated[
        int, typer.Option("--window", min=1, max=3600, help="Seconds the rates are over.")
    ] = WINDOW_S_DEFAULT,
    account: Annotated[
        str | None, typer.Option("--account", help="Only this account's keys.")
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """Live requests/s, tokens/s and spend by key, refreshed from the database every second."""
    clock = SystemClock()
    with opened_store(ctx, as_json=as_json) as store:
        account_id = store.get_account(account).id if account else None
        data = frame(store, now_us=clock.now_us(), window_s=window_s, account_id=account_id)
        if once or as_json:
            emit(data, as_json=as_json, human=render(data))
            return
        with Live(render(data), console=console, refresh_per_second=4) as live:
            try:
                while True:
                    time.sleep(1)
                    now_us = clock.now_us()
                    data = frame(store, now_us=now_us, window_s=window_s, account_id=account_id)
                    live.update(render(data))
            except KeyboardInterrupt:
                pass


def register(app: typer.Typer) -> None:
    app.command("top")(top)
