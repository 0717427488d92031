"""``ciyuan credits``: grant prepaid credit and read balances."""

from __future__ import annotations

from typing import Annotated

import typer

from ciyuan.cli.context import opened_store
from ciyuan.cli.output import JsonOption, emit, fail
from ciyuan.pricing.money import CURRENCY, Amount, MoneyError

group = typer.Typer(help="Grant credit and show balances.", no_args_is_help=True)


@group.command("grant")
def grant(
    ctx: typer.Context,
    account: Annotated[str, typer.Argument(help="Account name.")],
    amount: Annotated[
        str, typer.Argument(help=f"Amount in {CURRENCY} as a decimal string: 10, 0.25")
    ],
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key", help="Repeating a grant with the same key changes nothing."
        ),
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """Add prepaid credit to an account (a transfer from the funding account)."""
    try:
        value = Amount.parse(amount)
    except MoneyError as error:
        fail(str(error), as_json=as_json)
    with opened_store(ctx, as_json=as_json) as store:
        owner = store.get_account(account)
        transfer = store.grant(owner.id, value, idempotency_key=idempotency_key)
        balance = store.balance(owner.id)
    emit(
        {
            "account": owner.name,
            "transfer_id": transfer.id,
            "amount": str(transfer.amount),
            "currency": CURRENCY,
            "balance": str(balance.available),
        },
        as_json=as_json,
        human=f"granted {transfer.amount} {CURRENCY} to {owner.name}; "
        f"available balance {balance.available}",
    )


@group.command("balance")
def balance(
    ctx: typer.Context,
    account: Annotated[str, typer.Argument(help="Account name.")],
    as_json: bool = JsonOption,
) -> None:
    """Show an account's balance: available = posted − held by requests in flight."""
    with opened_store(ctx, as_json=as_json) as store:
        owner = store.get_account(account)
    current = owner.balance
    emit(
        {
            "account": owner.name,
            "currency": CURRENCY,
            "balance": str(current.available),
            "posted": str(current.posted),
            "pending": str(current.pending),
        },
        as_json=as_json,
        human=f"{owner.name}: {current.available} {CURRENCY} available "
        f"({current.posted} posted, {current.pending} held)",
    )


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="credits")
