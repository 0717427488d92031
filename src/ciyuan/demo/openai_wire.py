"""OpenAI ``/v1/chat/completions``, shaped like the real API.

Streams follow the real order: a role chunk per choice, content deltas (round-robin over the
choices when ``n > 1``), a finish chunk per choice, then — only with
``stream_options.include_usage`` — one chunk with empty ``choices`` and the ``usage``, and
``data: [DONE]``. Every other chunk carries ``usage: null``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from . import replies, usage
from .exchange import (
    SYSTEM_FINGERPRINT,
    DemoRequest,
    Frame,
    JsonReply,
    StreamReply,
    bad,
    data_frame,
    flag,
    include_usage,
    new_id,
    optional_int,
    require_model,
)
from .wire_errors import invalid, missing

DONE = Frame(b"data: [DONE]\n\n")
N_MAX = 128
DELTA_CHARS = 8
"""JSON and tool-argument replies are fitted per character, then streamed in fragments this long."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Choice:
    output: usage.Output
    seed: int
    tool_call: ToolCall | None = None

    @property
    def finish_reason(self) -> str:
        if self.output.truncated:
            return "length"
        return "tool_calls" if self.tool_call else "stop"


def usage_block(prompt: int, choices: list[Choice], req: DemoRequest) -> dict[str, Any]:
    completion = sum(choice.output.tokens for choice in choices)
    block = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {
            "cached_tokens": usage.cached_part(prompt, req.directives),
            "audio_tokens": 0,
        },
        "completion_tokens_details": {
            "reasoning_tokens": sum(choice.output.reasoning_tokens for choice in choices),
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    return usage.corrupted(block, req.directives, ("prompt_tokens",), "completion_tokens")


def _tool_to_call(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The function a deterministic 'model' calls: the named one, else the first, else none.

    With ``tool_choice`` auto it answers in text once a tool result is the last message, so an
    agent loop against the demo terminates.
    """
    tools: list[Mapping[str, Any]] = [
        t["function"]
        for t in body.get("tools") or []
        if isinstance(t, Mapping) and isinstance(t.get("function"), Mapping)
    ]
    choice = body.get("tool_choice", "auto")
    if not tools or choice == "none":
        return None
    if isinstance(choice, Mapping):
        name = (choice.get("function") or {}).get("name")
        named = [tool for tool in tools if tool.get("name") == name]
        if not named:
            raise invalid(
                "tool_choice", f"Invalid 'tool_choice': no function named {name!r} in tools."
            )
        return named[0]
    if choice == "auto":
        messages = body.get("messages") or [{}]
        if isinstance(messages[-1], Mapping) and messages[-1].get("role") == "tool":
            return None
    return tools[0]


def _tool_choice(
    model: str, tool: Mapping[str, Any], seed: int, limit: int | None, req: DemoRequest
) -> Choice:
    name = str(tool.get("name", "function"))
    arguments = orjson.dumps(replies.arguments_for(tool.get("parameters"), seed)).decode()
    name_tokens = usage.text_tokens(model, name)
    arguments_limit = None if limit is None else max(limit - name_tokens, 0)
    output = usage.generate(model, seed, arguments_limit, req.directives, list(arguments))
    output = _regrouped(output, name_tokens)
    return Choice(output, seed, ToolCall(new_id("call_"), name, output.text))


def _regrouped(output: usage.Output, extra_tokens: int = 0) -> usage.Output:
    """Character-fitted output re-cut into stream-sized deltas (the count is unchanged)."""
    deltas = list(replies.chunked(output.text, DELTA_CHARS))
    return usage.Output(
        deltas,
        output.text,
        output.visible_tokens + extra_tokens,
        output.reasoning_tokens,
        output.truncated,
    )


def _choices(
    req: DemoRequest, model: str, prompt_text: str, count: int, limit: int | None
) -> list[Choice]:
    body = req.body
    tool = _tool_to_call(body) if "tools" in body else None
    response_format = body.get("response_format")
    json_mode = isinstance(response_format, Mapping) and response_format.get("type") in (
        "json_object",
        "json_schema",
    )
    choices: list[Choice] = []
    for index in range(count):
        seed = replies.seed_of(prompt_text, str(index))
        if tool is not None:
            choices.append(_tool_choice(model, tool, seed, limit, req))
        elif json_mode:
            assert isinstance(response_format, Mapping)
            schema = (response_format.get("json_schema") or {}).get("schema")
            text = " ".join(p.strip() for p in replies.pieces(seed, replies.default_length(seed)))
            value = replies.arguments_for(schema, seed) if schema else {"answer": text}
            chars = list(orjson.dumps(value).decode())
            output = usage.generate(model, seed, limit, req.directives, chars)
            choices.append(Choice(_regrouped(output), seed))
        else:
            choices.append(Choice(usage.generate(model, seed, limit, req.directives), seed))
    return choices


def _logprobs(choice: Choice, top: int) -> dict[str, Any]:
    content = [
        {
            "token": piece,
            "logprob": replies.logprob_of(piece, choice.seed),
            "bytes": list(piece.encode()),
            "top_logprobs": replies.top_logprobs(piece, choice.seed, top),
        }
        for piece in choice.output.pieces
    ]
    return {"content": content, "refusal": None}


def chat(req: DemoRequest) -> JsonReply | StreamReply:
    body = req.body
    model = require_model(body)
    messages = body.get("messages")
    if messages is None:
        raise missing("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", "Invalid 'messages': expected a non-empty array of messages.")
    count = optional_int(body, "n") or 1
    if count > N_MAX:
        raise invalid("n", f"Invalid 'n': must be at most {N_MAX}.")
    limit = optional_int(body, "max_completion_tokens", "max_tokens")
    top = optional_int(body, "top_logprobs", minimum=0) or 0
    want_logprobs = flag(body, "logprobs")
    if top and not want_logprobs:
        raise bad("Invalid 'top_logprobs': 'logprobs' must be set to true.", "top_logprobs")
    prompt = usage.prompt_tokens(model, body, "chat")
    choices = _choices(req, model, replies.last_user_text(messages), count, limit)
    head = {"id": new_id("chatcmpl-"), "object": "", "created": req.created, "model": model}
    if flag(body, "stream"):
        return StreamReply(
            _chat_frames(req, head, prompt, choices, top=top if want_logprobs else None)
        )
    reply: dict[str, Any] = {**head, "object": "chat.completion", "choices": []}
    for index, choice in enumerate(choices):
        message: dict[str, Any] = {
            "role": "assistant",
            "content": choice.output.text,
            "refusal": None,
            "annotations": [],
        }
        if choice.tool_call:
            call = choice.tool_call
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
            ]
        logprobs = _logprobs(choice, top) if want_logprobs and not choice.tool_call else None
        reply["choices"].append(
            {
                "index": index,
                "message": message,
                "logprobs": logprobs,
                "finish_reason": choice.finish_reason,
            }
        )
    if not req.directives.no_usage:
        reply["usage"] = usage_block(prompt, choices, req)
    reply["service_tier"] = "default"
    reply["system_fingerprint"] = SYSTEM_FINGERPRINT
    return JsonReply(reply)


def _chat_frames(
    req: DemoRequest,
    head: dict[str, Any],
    prompt: int,
    choices: list[Choice],
    *,
    top: int | None,
) -> Iterator[Frame]:
    """``top`` is the number of top logprobs, or None when logprobs were not asked for."""
    base = {
        **head,
        "object": "chat.completion.chunk",
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }

    def chunk(
        index: int, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None
    ) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        return {**base, "choices": [choice], "usage": None}

    for index, choice in enumerate(choices):
        delta: dict[str, Any] = {"role": "assistant", "content": "", "refusal": None}
        if choice.tool_call:
            call = choice.tool_call
            delta = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "index": 0,
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": ""},
                    }
                ],
            }
        yield data_frame(chunk(index, delta))
    longest = max(len(choice.output.pieces) for choice in choices)
    for position in range(longest):
        for index, choice in enumerate(choices):
            if position >= len(choice.output.pieces):
                continue
            piece = choice.output.pieces[position]
            if choice.tool_call:
                tool_delta = {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
                yield data_frame(chunk(index, tool_delta), content=True)
                continue
            logprobs = None
            if top is not None:
                entry = {
                    "token": piece,
                    "logprob": replies.logprob_of(piece, choice.seed),
                    "bytes": list(piece.encode()),
                    "top_logprobs": replies.top_logprobs(piece, choice.seed, top),
                }
                logprobs = {"content": [entry], "refusal": None}
            yield data_frame(chunk(index, {"content": piece}, logprobs=logprobs), content=True)
    for index, choice in enumerate(choices):
        yield data_frame(chunk(index, {}, choice.finish_reason))
    if include_usage(req.body) and not req.directives.no_usage:
        yield data_frame({**base, "choices": [], "usage": usage_block(prompt, choices, req)})
    yield DONE
