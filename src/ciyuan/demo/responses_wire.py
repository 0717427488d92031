"""OpenAI ``/v1/responses``, non-streaming and as the real typed event stream.

A stream runs ``response.created``, ``response.in_progress``, ``response.output_item.added``,
``response.content_part.added``, ``response.output_text.delta``…, the matching ``.done`` events
and ends with ``response.completed`` (or ``response.incomplete`` when ``max_output_tokens`` cut
it), whose ``response.usage`` is the only usage in the stream. Every event has a
``sequence_number``, which the SDK's stream helper relies on.
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
    require_model,
)
from .wire_errors import invalid, missing

DELTA_CHARS = 8


def _input_text(raw: Any) -> str:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list) and raw:
        return replies.last_user_text([item for item in raw if isinstance(item, Mapping)])
    raise invalid("input", "Invalid 'input': expected a string or a non-empty array of items.")


def _tool(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Same rule as chat: call the named or first function unless a tool result came last."""
    tools = [
        t for t in body.get("tools") or [] if isinstance(t, Mapping) and t.get("type") == "function"
    ]
    choice = body.get("tool_choice", "auto")
    if not tools or choice == "none":
        return None
    if isinstance(choice, Mapping):
        named = [t for t in tools if t.get("name") == choice.get("name")]
        return named[0] if named else tools[0]
    items = body.get("input")
    if choice == "auto" and isinstance(items, list) and items:
        last = items[-1]
        if isinstance(last, Mapping) and last.get("type") == "function_call_output":
            return None
    return tools[0]


def _usage(prompt: int, output: usage.Output, req: DemoRequest) -> dict[str, Any] | None:
    if req.directives.no_usage:
        return None
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": usage.cached_part(prompt, req.directives)},
        "output_tokens": output.tokens,
        "output_tokens_details": {"reasoning_tokens": output.reasoning_tokens},
        "total_tokens": prompt + output.tokens,
    }


def _envelope(req: DemoRequest, rid: str, model: str, limit: int | None) -> dict[str, Any]:
    body = req.body
    return {
        "id": rid,
        "object": "response",
        "created_at": req.created,
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": limit,
        "model": model,
        "output": [],
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": None,
        "user": None,
        "metadata": body.get("metadata") or {},
    }


def create(req: DemoRequest) -> JsonReply | StreamReply:
    body = req.body
    model = require_model(body)
    if "input" not in body:
        raise missing("input")
    seed = replies.seed_of(_input_text(body["input"]), "0")
    limit = optional_int(body, "max_output_tokens")
    prompt = usage.prompt_tokens(model, body, "responses")
    tool = _tool(body)
    item: dict[str, Any]
    if tool is None:
        output = usage.generate(model, seed, limit, req.directives)
        text_part = {"type": "output_text", "text": output.text, "annotations": [], "logprobs": []}
        item = {
            "id": new_id("msg_"),
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [text_part],
        }
    else:
        name = str(tool.get("name", "function"))
        arguments = orjson.dumps(replies.arguments_for(tool.get("parameters"), seed)).decode()
        output = usage.generate(model, seed, limit, req.directives, list(arguments))
        item = {
            "id": new_id("fc_"),
            "type": "function_call",
            "status": "completed",
            "call_id": new_id("call_"),
            "name": name,
            "arguments": output.text,
        }
    final = _envelope(req, new_id("resp_"), model, limit)
    final["status"] = "incomplete" if output.truncated else "completed"
    if output.truncated:
        final["incomplete_details"] = {"reason": "max_output_tokens"}
    final["output"] = [item]
    final["usage"] = _usage(prompt, output, req)
    if flag(body, "stream"):
        return StreamReply(
            _frames(final, item, output),
            broken=b"event: response.output_text.delta\ndata: {broken\n\n",
        )
    return JsonReply(final)


def _frames(final: dict[str, Any], item: dict[str, Any], output: usage.Output) -> Iterator[Frame]:
    text = output.text
    sequence = 0

    def event(kind: str, content: bool = False, **fields: Any) -> Frame:
        nonlocal sequence
        frame = event_frame(kind, {"type": kind, "sequence_number": sequence, **fields}, content)
        sequence += 1
        return frame

    opening = {
        **final,
        "status": "in_progress",
        "output": [],
        "usage": None,
        "incomplete_details": None,
    }
    yield event("response.created", response=opening)
    yield event("response.in_progress", response=opening)
    where = {"item_id": item["id"], "output_index": 0}
    if item["type"] == "function_call":
        yield event(
            "response.output_item.added",
            output_index=0,
            item={**item, "status": "in_progress", "arguments": ""},
        )
        for fragment in replies.chunked(text, DELTA_CHARS):
            yield event("response.function_call_arguments.delta", True, **where, delta=fragment)
        yield event("response.function_call_arguments.done", **where, arguments=text)
    else:
        yield event(
            "response.output_item.added",
            output_index=0,
            item={**item, "status": "in_progress", "content": []},
        )
        empty_part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        yield event("response.content_part.added", **where, content_index=0, part=empty_part)
        for piece in output.pieces:
            yield event(
                "response.output_text.delta",
                True,
                **where,
                content_index=0,
                delta=piece,
                logprobs=[],
            )
        yield event("response.output_text.done", **where, content_index=0, text=text, logprobs=[])
        yield event("response.content_part.done", **where, content_index=0, part=item["content"][0])
    yield event("response.output_item.done", output_index=0, item=item)
    yield event(f"response.{final['status']}", response=final)
