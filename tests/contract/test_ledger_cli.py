"""The ledger's CLI commands end to end on SQLite and PostgreSQL, through a typer app built
the way ``ciyuan.cli`` builds its own: grant with expiry, history, verify, reconcile,
checkpoint, receipt show and offline receipt verify, each with ``--json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner

from ciyuan.cli import accounts, credits, ledger, receipt
from ciyuan.cli.context import CliContext
from ciyuan.pricing.money import Amount
from ciyuan.store import open_store
from tests.contract.ledger_helpers import event, raw


def build_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root(ctx: typer.Context, db: str = typer.Option(..., "--db")) -> None:
        ctx.obj = CliContext(db=db)

    for module in (accounts, credits, ledger, receipt):
        module.register(app)
    return app


def run(db_url: str, *args: str, code: int = 0) -> dict[str, Any]:
    result = CliRunner().invoke(build_app(), ["--db", db_url, *args, "--json"])
    assert result.exit_code == code, result.output
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def test_the_ledger_commands(db_url: str, tmp_path: Path) -> None:
    run(db_url, "accounts", "create", "acme")
    granted = run(
        db_url, "credits", "grant", "acme", "5", "--expires", "2999-01-01", "--idempotency-key", "k"
    )
    assert granted["expires"].startswith("2999-01-01") and granted["chain_seq"] == 1
    assert (
        run(
            db_url,
            "credits",
            "grant",
            "acme",
            "5",
            "--expires",
            "2999-01-01",
            "--idempotency-key",
            "k",
        )
        == granted
    )
    store = open_store(db_url)
    acme = store.get_account("acme")
    hold = store.reserve(acme.id, Amount.parse("1"), request_id="req-1", timeout_s=60)
    store.settle(hold, Amount.parse("0.25"), event(acme.id, "req-1"))
    store.close()
    assert run(db_url, "credits", "refund", "req-1", "0.05")["amount"] == "0.05"
    lines = run(db_url, "ledger", "history", "acme")["transfers"]
    assert [line["kind"] for line in lines] == ["refund", "charge", "grant"]
    assert lines[0]["posted_after"] == "4.80"
    assert run(db_url, "ledger", "verify")["ok"]
    assert run(db_url, "ledger", "reconcile")["ok"]

    key_file = tmp_path / "operator.pem"
    public_key = run(db_url, "ledger", "keygen", str(key_file))["public_key"]
    signed = run(db_url, "ledger", "checkpoint", "--key", str(key_file))
    assert signed["seq"] == 3 and signed["public_key"] == public_key
    assert run(db_url, "ledger", "verify", "--public-key", public_key)["ok"]
    signed_root = raw(db_url, "SELECT merkle_root FROM checkpoints")[0][0]
    raw(db_url, "UPDATE checkpoints SET merkle_root = ?", ("00" * 32,))
    problem = run(db_url, "ledger", "verify", "--public-key", public_key, code=2)["problem"]
    assert (problem["seq"], problem["kind"]) == (3, "altered")
    raw(db_url, "UPDATE checkpoints SET merkle_root = ?", (signed_root,))

    document = CliRunner().invoke(build_app(), ["--db", db_url, "receipt", "show", "req-1"]).stdout
    receipt_file = tmp_path / "receipt.json"
    receipt_file.write_text(document)
    checked = run("unused", "receipt", "verify", str(receipt_file), "--public-key", public_key)
    assert checked["ok"] and checked["charged"] == "0.20"

    raw(db_url, "UPDATE transfers SET amount_nanos = 1 WHERE seq = 2")
    problem = run(db_url, "ledger", "verify", code=2)["problem"]
    assert (problem["seq"], problem["kind"]) == (2, "altered")
    assert not run(db_url, "ledger", "reconcile", code=2)["ok"]
