"""A customer's receipt, end to end on SQLite and PostgreSQL: charged calls, an operator
checkpoint signed with its Ed25519 key, the receipt (a Merkle inclusion proof per transfer)
fetched over HTTP with the customer's own key, and verified offline by ``ciyuan receipt verify``
with only the public key. A one-nano edit, a swapped sibling, a wrong leaf index and another
public key must each fail verification, and another account's key must not see the receipt."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import httpx
import openai
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ciyuan.ledger.checkpoints import load_public_key, public_key_hex
from ciyuan.ledger.receipts import verify_receipt
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
    for _ in range(2):  # later transfers, so the receipt's audit path has several hashes
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "more"}], max_tokens=8
        )

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
    assert (receipt["version"], receipt["proof"]) == ("ciyuan.receipt.v2", "merkle-inclusion")
    audit_path = receipt["inclusion"][0]["path"]
    assert 2 <= len(audit_path) <= (receipt["checkpoint"]["seq"] - 1).bit_length()
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(receipt))
    checked = ciyuan("receipt", "verify", str(path), "--public-key", public_key, "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    stranger_key = public_key_hex(Ed25519PrivateKey.generate())
    wrong_key = ciyuan("receipt", "verify", str(path), "--public-key", stranger_key, "--json")
    assert wrong_key.returncode != 0 and "not signed" in json.loads(wrong_key.stdout)["problem"]

    # The CLI runs exactly verify_receipt; the other forgeries are checked in process (a CLI
    # start costs seconds on a shared machine).
    swapped, moved = copy.deepcopy(receipt), copy.deepcopy(receipt)
    siblings = swapped["inclusion"][0]["path"]
    siblings[0], siblings[1] = siblings[1], siblings[0]
    moved["inclusion"][0]["leaf_index"] += 1
    for forged in (swapped, moved):
        assert not verify_receipt(forged, load_public_key(public_key)).ok

    text = json.dumps(receipt)
    nanos = str(Amount.parse(raw.headers["x-ciyuan-cost"]).nanos)  # receipts hold integer nanos
    assert nanos in text
    path.write_text(text.replace(nanos, str(int(nanos) + 1), 1))
    forged = ciyuan("receipt", "verify", str(path), "--public-key", public_key, "--json")
    assert forged.returncode != 0
