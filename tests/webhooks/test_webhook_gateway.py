"""Budget alerts from a real gateway process: a call that crosses a budget's 50 % threshold
makes the gateway's own background worker POST a signed webhook to a receiver on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import openai
import pytest

from ciyuan import apikeys
from ciyuan.pricing.money import Amount
from ciyuan.store import open_store
from ciyuan.webhooks import SIGNATURE_HEADER, verify_signature
from tests.e2e.conftest import demo_upstream, start_gateway

__all__ = ["demo_upstream"]  # the fixture, shared with tests/e2e

SECRET = "whsec-test-0123456789abcdef"


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    received: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def test_crossing_a_threshold_sends_a_signed_webhook(
    demo_upstream: str, tmp_path: Path, receiver: tuple[str, list[tuple[dict[str, str], bytes]]]
) -> None:
    url, received = receiver
    db_url = f"sqlite:///{tmp_path / 'ciyuan.db'}"
    store = open_store(db_url)
    account = store.create_account("alerts")
    store.grant(account.id, Amount.parse("1"))
    new = apikeys.generate()
    store.create_api_key(account.id, new.prefix, new.hash_hex, None)
    store.set_budget(
        account_id=account.id, api_key_id=None, period="month", amount=Amount.parse("0.00002"),
        thresholds_pct=(50,), webhook_url=url,
    )  # fmt: skip
    process, base_url = start_gateway(
        db_url, demo_upstream, tmp_path / "gateway.log",
        CIYUAN_WEBHOOK_SECRET=SECRET, CIYUAN_WEBHOOK_INTERVAL_S="0.2",
    )  # fmt: skip
    try:
        with openai.OpenAI(
            base_url=base_url + "/v1", api_key=new.secret.reveal(), max_retries=0
        ) as client:
            # Budget 20,000 nanos; the worst case (~10 prompt + 20 output tokens) fits under it,
            # and 20 output tokens at 600 nanos each cross the 50 % threshold.
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "spend"}], max_tokens=20
            )
        deadline = time.monotonic() + 15
        while not received and time.monotonic() < deadline:
            time.sleep(0.1)
        assert received, "no webhook arrived"
        headers, body = received[0]
        assert verify_signature(SECRET, headers[SIGNATURE_HEADER], body, now_s=int(time.time()))
        payload = json.loads(body)
        assert "50" in json.dumps(payload)
    finally:
        process.stop()
        store.close()
