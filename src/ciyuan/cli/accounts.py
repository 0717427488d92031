"""``ciyuan accounts``: customer accounts that hold prepaid credit."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ciyuan.cli.context import opened_store
from ciyuan.cli.output import JsonOption, emit, table
from ciyuan.clock import us_to_datetime
from ciyuan.ledger.accounts import Account

group = typer.Typer(help="Create and list accounts.", no_args_is_help=True)


def account_json(account: Account) -> dict[str, Any]:
    balance = account.balance
    return {
        "id": account.id,
        "name": account.name,
        "kind": account.kind.value,
        "balance": str(balance.posted),
        "available": str(balance.available),
        "pending": str(balance.pending),
        "created": us_to_datetime(account.created_us).isoformat(),
    }


@group.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Account name: letters, digits and - _ . @")],
    as_json: bool = JsonOption,
) -> None:
    """Create a customer account with a zero balance."""
    with opened_store(ctx, as_json=as_json) as store:
        account = store.create_account(name)
    emit(
        {"account": account_json(account)},
        as_json=as_json,
        human=f"created account [bold]{name}[/bold] ({account.id})",
    )


@group.command("list")
def list_(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """List accounts with their balances."""
    with opened_store(ctx, as_json=as_json) as store:
        accounts = store.list_accounts()
    rows = [account_json(a) for a in accounts]
    emit(
        {"accounts": rows},
        as_json=as_json,
        human=table(
            "Accounts",
            ["Name", "Kind", "Balance", "Available", "Pending", "Id"],
            [
                [r["name"], r["kind"], r["balance"], r["available"], r["pending"], r["id"]]
                for r in rows
            ],
        ),
    )


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="accounts")
