"""``ciyuan ledger``: an account's history, chain verification, reconciliation, checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ciyuan.cli.context import opened_store
from ciyuan.cli.output import JsonOption, emit, fail, table
from ciyuan.clock import us_to_datetime
from ciyuan.ledger.checkpoints import (
    KeyFormatError,
    load_private_key,
    load_public_key,
    new_private_key_pem,
)
from ciyuan.pricing.money import CURRENCY, Amount

group = typer.Typer(
    help="Audit the ledger: history, verify, reconcile, signed checkpoints.", no_args_is_help=True
)

KeyOption = typer.Option(
    "--key", help="The operator's Ed25519 private key file (PEM, from `ledger keygen`)."
)


def read_public_key(text: str) -> str:
    """``--public-key`` may be the key itself or a file holding it."""
    path = Path(text)
    return path.read_text() if len(text) < 4096 and path.is_file() else text


@group.command("history")
def history(
    ctx: typer.Context,
    account: Annotated[str, typer.Argument(help="Account name.")],
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10_000, help="How many transfers, newest first.")
    ] = 50,
    before: Annotated[
        int | None, typer.Option("--before", help="Only transfers before this chain position.")
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """An account's transfers, newest first, each with the posted balance after it."""
    with opened_store(ctx, as_json=as_json) as store:
        owner = store.get_account(account)
        lines = store.history(owner.id, limit=limit, before_seq=before)
        names = {a.id: a.name for a in store.list_accounts()}
    rows = [
        {
            "seq": line.transfer.seq,
            "time": us_to_datetime(line.transfer.created_us).isoformat(),
            "kind": line.transfer.kind.value,
            "change": str(Amount(line.change_nanos)),
            "counterparty": names.get(
                line.transfer.debit_account_id
                if line.transfer.credit_account_id == owner.id
                else line.transfer.credit_account_id,
                "?",
            ),
            "reference": line.transfer.reference,
            "posted_after": str(Amount(line.posted_after_nanos)),
            "transfer_id": line.transfer.id,
        }
        for line in lines
    ]
    emit(
        {"account": owner.name, "currency": CURRENCY, "transfers": rows},
        as_json=as_json,
        human=table(
            f"{owner.name} ({CURRENCY})",
            ["seq", "time", "kind", "change", "counterparty", "reference", "posted"],
            [
                [
                    r["seq"],
                    r["time"],
                    r["kind"],
                    r["change"],
                    r["counterparty"],
                    r["reference"],
                    r["posted_after"],
                ]
                for r in rows
            ],
        ),
    )


@group.command("verify")
def verify(
    ctx: typer.Context,
    public_key: Annotated[
        str | None,
        typer.Option(
            "--public-key",
            help="Also check every checkpoint's signature (hex, base64, PEM or file).",
        ),
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """Walk the hash chain; report the first transfer altered, removed or reordered (exit 2)."""
    try:
        key = load_public_key(read_public_key(public_key)) if public_key else None
    except KeyFormatError as error:
        fail(str(error), as_json=as_json)
    with opened_store(ctx, as_json=as_json) as store:
        report = store.verify_chain(public_key=key)
    problem = report.problem
    data = report.to_dict()
    human = (
        f"chain verified: {report.entries_checked} transfers, head {report.head_seq} "
        f"{report.head_hash[:16]}…"
        if problem is None
        else f"[red]chain broken[/red] at position {problem.seq} ({problem.kind}): {problem.detail}"
    )
    emit(data, as_json=as_json, human=human)
    if problem is not None:
        raise typer.Exit(2)


@group.command("reconcile")
def reconcile(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Recompute every balance from the transfers and open holds; report differences (exit 2)."""
    with opened_store(ctx, as_json=as_json) as store:
        report = store.reconcile()
    human = (
        f"{report.accounts_checked} accounts reconcile; posted balances sum to zero"
        if report.ok
        else table(
            f"differences (posted sum {report.posted_sum_nanos} nanos)",
            ["account", "field", "stored", "recomputed"],
            [[d.account_name, d.field, d.stored, d.recomputed] for d in report.differences],
        )
    )
    emit(report.to_dict(), as_json=as_json, human=human)
    if not report.ok:
        raise typer.Exit(2)


@group.command("checkpoint")
def checkpoint(
    ctx: typer.Context,
    key_file: Annotated[Path, KeyOption],
    as_json: bool = JsonOption,
) -> None:
    """Verify what came after the last checkpoint, then sign the chain head (operator's key)."""
    try:
        key = load_private_key(key_file.read_bytes())
    except (OSError, KeyFormatError) as error:
        fail(f"cannot read the key file: {error}", as_json=as_json)
    with opened_store(ctx, as_json=as_json) as store:
        report, signed = store.checkpoint(key)
    if signed is None:
        problem = report.problem
        assert problem is not None
        fail(
            f"not signed: the chain is broken at {problem.seq} ({problem.kind}): {problem.detail}",
            as_json=as_json,
        )
    emit(
        signed.to_dict(),
        as_json=as_json,
        human=f"signed checkpoint at position {signed.seq} ({signed.hash[:16]}…) with key "
        f"{signed.public_key[:16]}…",
    )


@group.command("keygen")
def keygen(
    path: Annotated[
        Path, typer.Argument(help="Where to write the new private key (PEM); must not exist.")
    ],
    as_json: bool = JsonOption,
) -> None:
    """Create the operator's Ed25519 signing key; publish the printed public key to customers."""
    pem, public_hex = new_private_key_pem()
    try:
        with path.open("xb") as handle:  # never overwrite a key that signed checkpoints
            path.chmod(0o600)
            handle.write(pem)
    except OSError as error:
        fail(f"cannot create {path}: {error}", as_json=as_json)
    emit(
        {"key_file": str(path), "public_key": public_hex},
        as_json=as_json,
        human=f"public key: {public_hex}",
    )


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="ledger")
