"""Chat completions through the official openai SDK: shapes, usage, limits, streams, tools.

Usage is checked against independent counts: prompt tokens against ciyuan.tokens'
count_request (what the gateway counts locally), completion tokens against tiktoken on the
reply text, and for streams on the concatenated deltas.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import openai
import pytest

from .counts import prompt_count, tiktoken_count

MODEL = "gpt-4o"
MESSAGES: list[Any] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Tell me about token meters."},
]


@pytest.fixture
def client(demo_url: str) -> Any:
    with openai.OpenAI(base_url=f"{demo_url}/v1", api_key="x", max_retries=0) as client:
        yield client


def test_non_stream_shape_and_usage(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert reply.id.startswith("chatcmpl-")
    assert reply.object == "chat.completion"
    assert reply.model == MODEL
    assert reply.system_fingerprint
    choice = reply.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    text = choice.message.content
    assert text
    usage = reply.usage
    assert usage is not None
    body = {"model": MODEL, "messages": MESSAGES}
    assert usage.prompt_tokens == prompt_count(MODEL, body, "chat")
    assert usage.completion_tokens == tiktoken_count("o200k_base", text)
    assert 20 <= usage.completion_tokens <= 60
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 0


def test_same_prompt_same_reply_different_prompt_different_reply(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    again = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    other = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert first.choices[0].message.content == again.choices[0].message.content
    assert first.choices[0].message.content != other.choices[0].message.content


@pytest.mark.parametrize("limit", [1, 2, 7, 19])
@pytest.mark.parametrize(
    ("model", "encoding"), [("gpt-4o", "o200k_base"), ("gpt-3.5-turbo", "cl100k_base")]
)
def test_max_tokens_is_honoured_exactly(
    client: openai.OpenAI, limit: int, model: str, encoding: str
) -> None:
    for key in ("max_tokens", "max_completion_tokens"):
        reply = client.chat.completions.create(model=model, messages=MESSAGES, **{key: limit})  # type: ignore[call-overload]
        choice = reply.choices[0]
        assert choice.finish_reason == "length"
        assert reply.usage is not None
        assert reply.usage.completion_tokens == limit
        assert tiktoken_count(encoding, choice.message.content or "") == limit


def test_stream_with_include_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        max_tokens=9,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "length"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert all(chunk.usage is None for chunk in chunks[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
    assert last.usage.completion_tokens == 9 == tiktoken_count("o200k_base", text)
    assert last.usage.prompt_tokens == prompt_count(
        MODEL, {"model": MODEL, "messages": MESSAGES}, "chat"
    )
    assert len({chunk.id for chunk in chunks}) == 1


def test_stream_without_include_usage_has_no_usage_chunk(demo_url: str) -> None:
    body = {"model": MODEL, "messages": MESSAGES, "stream": True}
    lines = httpx.post(f"{demo_url}/v1/chat/completions", json=body).text.split("\n\n")
    events = [line.removeprefix("data: ") for line in lines if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["choices"] and chunk["usage"] is None for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_n_choices_stream_and_not(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=MESSAGES, n=3, max_tokens=5)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    texts = [c.message.content or "" for c in reply.choices]
    assert len(set(texts)) > 1
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 15
    stream = client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        n=3,
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    streamed = ["", "", ""]
    usage = None
    for chunk in stream:
        for choice in chunk.choices:
            streamed[choice.index] += choice.delta.content or ""
        usage = chunk.usage or usage
    assert streamed == texts
    assert usage is not None
    assert usage.completion_tokens == 15


WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}


def test_tool_call_then_text_after_tool_result(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=MESSAGES, tools=[WEATHER_TOOL])
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls
    call = calls[0]
    assert call.type == "function"
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert isinstance(arguments["city"], str) and isinstance(arguments["days"], int)
    assert reply.usage is not None
    expected = tiktoken_count("o200k_base", "get_weather") + tiktoken_count(
        "o200k_base", call.function.arguments
    )
    assert reply.usage.completion_tokens == expected
    follow_up = [
        *MESSAGES,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    answer = client.chat.completions.create(model=MODEL, messages=follow_up, tools=[WEATHER_TOOL])
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content


def test_tool_call_streamed_through_sdk_helper(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model=MODEL, messages=MESSAGES, tools=[WEATHER_TOOL], tool_choice="required"
    ) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert calls
    assert json.loads(calls[0].function.arguments)["city"]
    none = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, tools=[WEATHER_TOOL], tool_choice="none"
    )
    assert none.choices[0].message.tool_calls is None


def test_json_mode_reply_is_json(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, response_format={"type": "json_object"}
    )
    text = reply.choices[0].message.content or ""
    assert isinstance(json.loads(text), dict)
    assert reply.usage is not None
    assert reply.usage.completion_tokens == tiktoken_count("o200k_base", text)


def test_logprobs(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, logprobs=True, top_logprobs=2, max_tokens=4
    )
    logprobs = reply.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    assert "".join(entry.token for entry in logprobs.content) == reply.choices[0].message.content
    for entry in logprobs.content:
        assert entry.logprob <= 0
        assert len(entry.top_logprobs) == 2
        assert entry.top_logprobs[0].token == entry.token


def test_cached_and_reasoning_headers(client: openai.OpenAI) -> None:
    body = {"model": MODEL, "messages": MESSAGES}
    prompt = prompt_count(MODEL, body, "chat")
    reply = client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        max_tokens=30,
        extra_headers={"x-demo-cached-tokens": "5", "x-demo-reasoning-tokens": "12"},
    )
    usage = reply.usage
    assert usage is not None and usage.prompt_tokens_details and usage.completion_tokens_details
    assert usage.prompt_tokens == prompt
    assert usage.prompt_tokens_details.cached_tokens == 5
    assert usage.completion_tokens_details.reasoning_tokens == 12
    visible = tiktoken_count("o200k_base", reply.choices[0].message.content or "")
    assert usage.completion_tokens == visible + 12 <= 30
    capped = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, extra_headers={"x-demo-cached-tokens": str(prompt + 50)}
    )
    assert capped.usage and capped.usage.prompt_tokens_details
    assert capped.usage.prompt_tokens_details.cached_tokens == prompt


def test_async_client_stream_and_not(demo_url: str) -> None:
    async def main() -> None:
        async with openai.AsyncOpenAI(
            base_url=f"{demo_url}/v1", api_key="x", max_retries=0
        ) as client:
            reply = await client.chat.completions.create(
                model=MODEL, messages=MESSAGES, max_tokens=6
            )
            stream = await client.chat.completions.create(
                model=MODEL,
                messages=MESSAGES,
                max_tokens=6,
                stream=True,
                stream_options={"include_usage": True},
            )
            text = ""
            usage = None
            async for chunk in stream:
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
                usage = chunk.usage or usage
            assert text == reply.choices[0].message.content
            assert usage is not None and usage.completion_tokens == 6

    anyio.run(main)


def test_missing_messages_is_openai_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=[])
    assert caught.value.status_code == 400
    error: Any = caught.value.body
    assert error["param"] == "messages" and error["type"] == "invalid_request_error"
