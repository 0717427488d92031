"""``ciyuan credits``: grant prepaid credit and read balances."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

import typer

from ciyuan.cli.context import opened_store
from ciyuan.cli.output import JsonOption, emit, fail
from ciyuan.clock import datetime_to_us, us_to_datetime
from ciyuan.pricing.money import CURRENCY, Amount, MoneyError

group = typer.Typer(help="Grant, refund and expire credit; show balances.", no_args_is_help=True)


def parse_expiry(text: str) -> int:
    """``2026-12-31`` (midnight UTC) or an ISO time with its offset; a naive time is refused."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime_to_us(datetime(day.year, day.month, day.day, tzinfo=UTC))
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise ValueError(f"--expires {text!r} is not an ISO date or time: {error}") from None
    if moment.tzinfo is None:
        raise ValueError(f"--expires {text!r} has no UTC offset: add Z or +08:00")
    return datetime_to_us(moment)


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
    expires: Annotated[
        str | None,
        typer.Option(
            "--expires", help="When what is left of it expires: 2026-12-31 (UTC), ISO time."
        ),
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """Add prepaid credit to an account (a transfer from the funding account)."""
    try:
        value = Amount.parse(amount)
        expires_us = parse_expiry(expires) if expires else None
    except (MoneyError, ValueError) as error:
        fail(str(error), as_json=as_json)
    with opened_store(ctx, as_json=as_json) as store:
        owner = store.get_account(account)
        transfer = store.grant(
            owner.id, value, idempotency_key=idempotency_key, expires_us=expires_us
        )
        balance = store.balance(owner.id)
    expiry = us_to_datetime(expires_us).isoformat() if expires_us else None
    emit(
        {
            "account": owner.name,
            "transfer_id": transfer.id,
            "amount": str(transfer.amount),
            "currency": CURRENCY,
            "balance": str(balance.available),
            "expires": expiry,
            "chain_seq": transfer.seq,
        },
        as_json=as_json,
        human=f"granted {transfer.amount} {CURRENCY} to {owner.name}"
        f"{f', expiring {expiry}' if expiry else ''}; available balance {balance.available}",
    )


@group.command("refund")
def refund(
    ctx: typer.Context,
    request_id: Annotated[str, typer.Argument(help="The request whose charge is refunded.")],
    amount: Annotated[
        str | None, typer.Argument(help="Amount to refund; all that is left if omitted.")
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key", help="One key per refund; default: one per request."),
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """Reverse (part of) a request's charge: a transfer from revenue back to the account."""
    try:
        value = Amount.parse(amount) if amount is not None else None
    except MoneyError as error:
        fail(str(error), as_json=as_json)
    with opened_store(ctx, as_json=as_json) as store:
        transfer = store.refund(request_id, value, idempotency_key=idempotency_key)
        balance = store.balance(transfer.credit_account_id)
    emit(
        {
            "request_id": request_id,
            "transfer_id": transfer.id,
            "amount": str(transfer.amount),
            "currency": CURRENCY,
            "balance": str(balance.available),
        },
        as_json=as_json,
        human=f"refunded {transfer.amount} {CURRENCY} of {request_id}; "
        f"available balance {balance.available}",
    )


@group.command("expire")
def expire(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Book expired grants and overdue holds now (the gateway's sweeper also does this)."""
    with opened_store(ctx, as_json=as_json) as store:
        count = store.expire_reservations()
    emit({"expired": count}, as_json=as_json, human=f"expired {count} holds and grant lots")


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
