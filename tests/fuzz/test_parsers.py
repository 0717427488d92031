"""Hypothesis on the request parsers, in process: whatever a client (or a provider) sends, they
raise only the product's own errors (``CiyuanError`` and its family, which the app renders as a
clear 4xx), never a ``TypeError``, ``KeyError``, ``RecursionError`` … that would become a 500.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ciyuan.errors import CiyuanError
from ciyuan.gateway import apis
from ciyuan.gateway.apis import ApiSpec
from ciyuan.gateway.limits import RequestLimits
from ciyuan.gateway.request_parsing import parse_json_object, required_model
from ciyuan.gateway.stream_meters import (
    AnthropicStreamMeter,
    OpenAIStreamMeter,
    ResponsesStreamMeter,
    StreamMeter,
)
from ciyuan.tokens import count_request
from ciyuan.tokens.requests import APIS

# Derandomized and bounded: deterministic in CI, a few seconds in all.
QUICK = settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SPECS = [apis.CHAT, apis.COMPLETIONS, apis.EMBEDDINGS, apis.RESPONSES, apis.ANTHROPIC_MESSAGES]
KEYS = st.sampled_from(
    [
        "model", "messages", "input", "prompt", "max_tokens", "max_completion_tokens",
        "max_output_tokens", "n", "stream", "stream_options", "include_usage", "usage", "role",
        "content", "type", "text", "image_url", "url", "detail", "tools", "function",
        "parameters", "system", "input_audio", "data", "format", "source", "prompt_tokens",
        "completion_tokens", "input_tokens", "output_tokens", "prompt_tokens_details",
        "cached_tokens", "completion_tokens_details", "reasoning_tokens", "tool_choice",
        "cache_creation_input_tokens", "cache_read_input_tokens", "total_tokens", "name",
    ]
)  # fmt: skip
"""Field names the parsers look for, so generated bodies reach their deep branches."""
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(["gpt-4o-mini", "claude-3-5-haiku-latest", "text-embedding-3-small"])
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS | st.text(max_size=8), inner),
    max_leaves=30,
)
BODIES = st.dictionaries(KEYS, JSON, max_size=8)


def product_errors_only(call: Callable[[], object]) -> None:
    with contextlib.suppress(CiyuanError):
        call()


def dumps(value: object) -> bytes:
    """The stdlib writes what orjson refuses to: integers past 64 bits and ``Infinity``."""
    return json.dumps(value).encode()


@QUICK
@given(st.binary(max_size=200) | JSON.map(dumps))
def test_parse_json_object(raw: bytes) -> None:
    try:
        body = parse_json_object(raw)
    except CiyuanError:
        return
    assert isinstance(body, dict)
    product_errors_only(lambda: required_model(body))


def test_parse_json_object_refuses_hostile_json() -> None:
    # orjson refuses these itself; the point is that they arrive as InvalidRequest.
    hostile = [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        b'{"max_tokens": NaN}',
        b'{"max_tokens": Infinity}',
        b'{"max_tokens": 1e400}',
        b"\xff\xfe{}",
        b'{"model": "\xed\xa0\x80"}',  # a lone surrogate in UTF-8
    ]
    for raw in hostile:
        with pytest.raises(CiyuanError):
            parse_json_object(raw)


@QUICK
@given(st.sampled_from(SPECS), BODIES)
def test_api_spec_methods(spec: ApiSpec, body: dict[str, Any]) -> None:
    limits = RequestLimits(1 << 20, 1.0, 1 << 16, 1_000_000, 10_000)
    product_errors_only(lambda: spec.stream_flags(body))
    product_errors_only(lambda: spec.choices(body))
    product_errors_only(lambda: limits.check(body, spec.output_limit(body)))
    # A provider's response is hostile input too: usage_of reads whatever came back.
    product_errors_only(lambda: spec.usage_of(body))
    product_errors_only(lambda: spec.completion_text(body))


@QUICK
@given(st.sampled_from(APIS), st.sampled_from(["gpt-4o-mini", "claude-3-5-haiku-latest"]), BODIES)
def test_count_request(api: str, model: str, body: dict[str, Any]) -> None:
    try:
        counted = count_request(model, body, api=api)
    except CiyuanError:
        return
    assert counted.total >= 0


def test_count_request_deeply_nested() -> None:
    nested: Any = "x"
    for _ in range(50_000):
        nested = {"type": "object", "properties": {"a": nested}}
    body = {"model": "gpt-4o-mini", "messages": [], "tools": [{"function": {"parameters": nested}}]}
    for api in APIS:
        product_errors_only(lambda api=api: count_request("gpt-4o-mini", body, api=api))


SSE_LINES = st.lists(
    st.sampled_from([b"data: ", b"event: ", b"data:", b"id: 1", b": comment", b""]).flatmap(
        lambda head: (JSON.map(dumps) | st.binary(max_size=40) | st.just(b"[DONE]")).map(
            lambda tail: head + tail
        )
    ),
    max_size=5,
).map(b"\n".join)
METERS: list[Callable[[bool], StreamMeter]] = [
    OpenAIStreamMeter,
    ResponsesStreamMeter,
    AnthropicStreamMeter,
]


@QUICK
@given(
    st.sampled_from(METERS), st.booleans(), st.lists(SSE_LINES | st.binary(max_size=80), max_size=6)
)
def test_stream_meter_step(
    meter_of: Callable[[bool], StreamMeter], wants_usage: bool, events: list[bytes]
) -> None:
    meter = meter_of(wants_usage)
    for event in events:
        try:
            step = meter.step(event)
        except CiyuanError:
            continue
        if step.render is not None:
            step.render(None)
            step.render({"cost": "0.000001"})
    assert isinstance(meter.delivered_text(), str)
