"""The metered client APIs, each described once: where it goes upstream, which wire dialect it
speaks, how its body states the output limit and streaming, how its response reports usage, and
which stream meter reads its events.

Adding an API is adding a spec here and a route in ``app.py``; the relay is shared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from ciyuan.errors import InvalidRequest
from ciyuan.gateway.request_parsing import optional_positive_int
from ciyuan.gateway.stream_meters import (
    AnthropicStreamMeter,
    OpenAIStreamMeter,
    ResponsesStreamMeter,
    StreamMeter,
)
from ciyuan.pricing.usage import Usage

Dialect = Literal["openai", "anthropic"]
CHOICES_MAX: Final = 128


@dataclass(frozen=True, slots=True)
class ApiSpec:
    name: str
    """The ``api`` of usage events and of ``count_request``."""
    upstream_path: str
    """Relative to the upstream's base URL, which ends in ``/v1``."""
    dialect: Dialect
    output_limit_fields: tuple[str, ...]
    usage_of: Callable[[dict[str, Any]], Usage]
    completion_text: Callable[[dict[str, Any]], str]
    meter: Callable[[bool], StreamMeter] | None
    """None for APIs that never stream."""
    forces_usage_in_stream: bool = False
    """OpenAI streams report usage only when asked: the relay always asks."""
    output_limit_required: bool = False
    produces_output: bool = True
    """Embeddings bill input only: nothing to reserve for output."""

    def choices(self, body: dict[str, Any]) -> int:
        n = body.get("n", 1)
        if n is None:
            return 1
        if type(n) is not int or not 1 <= n <= CHOICES_MAX:
            raise InvalidRequest(f"n must be an integer from 1 to {CHOICES_MAX}", param="n")
        return n

    def output_limit(self, body: dict[str, Any]) -> int | None:
        limit = (
            optional_positive_int(body, *self.output_limit_fields)
            if self.output_limit_fields
            else None
        )
        if limit is None and self.output_limit_required:
            field = self.output_limit_fields[0]
            raise InvalidRequest(f"{field}: Field required", param=field)
        return limit

    def stream_flags(self, body: dict[str, Any]) -> tuple[bool, bool]:
        """(stream, client_wants_usage), validated."""
        stream = body.get("stream", False)
        if stream is not None and not isinstance(stream, bool):
            raise InvalidRequest("stream must be a boolean", param="stream")
        if stream and self.meter is None:
            raise InvalidRequest(f"the {self.name} API does not stream", param="stream")
        if not self.forces_usage_in_stream:
            return bool(stream), True
        options = body.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise InvalidRequest("stream_options must be an object", param="stream_options")
        return bool(stream), bool(options and options.get("include_usage") is True)


def _chat_text(data: dict[str, Any]) -> str:
    parts = []
    for choice in data.get("choices") or ():
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict):
            if isinstance(message.get("content"), str):
                parts.append(message["content"])
            for call in message.get("tool_calls") or ():
                if isinstance(call, dict) and isinstance(call.get("function"), dict):
                    arguments = call["function"].get("arguments")
                    parts.append(arguments if isinstance(arguments, str) else "")
    return "".join(parts)


def _completion_text(data: dict[str, Any]) -> str:
    return "".join(
        c["text"]
        for c in data.get("choices") or ()
        if isinstance(c, dict) and isinstance(c.get("text"), str)
    )


def _responses_text(data: dict[str, Any]) -> str:
    parts = []
    for item in data.get("output") or ():
        for content in (item.get("content") or ()) if isinstance(item, dict) else ():
            if isinstance(content, dict) and isinstance(content.get("text"), str):
                parts.append(content["text"])
    return "".join(parts)


def _anthropic_text(data: dict[str, Any]) -> str:
    return "".join(
        block["text"]
        for block in data.get("content") or ()
        if isinstance(block, dict) and isinstance(block.get("text"), str)
    )


def _no_text(data: dict[str, Any]) -> str:
    return ""


def _usage_field(parse: Callable[[dict[str, Any]], Usage]) -> Callable[[dict[str, Any]], Usage]:
    def usage_of(data: dict[str, Any]) -> Usage:
        reported = data.get("usage")
        if not isinstance(reported, dict):
            raise InvalidRequest("the response has no usage object", param="usage")
        return parse(reported)

    return usage_of


CHAT: Final = ApiSpec(
    name="chat",
    upstream_path="chat/completions",
    dialect="openai",
    output_limit_fields=("max_completion_tokens", "max_tokens"),
    usage_of=_usage_field(Usage.from_openai_chat),
    completion_text=_chat_text,
    meter=OpenAIStreamMeter,
    forces_usage_in_stream=True,
)
COMPLETIONS: Final = ApiSpec(
    name="completions",
    upstream_path="completions",
    dialect="openai",
    output_limit_fields=("max_tokens",),
    usage_of=_usage_field(Usage.from_openai_chat),
    completion_text=_completion_text,
    meter=OpenAIStreamMeter,
    forces_usage_in_stream=True,
)
EMBEDDINGS: Final = ApiSpec(
    name="embeddings",
    upstream_path="embeddings",
    dialect="openai",
    output_limit_fields=(),
    usage_of=_usage_field(Usage.from_openai_embeddings),
    completion_text=_no_text,
    meter=None,
    produces_output=False,
)
RESPONSES: Final = ApiSpec(
    name="responses",
    upstream_path="responses",
    dialect="openai",
    output_limit_fields=("max_output_tokens",),
    usage_of=_usage_field(Usage.from_openai_responses),
    completion_text=_responses_text,
    meter=ResponsesStreamMeter,
)
ANTHROPIC_MESSAGES: Final = ApiSpec(
    name="anthropic_messages",
    upstream_path="messages",
    dialect="anthropic",
    output_limit_fields=("max_tokens",),
    usage_of=_usage_field(Usage.from_anthropic),
    completion_text=_anthropic_text,
    meter=AnthropicStreamMeter,
    output_limit_required=True,
)
