"""``ciyuan usage``: requests, model tokens and cost, by model."""

from __future__ import annotations

from typing import Annotated

import typer

from ciyuan.cli.context import opened_store
from ciyuan.cli.output import JsonOption, emit, table
from ciyuan.pricing.money import CURRENCY, total


def usage(
    ctx: typer.Context,
    account: Annotated[
        str | None, typer.Option("--account", help="Only this account's usage.")
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """Show requests, tokens and cost by model."""
    with opened_store(ctx, as_json=as_json) as store:
        account_id = store.get_account(account).id if account else None
        rows = store.usage_by_model(account_id)
    lines = [
        {
            "model": r.group,
            "requests": r.requests,
            "input_tokens": r.input_tokens,
            "cached_tokens": r.cached_tokens,
            "output_tokens": r.output_tokens,
            "cost": str(r.cost),
        }
        for r in rows
    ]
    summary = {
        "requests": sum(r.requests for r in rows),
        "input_tokens": sum(r.input_tokens for r in rows),
        "cached_tokens": sum(r.cached_tokens for r in rows),
        "output_tokens": sum(r.output_tokens for r in rows),
        "cost": str(total([r.cost for r in rows])),
    }
    grid = table(
        f"Usage ({CURRENCY})" + (f" for {account}" if account else ""),
        ["Model", "Requests", "Input", "Cached", "Output", "Cost"],
        [
            [
                x["model"],
                x["requests"],
                x["input_tokens"],
                x["cached_tokens"],
                x["output_tokens"],
                x["cost"],
            ]
            for x in lines
        ]
        + [["total", *summary.values()]],
    )
    emit({"usage": lines, "total": summary, "currency": CURRENCY}, as_json=as_json, human=grid)


def register(app: typer.Typer) -> None:
    app.command("usage")(usage)
