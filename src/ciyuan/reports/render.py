"""An invoice as HTML (self-contained: inline CSS, no scripts, no fetches) and as a CSV
statement. Amounts are printed exactly (``Amount.__str__``), never rounded for display, so a
reader can re-add every figure and get the totals to the nano.
"""

from __future__ import annotations

import csv
import io
from html import escape
from typing import Final

from ciyuan.reports.invoice import Invoice, iso, unit_price

_CSS: Final = """
body{font:14px/1.45 system-ui,sans-serif;color:#1d2430;max-width:960px;
margin:32px auto;padding:0 16px}
h1{font-size:22px;margin:0}h2{font-size:16px;margin:28px 0 8px}
table{border-collapse:collapse;width:100%}th,td{padding:4px 8px;border-bottom:1px solid #e3e7ee}
th{text-align:left;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.total td,tr.total th{font-weight:700;border-top:2px solid #1d2430}
.muted{color:#6b7686}code{font-size:12px;word-break:break-all}
"""


def invoice_html(invoice: Invoice) -> str:
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>Invoice {escape(invoice.number)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Invoice {escape(invoice.number)}</h1>",
        f"<p class=muted>Account <b>{escape(invoice.account_name)}</b> "
        f"(<code>{escape(invoice.account_id)}</code>) &middot; period {escape(invoice.period)}: "
        f"{iso(invoice.since_us)} to {iso(invoice.until_us)} (exclusive) &middot; "
        f"amounts in {invoice.currency}</p>",
        "<h2>Summary</h2><table id=summary>",
    ]
    for key, label, amount in invoice.summary():
        css = " class=total" if key == "closing" else ""
        parts.append(f"<tr data-key={key}{css}><th>{label}</th><td class=n>{amount}</td></tr>")
    parts.append("</table><h2>Usage by model</h2><table id=usage><tr><th>Model</th><th>Item</th>")
    parts.append("<th class=n>Requests</th><th class=n>Tokens</th><th class=n>Unit price / 1M</th>")
    parts.append("<th class=n>Amount</th></tr>")
    for model in invoice.usage:
        tokens = (
            f"in {model.input_tokens}, cached {model.cached_tokens}, out {model.output_tokens}, "
            f"reasoning {model.reasoning_tokens}"
        )
        parts.append(
            f"<tr class=model data-model='{escape(model.model)}'><th>{escape(model.model)}</th>"
            f"<td class=muted>{tokens}</td><td class=n>{model.requests}</td><td></td><td></td>"
            f"<td class=n data-subtotal>{model.charged}</td></tr>"
        )
        for line in model.lines:
            parts.append(
                f"<tr class=line><td></td><td>{escape(line.bucket)}</td><td></td>"
                f"<td class=n>{line.tokens or ''}</td>"
                f"<td class=n>{unit_price(line.unit_nanos)}</td>"
                f"<td class=n data-amount>{line.amount}</td></tr>"
            )
    parts.append(
        f"<tr class=total><th>Total</th><td></td><td></td><td></td><td></td>"
        f"<td class=n>{invoice.charges}</td></tr></table>"
    )
    parts.append("<h2>Credits and adjustments</h2><table id=movements>")
    parts.append("<tr><th>When</th><th>Kind</th><th>Reference</th><th class=n>Amount</th></tr>")
    for m in invoice.movements:
        parts.append(
            f"<tr data-kind={m.kind}><td>{iso(m.created_us)}</td><td>{m.kind}</td>"
            f"<td>{escape(m.reference or '')}</td><td class=n>{m.amount}</td></tr>"
        )
    parts.append("</table>")
    checkpoint = invoice.checkpoint
    signed = (
        f"signed checkpoint at entry {checkpoint.seq}, hash <code>{checkpoint.hash}</code>, "
        f"key <code>{checkpoint.public_key}</code>"
        if checkpoint
        else "no signed checkpoint covers it yet"
    )
    parts.append(
        f"<h2>Ledger</h2><p id=ledger>These figures come from the ledger up to chain entry "
        f"<b id=chain-seq>{invoice.chain_seq}</b>, hash <code id=chain-hash>{invoice.chain_hash}"
        f"</code>; {signed}. Verify with <code>ciyuan ledger verify</code>.</p></body></html>"
    )
    return "".join(parts)


STATEMENT_COLUMNS: Final = (
    "section", "at", "description", "reference", "tokens", "unit_per_million", "amount",
    "balance",
)  # fmt: skip


def statement_csv(invoice: Invoice) -> str:
    """The statement as CSV: every line's signed effect on the balance and the running balance,
    from the opening balance to the closing one (usage is dated at the period's end)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(STATEMENT_COLUMNS)
    balance = invoice.opening
    writer.writerow(["opening", iso(invoice.since_us), "Opening balance", "", "", "", "", balance])
    for m in invoice.movements:
        signed = -m.amount if m.kind == "expiry" else m.amount
        balance += signed
        row = [m.kind, iso(m.created_us), m.kind, m.reference or "", "", "", signed, balance]
        writer.writerow(row)
    for model in invoice.usage:
        for line in model.lines:
            balance -= line.amount
            label = f"{model.model} {line.bucket}"
            price = unit_price(line.unit_nanos)
            row = ["usage", iso(invoice.until_us), label, "", line.tokens, price, -line.amount]
            writer.writerow([*row, balance])
    assert balance == invoice.closing, (balance, invoice.closing)
    writer.writerow(["closing", iso(invoice.until_us), "Closing balance", "", "", "", "", balance])
    return out.getvalue()
