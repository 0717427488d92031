"""Audio input tokens from a recording's duration (always a labelled estimate).

OpenAI's audio models (gpt-4o audio and realtime, gpt-audio, gpt-realtime) bill user audio at
about 1 token per 100 ms and generated audio at 1 token per 50 ms; Gemini bills 32 tokens
per second. Both providers round internally in ways they do not publish, so these counts are
estimates: duration rounded up to the next whole token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ciyuan.tokens.registry import normalize_model

OPENAI_INPUT_MS_PER_TOKEN: Final = 100
OPENAI_OUTPUT_MS_PER_TOKEN: Final = 50
GEMINI_TOKENS_PER_S: Final = 32


@dataclass(frozen=True, slots=True)
class AudioTally:
    tokens: int
    note: str


def audio_tokens(model: str, duration_ms: int, *, output: bool = False) -> AudioTally:
    assert duration_ms >= 0, duration_ms
    name = normalize_model(model)
    if "gemini" in name:
        return AudioTally(-(-duration_ms * GEMINI_TOKENS_PER_S // 1000), "gemini audio: 32/s")
    per_token = OPENAI_OUTPUT_MS_PER_TOKEN if output else OPENAI_INPUT_MS_PER_TOKEN
    return AudioTally(-(-duration_ms // per_token), f"audio: 1 token per {per_token} ms")
