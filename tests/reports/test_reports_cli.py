"""The report commands as an operator runs them, in process with typer's runner, on SQLite and
PostgreSQL: ``usage`` (--json, --csv), ``top --once``, ``invoice`` (every format) and
``export`` to a file and to a real HTTP receiver on loopback that fails once, then
deduplicates by id (as OpenMeter does) so a re-run counts nothing twice."""

from __future__ import annotations

import csv
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from ciyuan.cli import app
from ciyuan.clock import FixedClock, SystemClock
from ciyuan.metering.ports import UsageEvent
from ciyuan.pricing.money import Amount, total
from ciyuan.store import open_store
from ciyuan.store.sql_store import SqlStore
from tests.reports.workload import Workload, generate

runner = CliRunner()


@pytest.fixture
def work(store: SqlStore, clock: FixedClock) -> Workload:
    return generate(store, clock, seed=3, requests=150)


def run(db_url: str, *args: str) -> str:
    result = runner.invoke(app, ["--db", db_url, *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_usage_json_and_csv(db_url: str, work: Workload) -> None:
    data = json.loads(run(db_url, "usage", "--by", "day", "--by", "model", "--since",
                          "2026-11-01", "--until", "2026-12-31", "--json"))  # fmt: skip
    assert data["group_by"] == ["day", "model"]
    assert data["total"]["requests"] == len(work.events)
    assert data["total"]["cost"] == str(total([e.cost for e in work.events]))
    rows = list(csv.DictReader(io.StringIO(run(db_url, "usage", "--by", "account", "--csv"))))
    assert sum(int(r["requests"]) for r in rows) == len(work.events)
    assert {r["account"] for r in rows} == {"team-3-0", "team-3-1", "team-3-2"}
    raw = json.loads(run(db_url, "usage", "--by", "hour", "--source", "raw", "--json"))
    assert all(line["latency_ms_p50"] is not None for line in raw["usage"])
    assert "Usage" in run(db_url, "usage", "--by", "key")
    bad = runner.invoke(app, ["--db", db_url, "usage", "--by", "colour", "--json"])
    assert bad.exit_code != 0 and "colour" in bad.stderr


def test_top_once(db_url: str) -> None:
    store = open_store(db_url, clock=SystemClock())
    try:
        account = store.create_account("live")
        key = store.create_api_key(account.id, "cklive", "0" * 64, None)
        store.grant(account.id, _usd(5))
        for n in range(6):
            hold = store.reserve(account.id, _usd(0), request_id=f"live-{n}", timeout_s=60)
            event = UsageEvent(request_id=f"live-{n}", created_us=SystemClock().now_us(),
                               account_id=account.id, api_key_id=key.id, api="chat",
                               model="gpt-4o-mini", upstream="demo", status="ok",
                               http_status=200, input_tokens=100, output_tokens=20)  # fmt: skip
            store.settle(hold, _usd(0.01), event)
    finally:
        store.close()
    data = json.loads(run(db_url, "top", "--once", "--window", "60", "--json"))
    assert data["requests_per_s"] == round(6 / 60, 3)
    assert data["keys"][0]["key"] == "cklive" and data["keys"][0]["spend_window"] == "0.06"
    assert "req/s" in run(db_url, "top", "--once")


def _usd(value: float) -> Amount:
    return Amount.parse(str(value))


def test_invoice_formats(db_url: str, work: Workload, tmp_path: Path) -> None:
    data = json.loads(run(db_url, "invoice", "team-3-1", "--period", "2026-11", "--json"))
    nanos = data["summary_nanos"]
    moved = nanos["grants"] - nanos["charges"] + nanos["refunds"] - nanos["expiries"]
    assert nanos["opening"] + moved == nanos["closing"]
    assert len(data["ledger"]["chain_hash"]) == 64 and data["ledger"]["chain_seq"] > 0
    assert "<h1>Invoice team-3-1-2026-11</h1>" in run(db_url, "invoice", "team-3-1", "--period",
                                                       "2026-11", "--format", "html")  # fmt: skip
    statement = run(db_url, "invoice", "team-3-1", "--period", "2026-11", "--format", "csv")
    assert statement.splitlines()[-1].split(",")[-1] == data["summary"]["closing"]
    pdf = tmp_path / "inv.pdf"
    written = json.loads(run(db_url, "invoice", "team-3-1", "--period", "2026-11", "--format",
                             "pdf", "--output", str(pdf), "--json"))  # fmt: skip
    assert written["written"] == str(pdf) and pdf.read_bytes().startswith(b"%PDF-")
    assert "Opening balance" in run(db_url, "invoice", "team-3-1", "--period", "2026-11")
    bad = runner.invoke(app, ["--db", db_url, "invoice", "team-3-1", "--period", "11/2026"])
    assert bad.exit_code != 0


class _Receiver(BaseHTTPRequestHandler):
    """OpenMeter's ingest, as far as an exporter can tell: batches in, dedupe on (source, id)."""

    seen: ClassVar[dict[tuple[str, str], dict[str, Any]]] = {}
    fail_next: ClassVar[list[int]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        if self.fail_next:
            self.send_response(self.fail_next.pop())
            self.end_headers()
            return
        assert self.headers["content-type"] == "application/cloudevents-batch+json"
        for event in json.loads(body):
            self.seen.setdefault((event["source"], event["id"]), event)
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_export_cloudevents(db_url: str, work: Workload, tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    summary = json.loads(run(db_url, "export", "--format", "cloudevents", "--since",
                             "2026-11-01", "--output", str(out), "--json"))  # fmt: skip
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert summary["exported"] == len(lines) == len(work.events)
    first = lines[0]
    assert first["specversion"] == "1.0" and first["type"] == "ciyuan.usage"
    assert first["id"] == work.events[0].request_id and first["subject"].startswith("team-3-")
    assert first["time"].endswith("Z") and isinstance(first["data"]["cost_nanos"], int)
    assert sum(e["data"]["cost_nanos"] for e in lines) == sum(e.cost.nanos for e in work.events)

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/api/v1/events"
        _Receiver.seen.clear()
        _Receiver.fail_next[:] = [503]  # one transient failure: retried, not lost
        for _ in range(2):  # a re-run sends everything again; the receiver keeps one of each
            sent = json.loads(run(db_url, "export", "--url", url, "--batch-size", "40", "--json"))
            assert sent["exported"] == len(work.events)
        assert len(_Receiver.seen) == len(work.events)
        _Receiver.fail_next[:] = [400]
        refused = runner.invoke(app, ["--db", db_url, "export", "--url", url, "--json"])
        assert refused.exit_code != 0 and "refused" in refused.stderr
    finally:
        server.shutdown()
        server.server_close()
