"""Anthropic ``/v1/messages`` and ``/v1/messages/count_tokens``, shaped like the real API.

A stream runs ``message_start`` (usage with the input side and ``output_tokens: 1``, as the real
API reports before generating), ``content_block_start``, ``ping``, ``content_block_delta``…,
``content_block_stop``, ``message_delta`` (the cumulative final usage and the stop reason) and
``message_stop``. A metering client must take the output count from ``message_delta``.

Prompt tokens split three ways: ``cache_read_input_tokens`` (``x-demo-cached-tokens``),
``cache_creation_input_tokens`` (``x-demo-cache-creation-tokens``) and the rest as
``input_tokens``; ``x-demo-reasoning-tokens`` adds to ``output_tokens`` as thinking does.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from . import replies, usage
from .exchange import (
    DemoRequest,
    Frame,
    JsonReply,
    StreamReply,
    event_frame,
    flag,
    new_id,
    optional_int,
)
from .wire_errors import WireError

DELTA_CHARS = 8
MESSAGE_START_OUTPUT_TOKENS = 1


def _required(body: Mapping[str, Any], name: str) -> Any:
    if name not in body:
        raise WireError(400, f"{name}: Field required", name)
    return body[name]


def _validated(body: Mapping[str, Any]) -> tuple[str, list[Any]]:
    model = _required(body, "model")
    if not isinstance(model, str) or not model:
        raise WireError(400, "model: Input should be a valid string", "model")
    messages = _required(body, "messages")
    if not isinstance(messages, list) or not messages:
        raise WireError(400, "messages: at least one message is required", "messages")
    return model, messages


def _tool(body: Mapping[str, Any], messages: list[Any]) -> Mapping[str, Any] | None:
    """Call the named or first tool unless the last user turn carries a tool result."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, Mapping) and "name" in t]
    choice = body.get("tool_choice") or {"type": "auto"}
    kind = choice.get("type") if isinstance(choice, Mapping) else "auto"
    if not tools or kind == "none":
        return None
    if kind == "tool":
        named = [t for t in tools if t["name"] == choice.get("name")]
        if not named:
            raise WireError(
                400, f"tool_choice: no tool named {choice.get('name')!r}", "tool_choice"
            )
        return named[0]
    last = messages[-1]
    content = last.get("content") if isinstance(last, Mapping) else None
    answered = isinstance(content, list) and any(
        isinstance(b, Mapping) and b.get("type") == "tool_result" for b in content
    )
    if kind == "auto" and answered:
        return None
    return tools[0]


def _usage(prompt: int, output_tokens: int, req: DemoRequest) -> dict[str, Any]:
    read = usage.cached_part(prompt, req.directives)
    created = min(req.directives.cache_creation_tokens, prompt - read)
    return {
        "input_tokens": prompt - read - created,
        "cache_creation_input_tokens": created,
        "cache_read_input_tokens": read,
        "cache_creation": {"ephemeral_5m_input_tokens": created, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def messages(req: DemoRequest) -> JsonReply | StreamReply:
    body = req.body
    model, turns = _validated(body)
    _required(body, "max_tokens")
    limit = optional_int(body, "max_tokens")
    assert limit is not None
    seed = replies.seed_of(replies.last_user_text(turns), "0")
    prompt = usage.prompt_tokens(model, body, "anthropic_messages")
    tool = _tool(body, turns)
    block: dict[str, Any]
    if tool is None:
        output = usage.generate(model, seed, limit, req.directives)
        block = {"type": "text", "text": output.text}
        stop = "max_tokens" if output.truncated else "end_turn"
    else:
        name = str(tool["name"])
        arguments = orjson.dumps(replies.arguments_for(tool.get("input_schema"), seed)).decode()
        name_tokens = usage.text_tokens(model, name)
        output = usage.generate(
            model, seed, max(limit - name_tokens, 0), req.directives, list(arguments)
        )
        output = usage.Output(
            output.pieces,
            output.text,
            output.visible_tokens + name_tokens,
            output.reasoning_tokens,
            output.truncated,
        )
        block = {
            "type": "tool_use",
            "id": new_id("toolu_"),
            "name": name,
            "input": _partial_json(output.text),
        }
        stop = "max_tokens" if output.truncated else "tool_use"
    message: dict[str, Any] = {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [block],
        "stop_reason": stop,
        "stop_sequence": None,
    }
    if not req.directives.no_usage:
        message["usage"] = usage.corrupted(
            _usage(prompt, output.tokens, req), req.directives, ("input_tokens",), "output_tokens"
        )
    if flag(body, "stream"):
        return StreamReply(
            _frames(req, message, output, prompt),
            broken=b"event: content_block_delta\ndata: {broken\n\n",
        )
    return JsonReply(message)


def _partial_json(text: str) -> Any:
    """Tool input as an object; a cut-short argument string (max_tokens) yields ``{}``."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}


def _frames(
    req: DemoRequest, message: dict[str, Any], output: usage.Output, prompt: int
) -> Iterator[Frame]:
    opening = {**message, "content": [], "stop_reason": None}
    if "usage" in message:
        opening["usage"] = _usage(prompt, MESSAGE_START_OUTPUT_TOKENS, req)
    yield event_frame("message_start", {"type": "message_start", "message": opening})
    block = message["content"][0]
    start: dict[str, Any]
    if block["type"] == "text":
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in output.pieces]
    else:
        start = {**block, "input": {}}
        deltas = [
            {"type": "input_json_delta", "partial_json": f}
            for f in replies.chunked(output.text, DELTA_CHARS)
        ]
    yield event_frame(
        "content_block_start", {"type": "content_block_start", "index": 0, "content_block": start}
    )
    yield event_frame("ping", {"type": "ping"})
    for delta in deltas:
        yield event_frame(
            "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}, True
        )
    yield event_frame("content_block_stop", {"type": "content_block_stop", "index": 0})
    closing: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
    }
    if "usage" in message:
        final = message["usage"]
        closing["usage"] = {
            key: final[key]
            for key in (
                "input_tokens",
                "cache_creation_input_tokens",
                "cache_read_input_tokens",
                "output_tokens",
            )
            if key in final  # usage:missing drops some
        }
    yield event_frame("message_delta", closing)
    yield event_frame("message_stop", {"type": "message_stop"})


def count_tokens(req: DemoRequest) -> JsonReply:
    model, _turns = _validated(req.body)
    return JsonReply({"input_tokens": usage.prompt_tokens(model, req.body, "anthropic_messages")})
