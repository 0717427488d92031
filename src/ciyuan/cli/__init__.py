"""The ``ciyuan`` command: one typer app, one module per command group.

Every command takes ``--json`` and then prints exactly one JSON object on stdout. The global
``--db URL`` (or ``CIYUAN_DB``) picks the database for every command that needs one.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Annotated

import typer

from ciyuan.cli import (
    accounts,
    budgets,
    cost,
    count,
    credits,
    demo_upstream,
    export,
    invoice,
    keys,
    ledger,
    prices,
    receipt,
    serve,
    top,
    usage,
)
from ciyuan.cli.context import CliContext

app = typer.Typer(
    name="ciyuan",
    help="Ciyuan (词元): the token meter for AI compute. An exact, prepaid-credit LLM gateway.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ciyuan {version('ciyuan')}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option(
            "--db", envvar="CIYUAN_DB", help="Database URL: sqlite:///path or postgresql://…"
        ),
    ] = None,
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Operate the gateway: accounts, API keys, credits, usage, and the server itself."""
    ctx.obj = CliContext(db=db)


for module in (
    accounts,
    keys,
    budgets,
    credits,
    ledger,
    receipt,
    usage,
    top,
    invoice,
    export,
    count,
    prices,
    cost,
    serve,
    demo_upstream,
):
    module.register(app)


def main() -> None:
    app()
