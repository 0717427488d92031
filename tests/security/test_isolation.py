"""Cross-account isolation (invariant 7, "errors never leak another account's data"), over real
HTTP on SQLite and PostgreSQL, with two customers A and B that both made real calls.

With A's key: B's request ids answer the same 404 as ids that never existed; no query
parameter widens usage to B; no header or body field makes a call spend B's credit; and no
admin route listed in the live ``/admin/openapi.json`` accepts a client key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest

from ciyuan.pricing.money import Amount
from tests.admin.conftest import AdminGateway
from tests.admin.conftest import gateway as gateway  # noqa: PLC0414  (the fixture, by name)
from tests.e2e.conftest import tracked


@dataclass
class Customer:
    account_id: str
    name: str
    key: str
    request_ids: list[str]

    @property
    def prefix(self) -> str:
        return self.key.split("_", 1)[0]

    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.key}"}


def chat(gateway: AdminGateway, key: str, **extra: Any) -> Any:
    """A chat call through the openai SDK; its raw response (headers carry the charge)."""
    client = tracked(openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0))
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}], **extra
    )
    return raw


def customer(gateway: AdminGateway, calls: int) -> Customer:
    account_id, key = gateway.customer("3.00")
    ids = [chat(gateway, key).headers["x-ciyuan-request-id"] for _ in range(calls)]
    return Customer(account_id, gateway.store.get_account(account_id).name, key, ids)


@pytest.fixture(scope="module")
def pair(gateway: AdminGateway) -> tuple[Customer, Customer]:
    return customer(gateway, 2), customer(gateway, 1)


def test_another_accounts_request_id_is_a_plain_404(
    gateway: AdminGateway, pair: tuple[Customer, Customer]
) -> None:
    a, b = pair
    own = httpx.get(f"{gateway.base_url}/v1/ciyuan/receipts/{a.request_ids[0]}", headers=a.auth())
    assert own.status_code == 200 and a.request_ids[0] in own.text
    theirs_id = b.request_ids[0]
    # An id that never existed, of the same shape and length as B's.
    unknown_id = theirs_id[:-4] + ("zzzz" if not theirs_id.endswith("zzzz") else "yyyy")
    theirs = httpx.get(f"{gateway.base_url}/v1/ciyuan/receipts/{theirs_id}", headers=a.auth())
    unknown = httpx.get(f"{gateway.base_url}/v1/ciyuan/receipts/{unknown_id}", headers=a.auth())
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.text.replace(theirs_id, "ID") == unknown.text.replace(unknown_id, "ID")
    assert theirs.headers["content-type"] == unknown.headers["content-type"]
    for leaked in (b.account_id, b.name, b.prefix):
        assert leaked not in theirs.text


def test_usage_balance_and_models_show_only_the_callers_account(
    gateway: AdminGateway, pair: tuple[Customer, Customer]
) -> None:
    a, b = pair
    widen = {
        "account": b.account_id,
        "account_id": b.account_id,
        "key": b.prefix,
        "api_key": b.prefix,
        "since": "1970-01-01",
        "until": "2100-01-01",
        "recent": "100",
    }
    for group_by in ("key", "model,api,status,day"):
        usage = httpx.get(
            gateway.base_url + "/v1/ciyuan/usage",
            headers=a.auth(),
            params={**widen, "group_by": group_by},
        )
        assert usage.status_code == 200, usage.text
        body = usage.json()
        assert sum(row["requests"] for row in body["data"]) == len(a.request_ids)
        assert sorted(e["request_id"] for e in body["recent"]) == sorted(a.request_ids)
        for leaked in (b.account_id, b.name, b.prefix, *b.request_ids):
            assert leaked not in usage.text
    balance = httpx.get(gateway.base_url + "/v1/ciyuan/balance", headers=a.auth()).json()
    assert Amount.parse(balance["available"]) == gateway.store.balance(a.account_id).available
    assert balance["account"] == a.name
    for path in ("/v1/ciyuan/balance", "/v1/models"):
        text = httpx.get(gateway.base_url + path, headers=a.auth()).text
        assert b.account_id not in text and b.name not in text


def test_no_header_or_body_field_spends_another_accounts_credit(
    gateway: AdminGateway, pair: tuple[Customer, Customer]
) -> None:
    a, b = pair
    a_before = gateway.store.balance(a.account_id).available
    b_before = gateway.store.balance(b.account_id)
    pointing_at_b = {
        name: b.account_id
        for name in ("x-ciyuan-account", "x-account-id", "openai-organization", "openai-project")
    }
    fields: dict[str, object] = {
        "user": b.account_id,
        "account": b.account_id,
        "account_id": b.account_id,
        "metadata": {"account_id": b.account_id, "api_key": b.prefix},
    }
    raw = chat(gateway, a.key, extra_headers=pointing_at_b, extra_body=fields)
    spent = Amount.parse(raw.headers["x-ciyuan-cost"])
    ant = tracked(anthropic.Anthropic(base_url=gateway.base_url, api_key=a.key, max_retries=0))
    message = ant.messages.with_raw_response.create(
        model="claude-haiku-4-5",
        max_tokens=50,
        messages=[{"role": "user", "content": "hello"}],
        metadata={"user_id": b.account_id},
        extra_headers=pointing_at_b,
        extra_body={"account_id": b.account_id},
    )
    spent = spent + Amount.parse(message.headers["x-ciyuan-cost"])
    assert spent > Amount.zero()
    assert gateway.store.balance(b.account_id) == b_before, "B's credit was touched"
    assert gateway.store.balance(a.account_id).available == a_before - spent


def test_no_admin_route_in_the_live_openapi_accepts_a_client_key(
    gateway: AdminGateway, pair: tuple[Customer, Customer]
) -> None:
    a, b = pair
    with gateway.admin() as admin:
        document = admin.get("/admin/openapi.json").json()
    values = {"account": b.account_id, "key": b.prefix, "request_id": b.request_ids[0]}
    routes = [
        (method.upper(), re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path))
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    ]
    assert len(routes) >= 10
    for method, path in routes:
        for headers in (a.auth(), {"x-api-key": a.key}):
            response = httpx.request(method, gateway.base_url + path, headers=headers, json={})
            assert response.status_code == 401, (method, path, response.text)
            assert b.account_id not in response.text and b.prefix not in response.text
