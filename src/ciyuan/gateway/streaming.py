"""Relaying an OpenAI chat completion stream while metering it.

Bytes go to the client as they arrive, one SSE event at a time, never buffered whole. The
gateway always asks upstream for the usage chunk (``stream_options.include_usage``); when it
comes, the request is settled first, and the chunk is passed on with an extra ``ciyuan`` field
(cost, balance, request id) if the client asked for usage, or dropped if it did not.

When no usage arrives (a server that never sends it, a stream cut by the upstream, a client
that went away), the tokens actually delivered are counted locally and billed, marked
``counted``. A client disconnect cancels the relay; its settlement then runs as a background task
so that cancellation cannot skip it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from ciyuan.errors import InvalidRequest
from ciyuan.gateway.runtime import Runtime
from ciyuan.metering.pipeline import Outcome, Ticket
from ciyuan.pricing.usage import Usage
from ciyuan.tokens import count_text


@dataclass
class _StreamState:
    pieces: list[str] = field(default_factory=list)
    done: bool = False
    settled: bool = False
    model_seen: str | None = None


def ciyuan_block(outcome: Outcome, usage_source: str) -> dict[str, Any]:
    return {
        "request_id": outcome.request_id,
        "cost": str(outcome.cost),
        "balance": str(outcome.balance),
        "usage_source": usage_source,
    }


def _counted_usage(ticket: Ticket, state: _StreamState) -> Usage:
    completion = count_text(ticket.model, "".join(state.pieces)).tokens if state.pieces else 0
    return Usage(input_tokens=ticket.prompt_tokens_local, output_tokens=completion)


async def relay_chat_stream(
    runtime: Runtime, ticket: Ticket, response: aiohttp.ClientResponse, client_wants_usage: bool
) -> AsyncIterator[bytes]:
    state = _StreamState()
    try:
        buffer = b""
        async for data in response.content.iter_any():
            buffer += data.replace(b"\r\n", b"\n")
            while (end := buffer.find(b"\n\n")) >= 0:
                event, buffer = buffer[:end], buffer[end + 2 :]
                out = await _on_event(runtime, ticket, state, event, client_wants_usage)
                if out is not None:
                    yield out
        if not state.settled:
            status = "ok" if state.done else "partial"
            usage = _counted_usage(ticket, state)
            outcome = await runtime.in_store(
                runtime.metering.settle, ticket, usage, usage_source="counted", status=status
            )
            state.settled = True
            if client_wants_usage and state.done:
                yield _usage_chunk(ticket, state, usage, outcome)
        if state.done:
            yield b"data: [DONE]\n\n"
    finally:
        response.close()
        if not state.settled:
            # The client left (or the relay failed) mid-stream: bill what was delivered.
            state.settled = True
            runtime.spawn(
                runtime.in_store(
                    runtime.metering.settle,
                    ticket,
                    _counted_usage(ticket, state),
                    usage_source="counted",
                    status="partial",
                )
            )


async def _on_event(
    runtime: Runtime, ticket: Ticket, state: _StreamState, event: bytes, client_wants_usage: bool
) -> bytes | None:
    if not event.startswith(b"data:"):
        return event + b"\n\n"  # comments and keep-alives pass through untouched
    data = event[5:].strip()
    if data == b"[DONE]":
        state.done = True
        return None
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        return event + b"\n\n"
    if not isinstance(chunk, dict):
        return event + b"\n\n"
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict):
            content = delta.get("content")
            if isinstance(content, str) and content:
                ticket.mark_first_byte()
                state.pieces.append(content)
            for call in delta.get("tool_calls") or ():
                arguments = (call.get("function") or {}).get("arguments") if isinstance(call, dict) else None
                if isinstance(arguments, str):
                    state.pieces.append(arguments)
    reported = chunk.get("usage")
    if not reported:
        return event + b"\n\n"
    try:
        usage, source = Usage.from_openai_chat(reported), "reported"
    except InvalidRequest:
        usage, source = _counted_usage(ticket, state), "counted"
    outcome = await runtime.in_store(runtime.metering.settle, ticket, usage, usage_source=source)
    state.settled = True
    if chunk.get("choices"):
        # Some servers put usage on the last content chunk: keep the content either way.
        if not client_wants_usage:
            chunk.pop("usage", None)
        else:
            chunk["ciyuan"] = ciyuan_block(outcome, source)
        return b"data: " + orjson.dumps(chunk) + b"\n\n"
    if not client_wants_usage:
        return None
    chunk["ciyuan"] = ciyuan_block(outcome, source)
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _usage_chunk(ticket: Ticket, state: _StreamState, usage: Usage, outcome: Outcome) -> bytes:
    chunk = {
        "id": ticket.request_id,
        "object": "chat.completion.chunk",
        "created": ticket.started_ns // 1_000_000_000,
        "model": ticket.model,
        "choices": [],
        "usage": {
            "prompt_tokens": usage.input_total,
            "completion_tokens": usage.output_total,
            "total_tokens": usage.input_total + usage.output_total,
        },
        "ciyuan": ciyuan_block(outcome, "counted"),
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"
