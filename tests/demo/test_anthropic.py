"""Anthropic messages and count_tokens through the official anthropic SDK.

Anthropic's own tokenizer is not public, so the completion side is checked against whatever
ciyuan.tokens counts for a Claude model; the prompt side against count_request. That count is an
estimate (not additive per word), so max_tokens is honoured as "at most, and within one reply
word of it" rather than exactly as for the OpenAI encodings.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import anyio
import httpx
import pytest

from .counts import prompt_count, text_count

MODEL = "claude-sonnet-5-5"
MESSAGES: list[Any] = [{"role": "user", "content": "Tell me about ledgers."}]


@pytest.fixture
def client(demo_url: str) -> Any:
    with anthropic.Anthropic(base_url=demo_url, api_key="x", max_retries=0) as client:
        yield client


def test_non_stream_shape_and_usage(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model=MODEL, max_tokens=1000, messages=MESSAGES, system="Be brief"
    )
    assert message.id.startswith("msg_")
    assert message.type == "message" and message.role == "assistant"
    assert message.stop_reason == "end_turn"
    block = message.content[0]
    assert block.type == "text"
    body = {"model": MODEL, "max_tokens": 1000, "messages": MESSAGES, "system": "Be brief"}
    assert message.usage.input_tokens == prompt_count(MODEL, body, "anthropic_messages")
    assert message.usage.output_tokens == text_count(MODEL, block.text)
    assert message.usage.cache_read_input_tokens == 0
    assert message.usage.cache_creation_input_tokens == 0


@pytest.mark.parametrize("limit", [2, 5, 13])
def test_max_tokens_is_honoured(client: anthropic.Anthropic, limit: int) -> None:
    message = client.messages.create(model=MODEL, max_tokens=limit, messages=MESSAGES)
    assert message.stop_reason == "max_tokens"
    block = message.content[0]
    assert block.type == "text"
    assert message.usage.output_tokens == text_count(MODEL, block.text)
    assert limit - 2 <= message.usage.output_tokens <= limit


def test_stream_events_and_final_usage(client: anthropic.Anthropic) -> None:
    headers = {"x-demo-cached-tokens": "3", "x-demo-cache-creation-tokens": "2"}
    with client.messages.stream(
        model=MODEL, max_tokens=7, messages=MESSAGES, extra_headers=headers
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
        text = stream.current_message_snapshot.content[0]
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert {
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
    } <= set(kinds)
    prompt = prompt_count(
        MODEL, {"model": MODEL, "max_tokens": 7, "messages": MESSAGES}, "anthropic_messages"
    )
    assert text.type == "text"
    assert final.usage.output_tokens == text_count(MODEL, text.text) <= 7
    assert final.usage.cache_read_input_tokens == 3
    assert final.usage.cache_creation_input_tokens == 2
    assert final.usage.input_tokens == prompt - 5
    assert final.stop_reason == "max_tokens"


def test_raw_stream_has_ping_and_real_event_order(demo_url: str) -> None:
    body = {"model": MODEL, "max_tokens": 3, "messages": MESSAGES, "stream": True}
    text = httpx.post(
        f"{demo_url}/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"}
    ).text
    names = [
        line.removeprefix("event: ") for line in text.splitlines() if line.startswith("event: ")
    ]
    deltas = names.count("content_block_delta")
    assert deltas >= 1
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_missing_max_tokens_is_anthropic_400(demo_url: str) -> None:
    body = {"model": MODEL, "messages": MESSAGES}
    reply = httpx.post(
        f"{demo_url}/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"}
    )
    assert reply.status_code == 400
    error = reply.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in error["error"]["message"]


def test_count_tokens(client: anthropic.Anthropic) -> None:
    counted = client.messages.count_tokens(model=MODEL, messages=MESSAGES)
    assert counted.input_tokens == prompt_count(
        MODEL, {"model": MODEL, "messages": MESSAGES}, "anthropic_messages"
    )


TOOL: Any = {
    "name": "get_balance",
    "description": "balance of an account",
    "input_schema": {
        "type": "object",
        "properties": {"account": {"type": "string"}},
        "required": ["account"],
    },
}


def test_tool_use_then_answer(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model=MODEL, max_tokens=200, messages=MESSAGES, tools=[TOOL])
    assert message.stop_reason == "tool_use"
    block = message.content[0]
    assert block.type == "tool_use"
    assert isinstance(block.input, dict) and block.input["account"]
    with client.messages.stream(
        model=MODEL, max_tokens=200, messages=MESSAGES, tools=[TOOL], tool_choice={"type": "any"}
    ) as stream:
        streamed = stream.get_final_message()
    streamed_block = streamed.content[0]
    assert streamed_block.type == "tool_use" and streamed_block.input == block.input
    follow_up = [
        *MESSAGES,
        {"role": "assistant", "content": [block.model_dump()]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "42"}],
        },
    ]
    answer = client.messages.create(model=MODEL, max_tokens=200, messages=follow_up, tools=[TOOL])
    assert answer.stop_reason == "end_turn"


def test_models_in_anthropic_shape(client: anthropic.Anthropic) -> None:
    ids = [model.id for model in client.models.list()]
    assert MODEL in ids


def test_async_client(demo_url: str) -> None:
    async def main() -> None:
        async with anthropic.AsyncAnthropic(
            base_url=demo_url, api_key="x", max_retries=0
        ) as client:
            message = await client.messages.create(model=MODEL, max_tokens=4, messages=MESSAGES)
            async with client.messages.stream(
                model=MODEL, max_tokens=4, messages=MESSAGES
            ) as stream:
                text = "".join([chunk async for chunk in stream.text_stream])
                final = await stream.get_final_message()
            block = message.content[0]
            assert block.type == "text" and block.text == text
            assert final.usage.output_tokens == text_count(MODEL, text) <= 4

    anyio.run(main)


def test_malformed_json_body_is_anthropic_400(demo_url: str) -> None:
    reply = httpx.post(
        f"{demo_url}/v1/messages", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert reply.status_code == 400
    assert reply.json()["error"]["type"] == "invalid_request_error"
    assert json.loads(reply.text)["type"] == "error"
