"""Exact, offline counting of the model tokens a provider bills: text, chat, tools, media.

Public API::

    count_text(model, text) -> TokenCount
    count_texts(model, texts, *, workers=None) -> list[TokenCount]   (all cores)
    count_request(model, body, *, api="chat", image_sizes=None) -> RequestCount
    encoding_name_for(model) -> str | None
    image_size_of(first_bytes) -> (width, height) | None   (for remote images the caller fetched)

Every count says whether it is exact; an estimate says by which documented rule it was made
(``estimates.py`` for unknown tokenizers, the module docstrings of ``chat``, ``tools``,
``images``, ``audio`` and ``video`` for each part). Malformed input raises
``ciyuan.errors.InvalidRequest`` naming the parameter, and nothing else.
"""

from __future__ import annotations

from ciyuan.tokens.counts import RequestCount, TokenCount
from ciyuan.tokens.media_headers import image_size_of
from ciyuan.tokens.registry import TokenizerConfig, configure, encoding_name_for
from ciyuan.tokens.requests import APIS, count_request
from ciyuan.tokens.text import count_text, count_texts

__all__ = [
    "APIS",
    "RequestCount",
    "TokenCount",
    "TokenizerConfig",
    "configure",
    "count_request",
    "count_text",
    "count_texts",
    "encoding_name_for",
    "image_size_of",
]
