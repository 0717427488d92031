"""Legacy completions, embeddings, responses and models through the official openai SDK."""

from __future__ import annotations

import base64
import json
import math
from array import array
from typing import Any

import anyio
import httpx
import openai
import pytest

from .counts import prompt_count, tiktoken_count

MODEL = "gpt-4o"


@pytest.fixture
def client(demo_url: str) -> Any:
    with openai.OpenAI(base_url=f"{demo_url}/v1", api_key="x", max_retries=0) as client:
        yield client


def test_completions_default_limit_and_usage(client: openai.OpenAI) -> None:
    reply = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say something")
    assert reply.object == "text_completion"
    assert reply.id.startswith("cmpl-")
    choice = reply.choices[0]
    assert choice.finish_reason == "length"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 16 == tiktoken_count("cl100k_base", choice.text)
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": "Say something"}
    assert reply.usage.prompt_tokens == prompt_count("gpt-3.5-turbo-instruct", body, "completions")


def test_completions_several_prompts_logprobs_and_stream(client: openai.OpenAI) -> None:
    reply = client.completions.create(
        model="gpt-3.5-turbo-instruct", prompt=["one", "two"], n=2, max_tokens=3, logprobs=2
    )
    assert [c.index for c in reply.choices] == [0, 1, 2, 3]
    logprobs = reply.choices[0].logprobs
    assert logprobs is not None and logprobs.tokens is not None
    assert "".join(logprobs.tokens) == reply.choices[0].text
    stream = client.completions.create(
        model="gpt-3.5-turbo-instruct",
        prompt="one",
        max_tokens=300,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == tiktoken_count("cl100k_base", text)
    assert chunks[-2].choices[0].finish_reason == "stop"


def test_embeddings_float_base64_dimensions(client: openai.OpenAI) -> None:
    inputs = ["alpha", "beta gamma"]
    as_float = client.embeddings.create(
        model="text-embedding-3-small", input=inputs, encoding_format="float"
    )
    as_default = client.embeddings.create(model="text-embedding-3-small", input=inputs)
    assert [len(d.embedding) for d in as_float.data] == [1536, 1536]
    assert as_float.data[1].embedding == as_default.data[1].embedding
    assert math.isclose(sum(v * v for v in as_float.data[0].embedding), 1.0, rel_tol=1e-5)
    assert as_float.data[0].embedding != as_float.data[1].embedding
    body = {"model": "text-embedding-3-small", "input": inputs}
    assert as_float.usage.prompt_tokens == prompt_count(
        "text-embedding-3-small", body, "embeddings"
    )
    assert as_float.usage.total_tokens == as_float.usage.prompt_tokens
    small = client.embeddings.create(model="text-embedding-3-large", input="alpha", dimensions=64)
    assert len(small.data[0].embedding) == 64
    large = client.embeddings.create(model="text-embedding-3-large", input=[[1, 2, 3]])
    assert len(large.data[0].embedding) == 3072


def test_embeddings_raw_base64_is_little_endian_float32(demo_url: str) -> None:
    body = {
        "model": "text-embedding-3-small",
        "input": "alpha",
        "encoding_format": "base64",
        "dimensions": 8,
    }
    encoded = httpx.post(f"{demo_url}/v1/embeddings", json=body).json()["data"][0]["embedding"]
    values = array("f", base64.b64decode(encoded)).tolist()
    body["encoding_format"] = "float"
    assert (
        httpx.post(f"{demo_url}/v1/embeddings", json=body).json()["data"][0]["embedding"] == values
    )


def test_responses_non_stream(client: openai.OpenAI) -> None:
    reply = client.responses.create(model=MODEL, input="Explain metering", instructions="Be brief")
    assert reply.id.startswith("resp_")
    assert reply.status == "completed"
    assert reply.output_text
    usage = reply.usage
    assert usage is not None
    body = {"model": MODEL, "input": "Explain metering", "instructions": "Be brief"}
    assert usage.input_tokens == prompt_count(MODEL, body, "responses")
    assert usage.output_tokens == tiktoken_count("o200k_base", reply.output_text)
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0
    cut = client.responses.create(model=MODEL, input="Explain metering", max_output_tokens=16)
    assert cut.status == "incomplete"
    assert cut.incomplete_details is not None
    assert cut.incomplete_details.reason == "max_output_tokens"
    assert cut.usage is not None and cut.usage.output_tokens == 16


def test_responses_stream_events_and_helper(client: openai.OpenAI) -> None:
    headers = {"x-demo-cached-tokens": "2", "x-demo-reasoning-tokens": "3"}
    events = list(
        client.responses.create(model=MODEL, input="Stream it", stream=True, extra_headers=headers)
    )
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1]
    assert final.type == "response.completed"
    usage = final.response.usage
    assert usage is not None
    assert usage.input_tokens_details.cached_tokens == 2
    assert usage.output_tokens_details.reasoning_tokens == 3
    assert usage.output_tokens == tiktoken_count("o200k_base", deltas) + 3
    with client.responses.stream(model=MODEL, input="Stream it") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        helper_final = stream.get_final_response()
    assert helper_final.output_text == text == deltas


def test_responses_function_call(client: openai.OpenAI) -> None:
    tool: Any = {
        "type": "function",
        "name": "lookup",
        "parameters": {
            "type": "object",
            "properties": {"q": {"type": "string"}},
            "required": ["q"],
        },
    }
    reply = client.responses.create(model=MODEL, input="find it", tools=[tool])
    call = reply.output[0]
    assert call.type == "function_call"
    assert json.loads(call.arguments)["q"]
    with client.responses.stream(model=MODEL, input="find it", tools=[tool]) as stream:
        final = stream.get_final_response()
    assert final.output[0].type == "function_call"


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert MODEL in ids and "text-embedding-3-small" in ids
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_async_embeddings_and_responses(demo_url: str) -> None:
    async def main() -> None:
        async with openai.AsyncOpenAI(
            base_url=f"{demo_url}/v1", api_key="x", max_retries=0
        ) as client:
            vectors = await client.embeddings.create(model="text-embedding-3-small", input="a")
            assert len(vectors.data[0].embedding) == 1536
            stream = await client.responses.create(model=MODEL, input="hi", stream=True)
            kinds = [event.type async for event in stream]
            assert kinds[-1] == "response.completed"

    anyio.run(main)
