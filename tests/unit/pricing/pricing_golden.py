"""Usage payloads in the providers' real wire shapes, shared by the golden tests."""

from __future__ import annotations

from typing import Any

# Chat Completions, o-series with a cache hit and hidden reasoning (shape of the API reference).
OPENAI_CHAT_CACHED_REASONING: dict[str, Any] = {
    "prompt_tokens": 2006,
    "completion_tokens": 300,
    "total_tokens": 2306,
    "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 192,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}

# Chat Completions with audio in and out (gpt-4o-audio-preview).
OPENAI_CHAT_AUDIO: dict[str, Any] = {
    "prompt_tokens": 1000,
    "completion_tokens": 500,
    "total_tokens": 1500,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 800},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 400},
}

# Responses API with a cache hit and reasoning.
OPENAI_RESPONSES_CACHED_REASONING: dict[str, Any] = {
    "input_tokens": 5200,
    "input_tokens_details": {"cached_tokens": 4096},
    "output_tokens": 1500,
    "output_tokens_details": {"reasoning_tokens": 1024},
    "total_tokens": 6700,
}

# Anthropic Messages: a 5-minute cache write plus a cache read.
ANTHROPIC_CACHE_WRITE_AND_READ: dict[str, Any] = {
    "input_tokens": 50,
    "cache_creation_input_tokens": 2048,
    "cache_read_input_tokens": 10000,
    "cache_creation": {"ephemeral_5m_input_tokens": 2048, "ephemeral_1h_input_tokens": 0},
    "output_tokens": 503,
    "service_tier": "standard",
    "server_tool_use": None,
}

# Anthropic Messages: writes split between the 5-minute and 1-hour TTLs.
ANTHROPIC_MIXED_TTL: dict[str, Any] = {
    "input_tokens": 10,
    "cache_creation_input_tokens": 3000,
    "cache_read_input_tokens": 0,
    "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
    "output_tokens": 20,
}

# Anthropic streaming: usage of message_start, then the cumulative usage of message_delta.
ANTHROPIC_STREAM_START: dict[str, Any] = {
    "input_tokens": 472,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 1024,
    "output_tokens": 2,
}
ANTHROPIC_STREAM_DELTA: dict[str, Any] = {"output_tokens": 89}

OPENAI_EMBEDDINGS: dict[str, Any] = {"prompt_tokens": 8, "total_tokens": 8}

GEMINI_USAGE_METADATA: dict[str, Any] = {
    "promptTokenCount": 1200,
    "candidatesTokenCount": 300,
    "thoughtsTokenCount": 500,
    "cachedContentTokenCount": 1000,
    "totalTokenCount": 2000,
}
