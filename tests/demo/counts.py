"""Independent token counts the tests compare the demo's usage reports with."""

from __future__ import annotations

from typing import Any

from ciyuan.tokens import count_request, count_text
from ciyuan.tokens.encodings import get_encoding


def tiktoken_count(encoding: str, text: str) -> int:
    """An independent count: tiktoken directly, not through ciyuan.tokens."""
    return len(get_encoding(encoding).encode(text, disallowed_special=()))


def prompt_count(model: str, body: dict[str, Any], api: str) -> int:
    """What the gateway will count locally for this request; the demo must report the same."""
    return count_request(model, body, api=api).total


def text_count(model: str, text: str) -> int:
    """What ciyuan.tokens counts for ``text``; for Claude no tokenizer is public."""
    return count_text(model, text).tokens
