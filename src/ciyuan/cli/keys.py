"""``ciyuan keys``: API keys, shown once at creation and stored only as hashes."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ciyuan import apikeys
from ciyuan.cli.context import opened_store
from ciyuan.cli.output import JsonOption, console, emit, table
from ciyuan.clock import us_to_datetime
from ciyuan.metering.ports import ApiKeyRecord

group = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


def key_json(record: ApiKeyRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "prefix": record.prefix,
        "account": record.account_name,
        "label": record.label,
        "created": us_to_datetime(record.created_us).isoformat(),
        "revoked": us_to_datetime(record.revoked_us).isoformat() if record.revoked_us else None,
    }


@group.command("create")
def create(
    ctx: typer.Context,
    account: Annotated[str, typer.Option("--account", help="Account the key spends from.")],
    label: Annotated[
        str | None, typer.Option("--label", help="A note to recognise the key by.")
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """Create an API key. The key is printed once and cannot be shown again."""
    new = apikeys.generate()
    with opened_store(ctx, as_json=as_json) as store:
        owner = store.get_account(account)
        record = store.create_api_key(owner.id, new.prefix, new.hash_hex, label)
    if as_json:
        emit(
            {
                "key": new.secret.reveal(),
                **{k: v for k, v in key_json(record).items() if k != "key"},
            },
            as_json=True,
        )
        return
    console.print(f"created API key [bold]{record.prefix}[/bold] for account {owner.name}")
    console.print("Store it now: it is shown only once.")
    print(new.secret.reveal())


@group.command("list")
def list_(
    ctx: typer.Context,
    account: Annotated[
        str | None, typer.Option("--account", help="Only this account's keys.")
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """List API keys by prefix (the secret part is never stored)."""
    with opened_store(ctx, as_json=as_json) as store:
        owner_id = store.get_account(account).id if account else None
        records = store.list_api_keys(owner_id)
    rows = [key_json(r) for r in records]
    emit(
        {"keys": rows},
        as_json=as_json,
        human=table(
            "API keys",
            ["Prefix", "Account", "Label", "Created", "Revoked"],
            [
                [r["prefix"], r["account"], r["label"], r["created"], r["revoked"] or ""]
                for r in rows
            ],
        ),
    )


@group.command("revoke")
def revoke(
    ctx: typer.Context,
    prefix_or_id: Annotated[str, typer.Argument(help="The key's prefix (ck-…) or id (key_…).")],
    as_json: bool = JsonOption,
) -> None:
    """Revoke an API key; every gateway refuses it within the auth cache TTL."""
    with opened_store(ctx, as_json=as_json) as store:
        record = store.revoke_api_key(prefix_or_id)
    emit(
        {"key": key_json(record)},
        as_json=as_json,
        human=f"revoked API key [bold]{record.prefix}[/bold]",
    )


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="keys")
