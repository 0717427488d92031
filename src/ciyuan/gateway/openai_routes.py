"""OpenAI-compatible routes: ``/v1/chat/completions`` and ``/v1/models``.

A handler parses and validates, asks the pipeline to admit the request, forwards it, and hands
the usage back to the pipeline; it holds no pricing or ledger logic of its own.
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ciyuan.errors import CiyuanError, InvalidRequest, UpstreamError
from ciyuan.gateway.request_parsing import (
    api_key_of,
    optional_positive_int,
    parse_json_object,
    read_body,
    required_model,
)
from ciyuan.gateway.runtime import Runtime
from ciyuan.gateway.streaming import relay_chat_stream
from ciyuan.gateway.upstream.client import read_capped
from ciyuan.gateway.wire_errors import status_of
from ciyuan.metering.pipeline import Outcome, Ticket
from ciyuan.pricing.usage import Usage
from ciyuan.tokens import count_request, count_text

CHOICES_MAX: Final = 128
UPSTREAM_ERROR_BYTES_MAX: Final = 64 * 1024


def outcome_headers(outcome: Outcome) -> dict[str, str]:
    return {
        "x-ciyuan-request-id": outcome.request_id,
        "x-ciyuan-cost": str(outcome.cost),
        "x-ciyuan-balance": str(outcome.balance),
    }


def _choices(body: dict[str, Any]) -> int:
    n = body.get("n", 1)
    if n is None:
        return 1
    if type(n) is not int or not 1 <= n <= CHOICES_MAX:
        raise InvalidRequest(f"n must be an integer from 1 to {CHOICES_MAX}", param="n")
    return n


def _stream_options(body: dict[str, Any]) -> tuple[bool, bool]:
    """(stream, client_wants_usage), validated."""
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("stream must be a boolean", param="stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest("stream_options must be an object", param="stream_options")
    wants_usage = bool(options and options.get("include_usage") is True)
    return bool(stream), wants_usage


async def _upstream_failure(runtime: Runtime, ticket: Ticket, status: int, payload: bytes) -> Response:
    """Release the hold of a request the upstream refused, and tell the client why."""
    if 400 <= status < 500 and status not in (401, 403, 429):
        # The provider judged the request itself bad: its own error body is the best answer.
        error: CiyuanError = InvalidRequest("the upstream provider rejected the request")
        await runtime.void_quietly(ticket, error, status)
        return Response(payload[:UPSTREAM_ERROR_BYTES_MAX], status, media_type="application/json")
    error = UpstreamError(f"upstream {runtime.upstream.name} answered HTTP {status}", status=status)
    await runtime.void_quietly(ticket, error, status_of(error))
    raise error


async def chat_completions(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    api_key = await runtime.authenticate(api_key_of(request))
    raw = await read_body(request, runtime.body_bytes_max)
    body = parse_json_object(raw)
    model = required_model(body)
    stream, wants_usage = _stream_options(body)
    choices = _choices(body)
    output_max = optional_positive_int(body, "max_completion_tokens", "max_tokens")
    price = runtime.price_for_route(model)
    prompt = count_request(model, body, api="chat")
    ticket = await runtime.in_store(
        runtime.metering.admit,
        api_key,
        api="chat",
        model=model,
        upstream=runtime.upstream.name,
        prompt_tokens=prompt.total,
        output_tokens_max=(output_max or runtime.metering.policy.output_tokens_default) * choices,
        price=price,
    )
    if stream:
        forward = dict(body)
        forward["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return await _open_stream(runtime, ticket, orjson.dumps(forward), wants_usage)
    try:
        async with runtime.client.post(runtime.upstream, "chat/completions", raw) as response:
            status = response.status
            payload = await read_capped(response)
    except CiyuanError as error:
        await runtime.void_quietly(ticket, error, status_of(error))
        raise
    ticket.mark_first_byte()
    if status >= 400:
        return await _upstream_failure(runtime, ticket, status, payload)
    usage, source = _usage_of_completion(ticket, payload)
    outcome = await runtime.in_store(runtime.metering.settle, ticket, usage, usage_source=source)
    return Response(payload, 200, outcome_headers(outcome), media_type="application/json")


def _usage_of_completion(ticket: Ticket, payload: bytes) -> tuple[Usage, str]:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        # A 200 with a body we cannot read still reached the client: bill the prompt.
        return Usage(input_tokens=ticket.prompt_tokens_local), "counted"
    reported = data.get("usage")
    if isinstance(reported, dict):
        try:
            return Usage.from_openai_chat(reported), "reported"
        except InvalidRequest:
            pass
    text = []
    for choice in data.get("choices") or ():
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            text.append(message["content"])
    completion = count_text(ticket.model, "".join(text)).tokens if text else 0
    return Usage(input_tokens=ticket.prompt_tokens_local, output_tokens=completion), "counted"


async def _open_stream(runtime: Runtime, ticket: Ticket, body: bytes, wants_usage: bool) -> Response:
    try:
        response = await runtime.client.open(runtime.upstream, "chat/completions", body)
    except CiyuanError as error:
        await runtime.void_quietly(ticket, error, status_of(error))
        raise
    if response.status >= 400:
        try:
            payload = await read_capped(response, UPSTREAM_ERROR_BYTES_MAX)
        finally:
            response.close()
        return await _upstream_failure(runtime, ticket, response.status, payload)
    return StreamingResponse(
        relay_chat_stream(runtime, ticket, response, wants_usage),
        media_type="text/event-stream",
        headers={"x-ciyuan-request-id": ticket.request_id, "cache-control": "no-cache"},
    )


async def list_models(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    await runtime.authenticate(api_key_of(request))
    catalog = runtime.metering.catalog
    data = []
    for name in catalog.models():
        price = catalog.price_for(name)
        data.append({"id": name, "object": "model", "created": 0, "owned_by": price.provider if price else "ciyuan"})
    return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")
