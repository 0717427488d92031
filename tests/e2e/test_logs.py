"""Structured logs from a real gateway: one JSON object per line, a line per request carrying
its request id, and never the API key's secret or the prompt's text."""

from __future__ import annotations

import json
import time
from pathlib import Path

import openai

from ciyuan import apikeys
from ciyuan.pricing.money import Amount
from ciyuan.store import open_store
from tests.e2e.conftest import start_gateway

PROMPT = "the secret recipe is 42 parts saffron"


def test_request_lines_are_json_with_ids_and_no_secrets(demo_upstream: str, tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'ciyuan.db'}"
    store = open_store(db_url)
    account = store.create_account("logged")
    store.grant(account.id, Amount.parse("1"))
    new = apikeys.generate()
    store.create_api_key(account.id, new.prefix, new.hash_hex, None)
    log = tmp_path / "gateway.log"
    process, base_url = start_gateway(db_url, demo_upstream, log, CIYUAN_LOG_FORMAT="json")
    try:
        client = openai.OpenAI(
            base_url=base_url + "/v1", api_key=new.secret.reveal(), max_retries=0
        )
        with client:
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}], max_tokens=8
            )
            request_id = raw.headers["x-ciyuan-request-id"]
        deadline = time.monotonic() + 10
        while request_id not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        process.stop()
        store.close()
    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("request_id") == request_id]
    assert len(mine) == 1
    assert mine[0]["level"] == "info" and mine[0]["status"] == "ok"
    assert Amount.parse(mine[0]["cost"]) == Amount.parse(raw.headers["x-ciyuan-cost"])
    assert mine[0]["api_key"] == new.prefix
    assert new.secret.reveal() not in text
    assert "saffron" not in text
