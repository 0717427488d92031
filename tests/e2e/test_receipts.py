"""A customer's receipt, end to end: a charged call, an operator checkpoint signed with its
Ed25519 key, the receipt fetched over HTTP with the customer's own key, and verified offline by
``ciyuan receipt verify`` with only the public key. A tampered receipt must fail verification,
and another account's key must not see it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import openai

from ciyuan.pricing.money import Amount
from tests.conftest import CIYUAN, child_env
from tests.e2e.conftest import Gateway, tracked


def ciyuan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CIYUAN, *args], env=child_env(), capture_output=True, text=True, timeout=60, check=False
    )


def test_receipt_verifies_offline_and_detects_tampering(gateway: Gateway, tmp_path: Path) -> None:
    _, key = gateway.customer("1")
    _, stranger = gateway.customer("1")
    client = tracked(openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0))
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "receipt please"}], max_tokens=8
    )
    request_id = raw.headers["x-ciyuan-request-id"]

    signing_key = tmp_path / "operator.pem"
    made = ciyuan("ledger", "keygen", str(signing_key), "--json")
    assert made.returncode == 0, made.stderr
    public_key = json.loads(made.stdout)["public_key"]
    signed = ciyuan(
        "--db", gateway.db_url, "ledger", "checkpoint", "--key", str(signing_key), "--json"
    )
    assert signed.returncode == 0, signed.stderr

    url = f"{gateway.base_url}/v1/ciyuan/receipts/{request_id}"
    assert httpx.get(url, headers={"authorization": f"Bearer {stranger}"}).status_code == 404
    response = httpx.get(url, headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 200
    receipt = response.json()
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(receipt))
    checked = ciyuan("receipt", "verify", str(path), "--public-key", public_key, "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    text = json.dumps(receipt)
    nanos = str(Amount.parse(raw.headers["x-ciyuan-cost"]).nanos)  # receipts hold integer nanos
    assert nanos in text
    path.write_text(text.replace(nanos, str(int(nanos) + 1), 1))
    forged = ciyuan("receipt", "verify", str(path), "--public-key", public_key, "--json")
    assert forged.returncode != 0
