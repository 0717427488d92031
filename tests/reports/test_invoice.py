"""Invoices sum exactly, on SQLite and PostgreSQL, and so do their renderings read back.

A seeded workload crosses the November/December boundary with grants, charges, overage,
unbilled cost, refunds and expiring grants. Each month's invoice must satisfy
opening + grants - charges + refunds - expiries = closing, continue from the month before, end
at the account's posted balance, and itemise exactly what the ledger charged. The HTML is
parsed with html.parser and the PDF with pdftotext, and their printed figures re-added.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
from collections import defaultdict
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ciyuan.clock import FixedClock
from ciyuan.pricing.money import Amount
from ciyuan.reports.invoice import Invoice, balances, build_invoice
from ciyuan.reports.pdf import invoice_pdf
from ciyuan.reports.periods import month_range
from ciyuan.reports.render import invoice_html, statement_csv
from ciyuan.store.sql_store import SqlStore
from tests.reports.workload import Workload, generate


@pytest.fixture
def work(store: SqlStore, clock: FixedClock) -> Workload:
    return generate(store, clock, seed=11, requests=500)


def invoice_for(store: SqlStore, account_id: str, period: str) -> Invoice:
    since_us, until_us = month_range(period)
    return build_invoice(store.statement(account_id, since_us=since_us, until_us=until_us), period)


def test_months_chain_and_sum_exactly(store: SqlStore, work: Workload) -> None:
    kinds_seen: set[str] = set()
    for account_id in work.account_ids:
        november = invoice_for(store, account_id, "2026-11")
        december = invoice_for(store, account_id, "2026-12")
        assert balances(november) and balances(december)
        assert november.opening == Amount(0)
        assert december.opening == november.closing
        assert december.closing == store.get_account(account_id).balance.posted
        for bill in (november, december):
            for model in bill.usage:
                assert sum(line.amount.nanos for line in model.lines) == model.charged.nanos
            kinds_seen |= {m.kind for m in bill.movements}
        # Every charged request appears once, under its model, across the two months.
        charged: dict[str, int] = defaultdict(int)
        for e in work.events:
            if e.account_id == account_id and e.cost:
                charged[e.model] += e.cost.nanos
        billed: dict[str, int] = defaultdict(int)
        for bill in (november, december):
            for model in bill.usage:
                billed[model.model] += model.charged.nanos
        assert dict(billed) == dict(charged)
    assert kinds_seen == {"grant", "refund", "expiry"}


class _Cells(HTMLParser):
    """Collects the text of cells marked data-key / data-subtotal / data-amount."""

    def __init__(self) -> None:
        super().__init__()
        self.summary: dict[str, str] = {}
        self.subtotals: list[str] = []
        self.amounts: list[str] = []
        self._row_key: str | None = None
        self._target: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr":
            self._row_key = found.get("data-key")
        if tag == "td":
            if "data-subtotal" in found:
                self._target = "subtotal"
            elif "data-amount" in found:
                self._target = "amount"
            elif self._row_key:
                self._target = "summary"

    def handle_data(self, data: str) -> None:
        if self._target == "summary" and self._row_key:
            self.summary[self._row_key] = data
        elif self._target == "subtotal":
            self.subtotals.append(data)
        elif self._target == "amount":
            self.amounts.append(data)
        self._target = None


def check_figures(
    summary: dict[str, Decimal], subtotals: list[Decimal], amounts: list[Decimal]
) -> None:
    moved = summary["grants"] - summary["charges"] + summary["refunds"] - summary["expiries"]
    assert summary["opening"] + moved == summary["closing"]
    assert sum(subtotals, Decimal(0)) == summary["charges"]
    assert sum(amounts, Decimal(0)) == summary["charges"]


def busiest(store: SqlStore, work: Workload) -> Invoice:
    bills = [invoice_for(store, a, "2026-11") for a in work.account_ids]
    return max(bills, key=lambda b: (len(b.movements), len(b.usage)))


def test_html_figures_read_back(store: SqlStore, work: Workload) -> None:
    bill = busiest(store, work)
    parser = _Cells()
    parser.feed(invoice_html(bill))
    summary = {k: Decimal(v) for k, v in parser.summary.items()}
    assert summary == {k: a.to_decimal() for k, _, a in bill.summary()}
    check_figures(
        summary, [Decimal(x) for x in parser.subtotals], [Decimal(x) for x in parser.amounts]
    )
    assert bill.chain_hash in invoice_html(bill) and len(bill.chain_hash) == 64


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext (poppler-utils) missing")
def test_pdf_figures_read_back(store: SqlStore, work: Workload, tmp_path: Path) -> None:
    bill = busiest(store, work)
    path = tmp_path / "invoice.pdf"
    path.write_bytes(invoice_pdf(bill))
    text = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    summary = {}
    for key, label, _ in bill.summary():
        found = re.search(rf"^\s*{label}\s+(-?\d+\.\d+)\s*$", text, re.MULTILINE)
        assert found, (label, text)
        summary[key] = Decimal(found.group(1))
    assert summary == {k: a.to_decimal() for k, _, a in bill.summary()}
    usage = text.split("Usage by model", 1)[1].split("Credits and adjustments", 1)[0]
    subtotals = [Decimal(m) for m in re.findall(r"subtotal\s+\d+\s+(-?\d+\.\d+)\s*$", usage, re.M)]
    total = re.search(r"^\s*Total\s+(-?\d+\.\d+)\s*$", usage, re.MULTILINE)
    assert total and Decimal(total.group(1)) == summary["charges"]
    amounts = []
    for line in usage.splitlines():
        if "subtotal" in line or line.strip().startswith(("Total", "Model", "in ")):
            continue
        found = re.search(r"(-?\d+\.\d+)\s*$", line)
        if found:
            amounts.append(Decimal(found.group(1)))
    assert len(subtotals) == len(bill.usage)
    check_figures(summary, subtotals, amounts)
    assert str(bill.chain_seq) in text and bill.chain_hash[:32] in text.replace("\n", "")


def test_statement_csv_runs_from_opening_to_closing(store: SqlStore, work: Workload) -> None:
    bill = busiest(store, work)
    rows = list(csv.DictReader(io.StringIO(statement_csv(bill))))
    assert rows[0]["section"] == "opening" and rows[-1]["section"] == "closing"
    running = Decimal(rows[0]["balance"])
    for row in rows[1:-1]:
        running += Decimal(row["amount"])
        assert Decimal(row["balance"]) == running
    assert running == Decimal(rows[-1]["balance"]) == bill.closing.to_decimal()
