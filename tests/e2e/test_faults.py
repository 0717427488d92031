"""Upstream and client faults through a real gateway, each with its exact charge.

The demo upstream fails on demand (``x-demo-fault``); routes with several deployments prove
that falling back to another one charges once. Where no usage is reported, the charge must equal
the locally counted prompt plus the tokens actually delivered, priced independently here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from ciyuan.metering.ports import UsageEvent
from ciyuan.pricing.catalog import Catalog
from ciyuan.pricing.cost import cost_of
from ciyuan.pricing.money import Amount
from ciyuan.pricing.usage import Usage
from ciyuan.tokens import count_text
from tests.conftest import free_port
from tests.e2e.conftest import Gateway, sqlite_gateway, tracked

CATALOG = Catalog.load_default()
MODEL = "gpt-4o-mini"


@pytest.fixture(scope="module")
def faulty(demo_upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    folder = tmp_path_factory.mktemp("faults")
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    upstreams = [
        {"name": "demo", "kind": "demo", "base_url": demo_upstream},
        {"name": "dead", "kind": "demo", "base_url": dead, "connect_timeout_s": 2},
        {
            "name": "busy",
            "kind": "demo",
            "base_url": demo_upstream,
            "headers": {"x-demo-fault": "status:429"},
        },
        {"name": "slow", "kind": "demo", "base_url": demo_upstream, "timeout_s": 1},
    ]
    routes = [
        {
            "model": "gpt-4o",
            "deployments": [{"upstream": "dead", "weight": 1000000}, {"upstream": "demo"}],
        },
        {
            "model": "gpt-4.1-mini",
            "deployments": [{"upstream": "busy", "weight": 1000000}, {"upstream": "demo"}],
        },
        {"model": "gpt-4.1-nano", "deployments": [{"upstream": "slow"}]},
        {"model": "*", "deployments": [{"upstream": "demo"}]},
    ]
    with sqlite_gateway(
        folder,
        demo_upstream,
        CIYUAN_UPSTREAMS=json.dumps(upstreams),
        CIYUAN_ROUTES=json.dumps(routes),
    ) as (gateway, _):
        yield gateway


def sdk(gateway: Gateway, key: str) -> openai.OpenAI:
    return tracked(
        openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0, timeout=30)
    )


def price(model: str, usage: Usage) -> Amount:
    found = CATALOG.price_for(model)
    assert found is not None
    return cost_of(usage, found).total


def spent(gateway: Gateway, account: str, credit: str = "1") -> Amount:
    balance = gateway.store.balance(account)
    assert balance.pending == Amount.zero(), "no hold may outlive its request"
    return Amount.parse(credit) - balance.available


def wait_event(gateway: Gateway, request_id: str) -> UsageEvent:
    for _ in range(100):
        event = gateway.store.usage_event(request_id)
        if event is not None:
            return event
        time.sleep(0.05)
    raise AssertionError(f"no usage event for {request_id}")


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4.1-mini"])
def test_fallback_to_the_next_deployment_charges_once(faulty: Gateway, model: str) -> None:
    account, key = faulty.customer("1")
    raw = sdk(faulty, key).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "fallback please"}], max_tokens=10
    )
    completion = raw.parse()
    expected = price(model, Usage.from_openai_chat(completion.usage.model_dump()))  # type: ignore[union-attr]
    assert Amount.parse(raw.headers["x-ciyuan-cost"]) == expected == spent(faulty, account)
    event = wait_event(faulty, raw.headers["x-ciyuan-request-id"])
    assert event.upstream == "demo" and event.cost == expected


def test_upstream_timeout_is_504_and_free(faulty: Gateway) -> None:
    account, key = faulty.customer("1")
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(faulty, key).chat.completions.create(
            model="gpt-4.1-nano",
            messages=[{"role": "user", "content": "slow"}],
            extra_headers={"x-demo-fault": "timeout", "x-demo-delay-ms": "3000"},
        )
    assert caught.value.status_code == 504
    assert spent(faulty, account) == Amount.zero()


@pytest.mark.parametrize("status", [500, 503])
def test_upstream_5xx_is_502_and_free(faulty: Gateway, status: int) -> None:
    account, key = faulty.customer("1")
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(faulty, key).chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "fail"}],
            extra_headers={"x-demo-fault": f"status:{status}"},
        )
    assert caught.value.status_code == 502
    assert spent(faulty, account) == Amount.zero()


def test_stream_cut_by_upstream_bills_what_was_delivered(faulty: Gateway) -> None:
    account, key = faulty.customer("1")
    raw = sdk(faulty, key).chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "a long story"}],
        stream=True,
        max_tokens=60,
        extra_headers={"x-demo-fault": "cut:4"},
    )
    chunks: list[openai.types.chat.ChatCompletionChunk] = []
    # The broken stream ends with OpenAI's error chunk: the SDK raises, not a quiet truncation.
    with pytest.raises(openai.APIError) as caught:
        chunks.extend(raw.parse())
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "upstream_error"
    delivered = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert delivered
    event = wait_event(faulty, raw.headers["x-ciyuan-request-id"])
    assert (event.status, event.usage_source) == ("partial", "counted")
    usage = Usage(
        input_tokens=event.prompt_tokens_local, output_tokens=count_text(MODEL, delivered).tokens
    )
    assert event.output_tokens == usage.output_tokens
    assert event.cost == price(MODEL, usage) == spent(faulty, account)


def test_missing_usage_is_counted_locally(faulty: Gateway) -> None:
    account, key = faulty.customer("1")
    client = sdk(faulty, key)
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "no usage here"}],
        max_tokens=20,
        extra_headers={"x-demo-fault": "no-usage"},
    )
    text = raw.parse().choices[0].message.content or ""
    first = Amount.parse(raw.headers["x-ciyuan-cost"])
    event = wait_event(faulty, raw.headers["x-ciyuan-request-id"])
    assert event.usage_source == "counted"
    assert first == price(
        MODEL,
        Usage(input_tokens=event.prompt_tokens_local, output_tokens=count_text(MODEL, text).tokens),
    )

    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "no usage in the stream either"}],
            max_tokens=20,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"x-demo-fault": "no-usage"},
        )
    )
    final = chunks[-1]
    assert final.usage is not None and final.model_extra["ciyuan"]["usage_source"] == "counted"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert final.usage.completion_tokens == count_text(MODEL, streamed).tokens
    assert first + Amount.parse(final.model_extra["ciyuan"]["cost"]) == spent(faulty, account)


def test_client_disconnect_mid_stream_is_billed_for_delivered_tokens(faulty: Gateway) -> None:
    account, key = faulty.customer("1")
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "drip drip"}],
        "stream": True,
        "max_tokens": 60,
    }
    headers = {"authorization": f"Bearer {key}", "x-demo-fault": "drip:100"}
    with httpx.stream(
        "POST", faulty.base_url + "/v1/chat/completions", json=body, headers=headers, timeout=30
    ) as response:
        request_id = response.headers["x-ciyuan-request-id"]
        received = 0
        for line in response.iter_lines():
            if line.startswith("data: ") and '"content"' in line:
                received += 1
                if received == 3:
                    break  # hang up mid-stream
    event = wait_event(faulty, request_id)
    assert (event.status, event.usage_source) == ("partial", "counted")
    assert 0 < event.output_tokens < 60
    expected = price(
        MODEL, Usage(input_tokens=event.prompt_tokens_local, output_tokens=event.output_tokens)
    )
    assert event.cost == expected == spent(faulty, account)


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"x-padding": "x" * 70_000}, {"model": MODEL, "messages": []}, 431),
        ({}, {"model": MODEL, "messages": [{"role": "user", "content": "x"}] * 10_001}, 400),
        (
            {},
            {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 10**9},
            400,
        ),
        ({}, {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "n": 0}, 400),
    ],
)
def test_limits_refuse_with_a_clear_error_and_charge_nothing(
    faulty: Gateway, headers: dict[str, str], body: dict[str, object], status: int
) -> None:
    account, key = faulty.customer("1")
    response = httpx.post(
        faulty.base_url + "/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {key}", **headers},
        timeout=30,
    )
    assert response.status_code == status
    assert response.json()["error"]["message"]
    assert spent(faulty, account) == Amount.zero()


def test_oversized_body_is_413(faulty: Gateway) -> None:
    account, key = faulty.customer("1")
    response = httpx.post(
        faulty.base_url + "/v1/chat/completions",
        content=b"x" * (9 * 1024 * 1024),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413
    assert spent(faulty, account) == Amount.zero()
