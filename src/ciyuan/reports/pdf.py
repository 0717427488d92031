"""An invoice as PDF, drawn with fpdf2 (pure Python, no system fonts or binaries needed).

The built-in Helvetica covers Latin-1 only; account names are ASCII by rule, and any other
character (a model name, say) is replaced rather than failing the whole invoice. Every figure
is printed exactly, as in the HTML, so the text extracted from the PDF re-adds to the totals.
"""

from __future__ import annotations

from typing import Final

from fpdf import FPDF

from ciyuan.reports.invoice import Invoice, iso, unit_price

_WIDTHS: Final = (60.0, 34.0, 18.0, 24.0, 22.0, 32.0)
"""Usage table columns in mm (model, item, requests, tokens, unit price, amount): 190 in all."""


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


def invoice_pdf(invoice: Invoice) -> bytes:
    pdf = FPDF(format="A4")
    pdf.set_creator("Ciyuan")
    pdf.set_title(f"Invoice {invoice.number}")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 9, _latin1(f"Invoice {invoice.number}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    for text in (
        f"Account {invoice.account_name} ({invoice.account_id})",
        f"Period {invoice.period}: {iso(invoice.since_us)} to {iso(invoice.until_us)} (exclusive)",
        f"Amounts in {invoice.currency}",
    ):
        pdf.cell(0, 5, _latin1(text), new_x="LMARGIN", new_y="NEXT")
    _heading(pdf, "Summary")
    for key, label, amount in invoice.summary():
        pdf.set_font("Helvetica", "B" if key == "closing" else "", 10)
        pdf.cell(80, 6, label)
        pdf.cell(50, 6, str(amount), align="R", new_x="LMARGIN", new_y="NEXT")
    _heading(pdf, "Usage by model")
    _row(pdf, ("Model", "Item", "Requests", "Tokens", "Unit / 1M", "Amount"), bold=True)
    for model in invoice.usage:
        _row(pdf, (model.model, "subtotal", str(model.requests), "", "", str(model.charged)),
             bold=True)  # fmt: skip
        tokens = (
            f"in {model.input_tokens}  cached {model.cached_tokens}  out {model.output_tokens}  "
            f"reasoning {model.reasoning_tokens}"
        )
        pdf.set_font("Helvetica", "", 7)
        pdf.cell(0, 4, _latin1(tokens), new_x="LMARGIN", new_y="NEXT")
        for line in model.lines:
            unit = unit_price(line.unit_nanos)
            _row(pdf, ("", line.bucket, "", str(line.tokens or ""), unit, str(line.amount)))
    _row(pdf, ("Total", "", "", "", "", str(invoice.charges)), bold=True)
    _heading(pdf, "Credits and adjustments")
    for m in invoice.movements:
        _row(pdf, (iso(m.created_us), m.kind, "", "", "", str(m.amount)))
    _heading(pdf, "Ledger")
    pdf.set_font("Helvetica", "", 8)
    signed = (
        f"Signed checkpoint at entry {invoice.checkpoint.seq}, hash {invoice.checkpoint.hash}."
        if invoice.checkpoint
        else "No signed checkpoint covers it yet."
    )
    pdf.multi_cell(
        0, 4,
        f"Figures from the ledger up to chain entry {invoice.chain_seq}, hash "
        f"{invoice.chain_hash}. {signed} Verify with: ciyuan ledger verify",
    )  # fmt: skip
    return bytes(pdf.output())


def _heading(pdf: FPDF, text: str) -> None:
    pdf.ln(3)
    pdf.set_font("Helvetica", "B", 12)
    pdf.cell(0, 8, text, new_x="LMARGIN", new_y="NEXT")


def _row(pdf: FPDF, cells: tuple[str, ...], *, bold: bool = False) -> None:
    pdf.set_font("Helvetica", "B" if bold else "", 8)
    for index, (width, text) in enumerate(zip(_WIDTHS, cells, strict=True)):
        last = index == len(_WIDTHS) - 1
        pdf.cell(
            width, 5, _latin1(text), align="L" if index < 2 else "R",
            new_x="LMARGIN" if last else "RIGHT", new_y="NEXT" if last else "TOP",
        )  # fmt: skip
