"""A key holder's own balance and usage, over real HTTP, and never another account's.

Two customers make real calls with the openai SDK; each one's ``/v1/ciyuan/balance`` and
``/v1/ciyuan/usage`` must match the ledger for its own account exactly and show nothing of the
other's. Errors are in OpenAI's format.
"""

from __future__ import annotations

import httpx
import openai

from ciyuan.pricing.money import Amount
from tests.admin.conftest import AdminGateway
from tests.e2e.conftest import tracked


def get(gateway: AdminGateway, path: str, key: str | None, **params: str) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.get(gateway.base_url + path, headers=headers, params=params)


def call(gateway: AdminGateway, key: str, times: int) -> list[str]:
    client = tracked(
        openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0, timeout=30)
    )
    ids = []
    for i in range(times):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"say {i}"}]
        )
        ids.append(raw.headers["x-ciyuan-request-id"])
    return ids


def test_balance_and_usage_are_the_callers_own(gateway: AdminGateway) -> None:
    mine_id, mine = gateway.customer("2.00")
    theirs_id, theirs = gateway.customer("3.00")
    my_requests = call(gateway, mine, 2)
    their_requests = call(gateway, theirs, 1)

    balance = get(gateway, "/v1/ciyuan/balance", mine).json()
    assert balance["object"] == "ciyuan.balance" and balance["currency"] == "USD"
    assert Amount.parse(balance["available"]) == gateway.store.balance(mine_id).available

    usage = get(gateway, "/v1/ciyuan/usage", mine, group_by="model,day", recent="10").json()
    [row] = usage["data"]
    assert row["requests"] == 2
    spent = Amount.parse("2.00") - gateway.store.balance(mine_id).available
    assert Amount.parse(row["cost"]) == spent
    assert [e["request_id"] for e in usage["recent"]] == my_requests[::-1]
    assert not set(their_requests) & {e["request_id"] for e in usage["recent"]}
    assert theirs_id not in str(usage) and "upstream" not in usage["recent"][0]


def test_no_parameter_reaches_another_account(gateway: AdminGateway) -> None:
    _, mine = gateway.customer("1.00")
    theirs_id, _ = gateway.customer("1.00")
    response = get(gateway, "/v1/ciyuan/usage", mine, account=theirs_id, account_id=theirs_id)
    assert response.status_code == 200 and response.json()["data"] == []
    assert get(gateway, "/v1/ciyuan/usage", mine, group_by="account").status_code == 400
    assert get(gateway, "/v1/ciyuan/usage", mine, group_by="upstream").status_code == 400


def test_errors_are_in_openai_format(gateway: AdminGateway) -> None:
    _, key = gateway.customer("1.00")
    for path in ("/v1/ciyuan/balance", "/v1/ciyuan/usage"):
        missing = get(gateway, path, None)
        assert missing.status_code == 401
        assert missing.json()["error"]["type"] == "invalid_request_error"
        assert missing.json()["error"]["code"] == "invalid_api_key"
    bad = get(gateway, "/v1/ciyuan/usage", key, since="yesterday")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "since"
    assert get(gateway, "/v1/ciyuan/usage", key, recent="1000").status_code == 400
