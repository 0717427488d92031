"""Every client API through a real gateway, with the official SDKs (sync and async), streaming
and not. Each charge must equal the usage the upstream reported, priced independently here,
and the ledger must move by exactly that amount."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import openai
import pytest

from ciyuan.pricing.catalog import Catalog
from ciyuan.pricing.cost import cost_of
from ciyuan.pricing.money import Amount
from ciyuan.pricing.usage import Usage
from tests.e2e.conftest import Gateway, tracked

CATALOG = Catalog.load_default()
CLAUDE = "claude-haiku-4-5"


def price(model: str, usage: Usage) -> Amount:
    found = CATALOG.price_for(model)
    assert found is not None
    return cost_of(usage, found).total


def dump(obj: Any) -> dict[str, Any]:
    return {k: v for k, v in obj.model_dump().items() if v is not None}


def oai(gateway: Gateway, key: str) -> openai.OpenAI:
    return tracked(
        openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0, timeout=30)
    )


def claude(gateway: Gateway, key: str) -> anthropic.Anthropic:
    return tracked(
        anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=30)
    )


def charged(gateway: Gateway, account: str, credit: str) -> Amount:
    balance = gateway.store.balance(account)
    assert balance.pending == Amount.zero()
    return Amount.parse(credit) - balance.available


def test_anthropic_messages(gateway: Gateway) -> None:
    account, key = gateway.customer("1")
    raw = claude(gateway, key).messages.with_raw_response.create(
        model=CLAUDE, max_tokens=50, messages=[{"role": "user", "content": "Hello, Claude"}]
    )
    message = raw.parse()
    assert message.content[0].type == "text" and message.content[0].text
    expected = price(CLAUDE, Usage.from_anthropic(dump(message.usage)))
    assert Amount.parse(raw.headers["x-ciyuan-cost"]) == expected == charged(gateway, account, "1")


def test_anthropic_stream_with_cache_reads(gateway: Gateway) -> None:
    account, key = gateway.customer("1")
    with claude(gateway, key).messages.stream(
        model=CLAUDE,
        max_tokens=40,
        messages=[{"role": "user", "content": "Tell me about caches " * 20}],
        extra_headers={"x-demo-cached-tokens": "50"},
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text
    usage = Usage.from_anthropic(dump(final.usage))
    assert usage.cache_read_tokens == 50
    assert price(CLAUDE, usage) == charged(gateway, account, "1")


def test_anthropic_count_tokens_is_local_and_free(gateway: Gateway) -> None:
    account, key = gateway.customer("1")
    counted = claude(gateway, key).messages.count_tokens(
        model=CLAUDE, messages=[{"role": "user", "content": "How many tokens is this?"}]
    )
    assert counted.input_tokens > 0
    assert charged(gateway, account, "1") == Amount.zero()


def test_anthropic_errors_use_anthropic_format(gateway: Gateway) -> None:
    account, key = gateway.customer("1")
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude(gateway, key).messages.create(
            model="no-such-claude", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.body["type"] == "error"  # type: ignore[index]
    with pytest.raises(anthropic.AuthenticationError):
        claude(gateway, "ck-wrongkey_" + "y" * 43).messages.create(
            model=CLAUDE, max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(anthropic.BadRequestError):
        claude(gateway, key).messages.create(
            model=CLAUDE, max_tokens=0, messages=[{"role": "user", "content": "x"}]
        )
    assert charged(gateway, account, "1") == Amount.zero()


def test_legacy_completions_plain_and_stream(gateway: Gateway) -> None:
    account, key = gateway.customer("1")
    sdk = oai(gateway, key)
    raw = sdk.completions.with_raw_response.create(
        model="gpt-3.5-turbo-instruct", prompt="Say hi", max_tokens=12
    )
    first = raw.parse()
    cost = Amount.parse(raw.headers["x-ciyuan-cost"])
    assert cost == price("gpt-3.5-turbo-instruct", Usage.from_openai_chat(dump(first.usage)))
    chunks = list(
        sdk.completions.create(
            model="gpt-3.5-turbo-instruct",
            prompt="Say more",
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    figures = chunks[-1].model_extra["ciyuan"]
    assert cost + Amount.parse(figures["cost"]) == charged(gateway, account, "1")


def test_embeddings(gateway: Gateway) -> None:
    account, key = gateway.customer("1")
    raw = oai(gateway, key).embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=["one", "two words"]
    )
    result = raw.parse()
    assert len(result.data) == 2 and len(result.data[0].embedding) > 0
    expected = price("text-embedding-3-small", Usage.from_openai_embeddings(dump(result.usage)))
    assert Amount.parse(raw.headers["x-ciyuan-cost"]) == expected == charged(gateway, account, "1")


def test_responses_plain_and_stream(gateway: Gateway) -> None:
    account, key = gateway.customer("1")
    sdk = oai(gateway, key)
    raw = sdk.responses.with_raw_response.create(
        model="gpt-4o-mini", input="Write a haiku", max_output_tokens=30
    )
    response = raw.parse()
    assert response.output_text
    first = Amount.parse(raw.headers["x-ciyuan-cost"])
    assert first == price("gpt-4o-mini", Usage.from_openai_responses(dump(response.usage)))
    events = list(
        sdk.responses.create(
            model="gpt-4o-mini", input="Another haiku", stream=True, max_output_tokens=30
        )
    )
    completed = [e for e in events if e.type in ("response.completed", "response.incomplete")][-1]
    second = Amount.parse(completed.model_extra["ciyuan"]["cost"])
    assert second == price(
        "gpt-4o-mini", Usage.from_openai_responses(dump(completed.response.usage))
    )
    assert first + second == charged(gateway, account, "1")


def test_chat_with_tools_json_mode_and_n(gateway: Gateway) -> None:
    account, key = gateway.customer("1")
    sdk = oai(gateway, key)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=tools,
        tool_choice="required",
    )
    assert raw.parse().choices[0].message.tool_calls
    total = Amount.parse(raw.headers["x-ciyuan-cost"])
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "JSON please"}],
        response_format={"type": "json_object"},
        n=2,
        max_tokens=20,
    )
    assert len(raw.parse().choices) == 2
    total += Amount.parse(raw.headers["x-ciyuan-cost"])
    assert total == charged(gateway, account, "1")


def test_async_clients(gateway: Gateway) -> None:
    account, key = gateway.customer("1")

    async def run() -> Amount:
        aoai = openai.AsyncOpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)
        aclaude = anthropic.AsyncAnthropic(base_url=gateway.base_url, api_key=key, max_retries=0)
        chats = [
            aoai.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"q{i}"}], max_tokens=10
            )
            for i in range(4)
        ]
        messages = [
            aclaude.messages.with_raw_response.create(
                model=CLAUDE, max_tokens=10, messages=[{"role": "user", "content": f"m{i}"}]
            )
            for i in range(4)
        ]
        done = await asyncio.gather(*chats, *messages)
        await aoai.close()
        await aclaude.close()
        return Amount(sum(Amount.parse(r.headers["x-ciyuan-cost"]).nanos for r in done))

    assert asyncio.run(run()) == charged(gateway, account, "1")


def test_overhead_header_is_reported(gateway: Gateway) -> None:
    _, key = gateway.customer("1")
    raw = oai(gateway, key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    assert float(raw.headers["x-ciyuan-overhead-ms"]) > 0
