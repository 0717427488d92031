"""The admin API over real HTTP against a real gateway, on SQLite and PostgreSQL.

Each test drives the API the way an operator's script would (httpx with the admin key), makes
real metered calls with the official openai SDK where usage matters, and checks the answers
against the store the gateway writes to.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
import openai
import pytest
from openapi_spec_validator import validate

from ciyuan.admin.api import api_routes
from ciyuan.admin.openapi import OPENAPI
from ciyuan.pricing.money import Amount
from tests.admin.conftest import AdminGateway
from tests.e2e.conftest import tracked

MODEL = "gpt-4o-mini"


def name() -> str:
    return f"acct-{secrets.token_hex(4)}"


def new_customer(admin: httpx.Client, credit: str = "5.00") -> tuple[dict[str, Any], str]:
    """An account with credit and a key, made through the admin API: (account, raw key)."""
    account = admin.post("/admin/accounts", json={"name": name()}).json()
    if credit:
        granted = admin.post(
            f"/admin/accounts/{account['id']}/grants",
            json={"amount": credit},
            headers={"idempotency-key": secrets.token_hex(8)},
        )
        assert granted.status_code == 201, granted.text
    created = admin.post("/admin/keys", json={"account": account["name"], "label": "api"})
    assert created.status_code == 201, created.text
    return account, created.json()["key"]


def chat(gateway: AdminGateway, key: str, text: str = "hello") -> str:
    """One real chat completion through the gateway; returns its request (receipt) id."""
    client = tracked(
        openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0, timeout=30)
    )
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": text}]
    )
    return str(raw.headers["x-ciyuan-request-id"])


def test_accounts_create_list_get(gateway: AdminGateway, admin: httpx.Client) -> None:
    created = admin.post("/admin/accounts", json={"name": (n := name())})
    assert created.status_code == 201
    body = created.json()
    assert body["name"] == n and body["kind"] == "customer"
    assert body["balance"] == {"posted": "0.00", "pending": "0.00", "available": "0.00"}
    listed = admin.get("/admin/accounts").json()
    assert listed["currency"] == "USD"
    assert n in {a["name"] for a in listed["data"]}
    by_name = admin.get(f"/admin/accounts/{n}").json()
    by_id = admin.get(f"/admin/accounts/{body['id']}").json()
    assert by_name == by_id and by_name["api_keys"] == []
    assert gateway.store.get_account(n).id == body["id"]


def test_account_errors_have_one_shape(admin: httpx.Client) -> None:
    taken = admin.post("/admin/accounts", json={"name": (n := name())})
    assert taken.status_code == 201
    again = admin.post("/admin/accounts", json={"name": n})
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    bad = admin.post("/admin/accounts", json={"name": "<b>"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
    missing = admin.get("/admin/accounts/nobody-here")
    assert missing.status_code == 404
    assert set(missing.json()["error"]) == {"code", "message"}
    not_json = admin.post("/admin/accounts", content=b"{nope")
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "invalid_request"
    wrong_method = admin.delete("/admin/accounts")
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()


def test_grant_is_idempotent_and_refuses_a_changed_replay(
    gateway: AdminGateway, admin: httpx.Client
) -> None:
    account = admin.post("/admin/accounts", json={"name": name()}).json()
    url = f"/admin/accounts/{account['id']}/grants"
    key = {"idempotency-key": secrets.token_hex(8)}
    first = admin.post(url, json={"amount": "2.50"}, headers=key)
    second = admin.post(url, json={"amount": "2.50"}, headers=key)
    assert first.status_code == second.status_code == 201
    assert first.json()["transfer_id"] == second.json()["transfer_id"]
    assert gateway.store.balance(account["id"]).available == Amount.parse("2.50")
    changed = admin.post(url, json={"amount": "3.00"}, headers=key)
    assert changed.status_code == 409
    assert admin.post(url, json={"amount": "1.00"}).status_code == 400, "no idempotency key"
    assert (
        admin.post(url, json={"amount": 1.0}, headers={"idempotency-key": "x1"}).status_code == 400
    )
    assert (
        admin.post(url, json={"amount": "-1"}, headers={"idempotency-key": "x2"}).status_code == 400
    )
    assert gateway.store.balance(account["id"]).available == Amount.parse("2.50")


def test_keys_are_shown_once_listed_without_secrets_and_revoked(
    gateway: AdminGateway, admin: httpx.Client
) -> None:
    account, raw_key = new_customer(admin)
    prefix = raw_key.split("_")[0]
    listed = admin.get("/admin/keys", params={"prefix": prefix}).json()["data"]
    assert [k["prefix"] for k in listed] == [prefix]
    assert "key" not in listed[0] and "hash_hex" not in listed[0]
    assert raw_key not in admin.get("/admin/keys").text
    assert raw_key not in admin.get(f"/admin/accounts/{account['id']}").text
    chat(gateway, raw_key)
    revoked = admin.post(f"/admin/keys/{prefix}/revoke")
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    assert admin.post(f"/admin/keys/{prefix}/revoke").json()["active"] is False, "repeatable"
    time.sleep(0.3)  # the gateway's auth cache (0.2 s in this fixture) must expire first
    with pytest.raises(openai.AuthenticationError):
        chat(gateway, raw_key)
    assert admin.post("/admin/keys/ck-nothere/revoke").status_code == 404
    system = admin.post("/admin/keys", json={"account": "ciyuan:revenue"})
    assert system.status_code == 400


def test_usage_report_and_recent_requests_match_real_calls(
    gateway: AdminGateway, admin: httpx.Client
) -> None:
    account, raw_key = new_customer(admin)
    request_ids = [chat(gateway, raw_key, f"question {i}") for i in range(3)]
    report = admin.get(
        "/admin/usage", params={"group_by": "model,day", "account": account["name"]}
    ).json()
    assert report["group_by"] == ["model", "day"]
    [row] = report["data"]
    assert row["group"]["model"] == MODEL and row["requests"] == 3
    events = [gateway.store.usage_event(r) for r in request_ids]
    assert all(e is not None for e in events)
    assert row["output_tokens"] == sum(e.output_tokens for e in events if e)
    assert Amount.parse(row["cost"]) == Amount(sum(e.cost.nanos for e in events if e))
    spent = Amount.parse("5.00") - gateway.store.balance(account["id"]).available
    assert Amount.parse(row["cost"]) == spent, "the report agrees with the ledger exactly"

    recent = admin.get("/admin/requests", params={"account": account["id"], "limit": 10}).json()
    assert [e["request_id"] for e in recent["data"]] == request_ids[::-1]
    receipt = admin.get(f"/admin/requests/{request_ids[0]}/receipt")
    assert receipt.status_code == 200 and request_ids[0] in receipt.text

    future = admin.get("/admin/usage", params={"since": "2999-01-01", "account": account["id"]})
    assert future.json()["data"] == []
    assert admin.get("/admin/usage", params={"group_by": "secret"}).status_code == 400
    assert admin.get("/admin/usage", params={"since": "2026-01-01T00:00:00"}).status_code == 400
    assert admin.get("/admin/requests", params={"limit": "0"}).status_code == 400


def test_prices_and_ledger_verify(admin: httpx.Client) -> None:
    prices = admin.get("/admin/prices").json()
    mini = next(p for p in prices["data"] if p["model"] == MODEL)
    assert mini["per_million_tokens"]["input"] and mini["origin"] == "shipped"
    for full in ("false", "true"):
        verified = admin.get("/admin/ledger/verify", params={"full": full}).json()
        assert verified["ok"] is True and verified["problem"] is None


def test_openapi_document_is_valid_and_covers_every_route(admin: httpx.Client) -> None:
    served = httpx.get(str(admin.base_url) + "/admin/openapi.json").json()
    assert served == OPENAPI
    validate(served)
    documented = {
        (path, method.upper()) for path, item in OPENAPI["paths"].items() for method in item
    }
    served_routes = {
        ("/admin" + route.path, method)
        for route in api_routes()
        if route.path != "/openapi.json"
        for method in (route.methods or set()) - {"HEAD"}
    }
    assert served_routes == documented
