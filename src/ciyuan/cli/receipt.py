"""``ciyuan receipt``: fetch a request's receipt, and check one offline with the public key."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from ciyuan.cli.context import opened_store
from ciyuan.cli.ledger import read_public_key
from ciyuan.cli.output import JsonOption, emit, emit_json, fail
from ciyuan.ledger.checkpoints import KeyFormatError, load_public_key
from ciyuan.ledger.receipts import verify_receipt

group = typer.Typer(help="Receipts: what a request was charged, provably.", no_args_is_help=True)


@group.command("show")
def show(
    ctx: typer.Context,
    request_id: Annotated[
        str, typer.Argument(help="The request id (the gateway's receipt id header).")
    ],
    as_json: bool = JsonOption,
) -> None:
    """Print the receipt of a request as JSON (the same document the gateway serves)."""
    with opened_store(ctx, as_json=as_json) as store:
        document = store.receipt(request_id)
    emit_json(document)


@group.command("verify")
def verify(
    file: Annotated[Path, typer.Argument(help="The receipt JSON file ('-' for stdin).")],
    public_key: Annotated[
        str,
        typer.Option("--public-key", help="The operator's public key (hex, base64, PEM or file)."),
    ],
    as_json: bool = JsonOption,
) -> None:
    """Check a receipt with no access to the database: signature, Merkle proof (or chain
    segment), transfers (exit 2)."""
    try:
        key = load_public_key(read_public_key(public_key))
        raw = typer.get_binary_stream("stdin").read() if str(file) == "-" else file.read_bytes()
        document: Any = orjson.loads(raw)
    except (OSError, KeyFormatError, orjson.JSONDecodeError) as error:
        fail(str(error), as_json=as_json)
    if not isinstance(document, dict):
        fail("a receipt is a JSON object", as_json=as_json)
    check = verify_receipt(document, key)
    emit(
        {
            "ok": check.ok,
            "problem": check.problem,
            "request_id": check.request_id,
            "checkpoint_seq": check.checkpoint_seq,
            "charged": str(check.charged) if check.charged is not None else None,
        },
        as_json=as_json,
        human=f"receipt verified: request {check.request_id} charged {check.charged}, "
        f"covered by checkpoint {check.checkpoint_seq}"
        if check.ok
        else f"[red]receipt does not verify[/red]: {check.problem}",
    )
    if not check.ok:
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="receipt")
