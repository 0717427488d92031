"""Usage from the providers' real usage shapes: disjoint buckets that add up to their totals.

Each golden payload is split into buckets; the test checks each bucket and that
``input_total``/``output_total`` equal the provider's own prompt and completion totals, which is
what proves no token is counted twice. Bad shapes must raise InvalidRequest naming the field.
"""

from __future__ import annotations

from typing import Any

import pytest
from pricing_golden import (
    ANTHROPIC_CACHE_WRITE_AND_READ,
    ANTHROPIC_MIXED_TTL,
    ANTHROPIC_STREAM_DELTA,
    ANTHROPIC_STREAM_START,
    GEMINI_USAGE_METADATA,
    OPENAI_CHAT_AUDIO,
    OPENAI_CHAT_CACHED_REASONING,
    OPENAI_EMBEDDINGS,
    OPENAI_RESPONSES_CACHED_REASONING,
)

from ciyuan.errors import InvalidRequest
from ciyuan.pricing.usage import Usage


def test_openai_chat_cached_and_reasoning_split_into_disjoint_buckets() -> None:
    usage = Usage.from_openai_chat(OPENAI_CHAT_CACHED_REASONING)
    assert usage == Usage(
        input_tokens=86, cache_read_tokens=1920, output_tokens=108, reasoning_tokens=192
    )
    assert usage.input_total == OPENAI_CHAT_CACHED_REASONING["prompt_tokens"]
    assert usage.output_total == OPENAI_CHAT_CACHED_REASONING["completion_tokens"]
    assert usage.total == OPENAI_CHAT_CACHED_REASONING["total_tokens"]


def test_openai_chat_audio_tokens_leave_the_text_buckets() -> None:
    usage = Usage.from_openai_chat(OPENAI_CHAT_AUDIO)
    assert usage == Usage(
        input_tokens=200, audio_input_tokens=800, output_tokens=100, audio_output_tokens=400
    )
    assert usage.total == OPENAI_CHAT_AUDIO["total_tokens"]


def test_openai_chat_with_null_details_and_no_completion() -> None:
    usage = Usage.from_openai_chat(
        {"prompt_tokens": 12, "prompt_tokens_details": None, "completion_tokens_details": None}
    )
    assert usage == Usage(input_tokens=12)


def test_deepseek_cache_hit_field_is_the_cache_read() -> None:
    usage = Usage.from_openai_chat(
        {
            "prompt_tokens": 100,
            "completion_tokens": 10,
            "prompt_cache_hit_tokens": 64,
            "prompt_cache_miss_tokens": 36,
        }
    )
    assert usage == Usage(input_tokens=36, cache_read_tokens=64, output_tokens=10)


def test_openai_responses_cached_and_reasoning() -> None:
    usage = Usage.from_openai_responses(OPENAI_RESPONSES_CACHED_REASONING)
    assert usage == Usage(
        input_tokens=1104, cache_read_tokens=4096, output_tokens=476, reasoning_tokens=1024
    )
    assert usage.input_total == 5200
    assert usage.output_total == 1500
    assert usage.total == OPENAI_RESPONSES_CACHED_REASONING["total_tokens"]


def test_anthropic_input_tokens_exclude_the_cache_so_buckets_add() -> None:
    usage = Usage.from_anthropic(ANTHROPIC_CACHE_WRITE_AND_READ)
    assert usage == Usage(
        input_tokens=50, cache_write_5m_tokens=2048, cache_read_tokens=10000, output_tokens=503
    )
    assert usage.input_total == 50 + 2048 + 10000


def test_anthropic_cache_writes_split_by_ttl() -> None:
    usage = Usage.from_anthropic(ANTHROPIC_MIXED_TTL)
    assert usage.cache_write_5m_tokens == 1000
    assert usage.cache_write_1h_tokens == 2000
    assert usage.input_total == 10 + 3000


def test_anthropic_without_ttl_breakdown_counts_writes_as_5m() -> None:
    usage = Usage.from_anthropic(
        {"input_tokens": 3, "cache_creation_input_tokens": 700, "output_tokens": 1}
    )
    assert usage == Usage(input_tokens=3, cache_write_5m_tokens=700, output_tokens=1)


def test_anthropic_stream_merges_start_and_cumulative_delta() -> None:
    usage = Usage.from_anthropic_stream(ANTHROPIC_STREAM_START, ANTHROPIC_STREAM_DELTA)
    assert usage == Usage(input_tokens=472, cache_read_tokens=1024, output_tokens=89)


def test_embeddings_and_gemini() -> None:
    assert Usage.from_openai_embeddings(OPENAI_EMBEDDINGS) == Usage(input_tokens=8)
    gemini = Usage.from_gemini(GEMINI_USAGE_METADATA)
    assert gemini == Usage(
        input_tokens=200, cache_read_tokens=1000, output_tokens=300, reasoning_tokens=500
    )
    assert gemini.total == GEMINI_USAGE_METADATA["totalTokenCount"]


def test_usages_add_bucket_by_bucket() -> None:
    a = Usage(input_tokens=1, reasoning_tokens=2)
    b = Usage(input_tokens=10, cache_read_tokens=5)
    assert a + b == Usage(input_tokens=11, cache_read_tokens=5, reasoning_tokens=2)


@pytest.mark.parametrize(
    ("build", "payload", "field"),
    [
        (Usage.from_openai_chat, {"completion_tokens": 3}, "usage.prompt_tokens"),
        (Usage.from_openai_chat, {"prompt_tokens": -1}, "usage.prompt_tokens"),
        (Usage.from_openai_chat, {"prompt_tokens": 1.5}, "usage.prompt_tokens"),
        (Usage.from_openai_chat, {"prompt_tokens": True}, "usage.prompt_tokens"),
        (Usage.from_openai_chat, {"prompt_tokens": "12"}, "usage.prompt_tokens"),
        (
            Usage.from_openai_chat,
            {"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 11}},
            "usage.prompt_tokens",
        ),
        (
            Usage.from_openai_chat,
            {"prompt_tokens": 1, "completion_tokens_details": {"reasoning_tokens": -2}},
            "usage.completion_tokens_details.reasoning_tokens",
        ),
        (
            Usage.from_openai_chat,
            {"prompt_tokens": 1, "prompt_tokens_details": [1]},
            "usage.prompt_tokens_details",
        ),
        (
            Usage.from_openai_responses,
            {
                "input_tokens": 5,
                "output_tokens": 1,
                "output_tokens_details": {"reasoning_tokens": 2},
            },
            "usage.output_tokens",
        ),
        (Usage.from_anthropic, {"output_tokens": 5}, "usage.input_tokens"),
        (
            Usage.from_anthropic,
            {
                "input_tokens": 1,
                "cache_creation_input_tokens": 10,
                "cache_creation": {"ephemeral_5m_input_tokens": 3, "ephemeral_1h_input_tokens": 3},
            },
            "usage.cache_creation",
        ),
        (Usage.from_openai_embeddings, {"total_tokens": 3}, "usage.prompt_tokens"),
        (Usage.from_openai_embeddings, [], "usage"),
    ],
)
def test_bad_shapes_name_the_field(build: Any, payload: Any, field: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        build(payload)
    assert raised.value.param == field
    assert field in raised.value.message


def test_direct_construction_refuses_negative_and_float() -> None:
    with pytest.raises(InvalidRequest, match="output_tokens"):
        Usage(output_tokens=-1)
    with pytest.raises(InvalidRequest, match="input_tokens"):
        Usage(input_tokens=2.0)  # type: ignore[arg-type]
