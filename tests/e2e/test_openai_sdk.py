"""The official ``openai`` SDK, unmodified, through a real gateway to the demo upstream.

Every charge is checked against an independent computation: the usage the upstream reported,
priced with the catalog, must equal the ``x-ciyuan-cost`` header, the ledger's balance change
and the recorded usage event, to the nano.
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from ciyuan.pricing.catalog import Catalog
from ciyuan.pricing.cost import cost_of
from ciyuan.pricing.money import Amount
from ciyuan.pricing.usage import Usage
from tests.e2e.conftest import Gateway, tracked

MODEL = "gpt-4o-mini"
CATALOG = Catalog.load_default()


def client(gateway: Gateway, key: str) -> openai.OpenAI:
    return tracked(
        openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0, timeout=30)
    )


def expected_cost(usage: dict[str, Any] | Any) -> Amount:
    payload = usage if isinstance(usage, dict) else usage.model_dump()
    price = CATALOG.price_for(MODEL)
    assert price is not None
    return cost_of(Usage.from_openai_chat(payload), price).total


def messages(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


def test_chat_completion_is_charged_exactly(gateway: Gateway) -> None:
    account, key = gateway.customer("1")
    raw = client(gateway, key).chat.completions.with_raw_response.create(
        model=MODEL, messages=messages("What is a token?"), max_tokens=40
    )
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.completion_tokens <= 40
    cost = Amount.parse(raw.headers["x-ciyuan-cost"])
    assert cost == expected_cost(completion.usage) and cost.nanos > 0
    balance = gateway.store.balance(account)
    assert balance.available == Amount.parse("1") - cost
    assert Amount.parse(raw.headers["x-ciyuan-balance"]) == balance.available
    assert balance.pending == Amount.zero()
    event = gateway.store.usage_event(raw.headers["x-ciyuan-request-id"])
    assert event is not None and event.cost == cost and event.usage_source == "reported"
    assert event.input_tokens == completion.usage.prompt_tokens
    # The local prompt count and the upstream's report agree for the demo's model family.
    assert event.prompt_tokens_local == completion.usage.prompt_tokens


def test_stream_with_include_usage_carries_the_charge(gateway: Gateway) -> None:
    account, key = gateway.customer("1")
    raw = client(gateway, key).chat.completions.with_raw_response.create(
        model=MODEL,
        messages=messages("Stream me a story"),
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=30,
    )
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    final = chunks[-1]
    assert final.choices == [] and final.usage is not None
    extra = final.model_extra or {}
    figures = extra["ciyuan"]
    cost = Amount.parse(figures["cost"])
    assert cost == expected_cost(final.usage)
    assert figures["request_id"] == raw.headers["x-ciyuan-request-id"]
    assert 0 < figures["overhead_ms"] < 1000, "the gateway's own time on this stream"
    assert Amount.parse(figures["balance"]) == gateway.store.balance(account).available
    assert gateway.store.balance(account).available == Amount.parse("1") - cost


def test_stream_without_include_usage_is_still_metered(gateway: Gateway) -> None:
    account, key = gateway.customer("1")
    raw = client(gateway, key).chat.completions.with_raw_response.create(
        model=MODEL, messages=messages("Another story"), stream=True, max_tokens=25
    )
    chunks = list(raw.parse())
    assert all(c.usage is None for c in chunks), "the usage chunk must be stripped"
    assert any(c.choices and c.choices[0].delta.content for c in chunks)
    event = gateway.store.usage_event(raw.headers["x-ciyuan-request-id"])
    assert event is not None and event.usage_source == "reported" and event.cost.nanos > 0
    assert gateway.store.balance(account).available == Amount.parse("1") - event.cost


def test_a_run_of_calls_sums_exactly_to_the_balance_change(gateway: Gateway) -> None:
    account, key = gateway.customer("2")
    sdk = client(gateway, key)
    charged = Amount.zero()
    for index in range(8):
        prompt = messages(f"Question number {index}: " + "why? " * index)
        if index % 2:
            raw = sdk.chat.completions.with_raw_response.create(
                model=MODEL, messages=prompt, stream=True, stream_options={"include_usage": True}
            )
            charged += Amount.parse(list(raw.parse())[-1].model_extra["ciyuan"]["cost"])
        else:
            raw = sdk.chat.completions.with_raw_response.create(
                model=MODEL, messages=prompt, max_tokens=10 + index
            )
            charged += Amount.parse(raw.headers["x-ciyuan-cost"])
    balance = gateway.store.balance(account)
    assert balance.available == Amount.parse("2") - charged
    rows = gateway.store.usage_by_model(account)
    assert sum(r.requests for r in rows) == 8
    assert sum(r.cost.nanos for r in rows) == charged.nanos


def test_models_list(gateway: Gateway) -> None:
    _, key = gateway.customer("0")
    ids = {model.id for model in client(gateway, key).models.list()}
    assert MODEL in ids


def assert_nothing_charged(gateway: Gateway, account: str, credit: str) -> None:
    balance = gateway.store.balance(account)
    assert balance.available == Amount.parse(credit) and balance.pending == Amount.zero()
    assert sum(r.cost.nanos for r in gateway.store.usage_by_model(account)) == 0


def test_no_credit_is_402_and_charges_nothing(gateway: Gateway) -> None:
    account, key = gateway.customer("0")
    with pytest.raises(openai.APIStatusError) as caught:
        client(gateway, key).chat.completions.create(model=MODEL, messages=messages("hi"))
    assert caught.value.status_code == 402
    assert caught.value.body["code"] == "insufficient_credit"  # type: ignore[index]
    assert_nothing_charged(gateway, account, "0")


def test_unknown_and_revoked_keys_are_401(gateway: Gateway) -> None:
    account, key = gateway.customer("1")
    with pytest.raises(openai.AuthenticationError):
        client(gateway, "ck-nosuchke_" + "x" * 43).chat.completions.create(
            model=MODEL, messages=messages("hi")
        )
    with pytest.raises(openai.AuthenticationError):
        client(gateway, key[:-1] + ("A" if key[-1] != "A" else "B")).chat.completions.create(
            model=MODEL, messages=messages("hi")
        )
    # A gateway trusts its auth cache for at most its TTL, so revoke a key it has never seen.
    other_account, other_key = gateway.customer("1")
    gateway.store.revoke_api_key(other_key.split("_")[0])
    with pytest.raises(openai.AuthenticationError) as caught:
        client(gateway, other_key).chat.completions.create(model=MODEL, messages=messages("hi"))
    assert "revoked" in caught.value.message
    assert_nothing_charged(gateway, account, "1")
    assert_nothing_charged(gateway, other_account, "1")


def test_unknown_model_is_404_and_charges_nothing(gateway: Gateway) -> None:
    account, key = gateway.customer("1")
    with pytest.raises(openai.NotFoundError) as caught:
        client(gateway, key).chat.completions.create(model="no-such-model", messages=messages("hi"))
    assert caught.value.body["code"] == "model_not_found"  # type: ignore[index]
    assert_nothing_charged(gateway, account, "1")


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b'{"model": 7, "messages": []}',
        b'{"model": "gpt-4o-mini", "messages": "hi"}',
    ],
)
def test_malformed_requests_are_400_in_openai_format(gateway: Gateway, body: bytes) -> None:
    account, key = gateway.customer("1")
    response = httpx.post(
        gateway.base_url + "/v1/chat/completions",
        content=body,
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    assert_nothing_charged(gateway, account, "1")
