"""The contract other packages rely on: names, types, the cookbook's chat examples, and the
rule that bad input raises only InvalidRequest naming the parameter."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import Any

import pytest

from ciyuan.errors import InvalidRequest
from ciyuan.tokens import (
    APIS,
    RequestCount,
    TokenCount,
    count_request,
    count_text,
    encoding_name_for,
)

# The OpenAI cookbook "How to count tokens with tiktoken", section 6: the API reported
# 129 prompt tokens for gpt-3.5-turbo, gpt-4-0613 and gpt-4, and 124 for gpt-4o and gpt-4o-mini.
COOKBOOK_MESSAGES: list[dict[str, str]] = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate "
        "jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on "
        "opportunities for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the "
        "client deliverable.",
    },
]

# Section 7: with this weather tool the API reported 105 (gpt-3.5-turbo, gpt-4) and 101
# (gpt-4o, gpt-4o-mini) prompt tokens.
COOKBOOK_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA",
                    },
                    "unit": {
                        "type": "string",
                        "description": "The unit of temperature to return",
                        "enum": ["celsius", "fahrenheit"],
                    },
                },
                "required": ["location"],
            },
        },
    }
]
COOKBOOK_TOOL_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful assistant that can answer to questions about the weather.",
    },
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


@pytest.mark.parametrize(
    ("model", "prompt_tokens"),
    [
        ("gpt-3.5-turbo", 129),
        ("gpt-3.5-turbo-0125", 129),
        ("gpt-4-0613", 129),
        ("gpt-4", 129),
        ("gpt-4o", 124),
        ("gpt-4o-2024-08-06", 124),
        ("gpt-4o-mini", 124),
        ("gpt-4o-mini-2024-07-18", 124),
    ],
)
def test_cookbook_chat_example(model: str, prompt_tokens: int) -> None:
    result = count_request(model, {"model": model, "messages": COOKBOOK_MESSAGES})
    assert result.total == prompt_tokens
    assert result.exact
    assert result.images == result.audio == result.tools == 0


@pytest.mark.parametrize(
    ("model", "prompt_tokens"),
    [("gpt-3.5-turbo", 105), ("gpt-4", 105), ("gpt-4o", 101), ("gpt-4o-mini", 101)],
)
def test_cookbook_tools_example(model: str, prompt_tokens: int) -> None:
    body = {"messages": COOKBOOK_TOOL_MESSAGES, "tools": COOKBOOK_TOOLS}
    result = count_request(model, body)
    assert result.total == prompt_tokens
    assert result.exact
    assert result.tools > 0


def test_types_are_frozen_slotted_dataclasses() -> None:
    text = count_text("gpt-4o", "hello")
    request = count_request("gpt-4o", {"messages": [{"role": "user", "content": "hello"}]})
    assert isinstance(text, TokenCount)
    assert isinstance(request, RequestCount)
    for value in (text, request):
        assert not hasattr(value, "__dict__")
        with pytest.raises(dataclasses.FrozenInstanceError):
            value.exact = False  # type: ignore[misc]
    assert request.total == (
        request.text + request.images + request.audio + request.tools + request.overhead
    )


def test_every_api_is_served() -> None:
    assert set(APIS) == {"chat", "completions", "embeddings", "responses", "anthropic_messages"}


def test_encoding_name_for_the_contract_models() -> None:
    o200k = [
        "gpt-4o",
        "gpt-4o-2024-08-06",
        "openai/gpt-4o",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.5-preview",
        "gpt-5",
        "gpt-5-nano",
        "gpt-5.1",
        "o1",
        "o1-mini",
        "o3",
        "o4-mini",
        "chatgpt-4o-latest",
        "gpt-oss-120b",
        "omni-moderation-latest",
        "ft:gpt-4o-mini-2024-07-18:acme::abc123",
        "openrouter/openai/gpt-4o",
    ]
    cl100k = [
        "gpt-4",
        "gpt-4-0613",
        "gpt-4-turbo",
        "gpt-4-turbo-2024-04-09",
        "gpt-3.5-turbo",
        "gpt-3.5-turbo-16k",
        "text-embedding-3-small",
        "text-embedding-3-large",
        "text-embedding-ada-002",
    ]
    for model in o200k:
        assert encoding_name_for(model) == "o200k_base", model
    for model in cl100k:
        assert encoding_name_for(model) == "cl100k_base", model
    for model in ["claude-sonnet-4-5", "gemini-2.5-pro", "mistral-large-latest", "gpt-4.7", "o10"]:
        assert encoding_name_for(model) is None, model


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "user", "content": "a"}, "b"]}, "messages[1]"),
        ({"messages": [{"role": 3, "content": "a"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": "a", "name": 1}]}, "messages[0].name"),
        (
            {"messages": [{"role": "user", "content": "a"}] * 3 + [{"role": "user", "content": 5}]},
            "messages[3].content",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages[0].content[0].text",
        ),
        ({"messages": [{"role": "user", "content": [7]}]}, "messages[0].content[0]"),
        (
            {"messages": [{"role": "user", "content": [{"text": "x"}]}]},
            "messages[0].content[0].type",
        ),
        ({"messages": [], "tools": {"a": 1}}, "tools"),
        ({"messages": [], "tools": [{"type": "function", "function": {}}]}, "tools[0].function"),
    ],
)
def test_malformed_chat_raises_invalid_request_naming_the_param(
    body: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        count_request("gpt-4o", body)
    assert caught.value.param == param


def test_unknown_models_get_labelled_estimates_not_errors() -> None:
    text = count_text("some-new-model", "hello world")
    assert not text.exact and text.rule and text.tokens > 0
    request = count_request("claude-sonnet-4-5", {"messages": [{"role": "user", "content": "hi"}]})
    assert not request.exact and request.notes


def test_special_token_text_counts_as_plain_text() -> None:
    result = count_text("gpt-4o", "<|endoftext|> and <|endofprompt|>")
    assert result.exact
    assert result.tokens > 2


def test_a_model_that_is_not_a_string_is_an_invalid_request() -> None:
    for model in (None, ["gpt-4o"], 3):
        with pytest.raises(InvalidRequest) as caught:
            count_request(model, {"messages": []})  # type: ignore[arg-type]
        assert caught.value.param == "model"
        with pytest.raises(InvalidRequest):
            count_text(model, "hi")  # type: ignore[arg-type]


def test_the_package_imports_no_web_framework_or_database_driver() -> None:
    code = (
        "import sys, ciyuan.tokens, ciyuan.tokens.media_fetch;"
        "allowed = {'ciyuan', 'tiktoken', 'tiktoken_ext', 'quicktok', 'tokenizers', 'regex'};"
        "third = {m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names);"
        "print(sorted(third - allowed - {'__main__', '_distutils_hack'}))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "[]", output
