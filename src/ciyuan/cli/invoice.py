"""``ciyuan invoice``: one account's invoice or statement for a month, from the ledger.

The figures sum exactly (opening + grants - charges + refunds - expiries = closing) and name the
chain entry they come from. ``--format csv`` is the statement (every line's effect on the
balance, with the running balance); ``pdf`` needs ``--output``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ciyuan.cli.context import opened_store
from ciyuan.cli.output import JsonOption, console, emit, fail, table
from ciyuan.reports.invoice import Invoice, build_invoice
from ciyuan.reports.periods import PeriodError, month_range
from ciyuan.reports.render import invoice_html, statement_csv

FORMATS = ("json", "html", "pdf", "csv")


def _rendered(invoice: Invoice, fmt: str) -> bytes:
    if fmt == "html":
        return invoice_html(invoice).encode()
    if fmt == "csv":
        return statement_csv(invoice).encode()
    if fmt == "pdf":
        from ciyuan.reports.pdf import invoice_pdf  # fpdf2 loads only when a PDF is asked for

        return invoice_pdf(invoice)
    import orjson

    return orjson.dumps(invoice.to_dict(), option=orjson.OPT_INDENT_2) + b"\n"


def invoice(
    ctx: typer.Context,
    account: Annotated[str, typer.Argument(help="The account's name or id.")],
    period: Annotated[str, typer.Option("--period", help="The month, e.g. 2026-11 (UTC).")],
    fmt: Annotated[
        str | None, typer.Option("--format", help="json, html, pdf, or csv (the statement).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file, not stdout.")
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """Build an account's invoice (or CSV statement) for a month, exactly from the ledger."""
    chosen = fmt or ("json" if as_json else None)
    if chosen is not None and chosen not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, not {chosen!r}", as_json=as_json)
    if chosen == "pdf" and output is None:
        fail("a PDF needs --output FILE", as_json=as_json)
    try:
        since_us, until_us = month_range(period)
    except PeriodError as error:
        fail(str(error), as_json=as_json)
    with opened_store(ctx, as_json=as_json) as store:
        found = store.get_account(account)
        statement = store.statement(found.id, since_us=since_us, until_us=until_us)
    bill = build_invoice(statement, period.strip())
    if chosen is None:
        _show(bill)
        return
    body = _rendered(bill, chosen)
    if output is None:
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
        return
    output.write_bytes(body)
    summary = {"written": str(output), "format": chosen, "invoice": bill.number,
               "closing": str(bill.closing)}  # fmt: skip
    emit(summary, as_json=as_json, human=f"wrote {chosen} invoice {bill.number} to {output}")


def _show(bill: Invoice) -> None:
    console.print(table(f"Invoice {bill.number} ({bill.currency})", ["Line", "Amount"],
                        [[label, str(amount)] for _, label, amount in bill.summary()]))  # fmt: skip
    console.print(
        table(
            "Usage by model",
            ["Model", "Requests", "Input", "Cached", "Output", "Cost"],
            [
                [
                    m.model,
                    m.requests,
                    m.input_tokens,
                    m.cached_tokens,
                    m.output_tokens,
                    str(m.charged),
                ]
                for m in bill.usage
            ],
        )
    )
    console.print(f"ledger chain entry {bill.chain_seq} {bill.chain_hash}")


def register(app: typer.Typer) -> None:
    app.command("invoice")(invoice)
