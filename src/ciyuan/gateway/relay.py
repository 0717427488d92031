"""The metered relay that every client API shares.

    authenticate → validate and bound the body → route → count the prompt → reserve →
    send upstream (falling back across deployments before the first byte) → read usage from
    the response or the stream → settle → answer with the charge in headers (or in the stream)

The handler holds no pricing or ledger logic: it turns wire formats into the pipeline's inputs
(a prompt count, an output limit, a :class:`Usage`) and the pipeline's outcome into headers.

With ``runtime.tracing`` each request is an OpenTelemetry span ``ciyuan.request`` (request id,
API, model, cost in nanos, status) with child spans ``ciyuan.authenticate``, ``ciyuan.count``,
``ciyuan.reserve`` (the credit hold), ``ciyuan.upstream`` (until the whole
body is read; for a stream, until its headers) and ``ciyuan.settle``. A stream's request span
ends with the stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import aiohttp
import orjson
from opentelemetry import trace
from opentelemetry.context import Context
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ciyuan.errors import CiyuanError, InvalidRequest, UpstreamError
from ciyuan.gateway.apis import ApiSpec
from ciyuan.gateway.request_parsing import api_key_of, parse_json_object, read_body, required_model
from ciyuan.gateway.routing import Deployment, Resolved
from ciyuan.gateway.runtime import TRACER, Runtime, enter_span, error_code, exit_span
from ciyuan.gateway.stream_meters import StreamMeter
from ciyuan.gateway.upstream.client import read_capped
from ciyuan.gateway.wire_errors import status_of
from ciyuan.metering.pipeline import Outcome, Ticket
from ciyuan.pricing.usage import Usage
from ciyuan.tokens import RequestCount, count_request, count_text

UPSTREAM_ERROR_BYTES_MAX: Final = 64 * 1024
COUNT_INLINE_BYTES_MAX: Final = 64 * 1024
FALLBACK_STATUSES: Final = frozenset({429, 500, 502, 503, 504, 529})


class UpstreamRefused(Exception):
    """The provider judged the request itself bad (a 4xx): its own error body is the answer."""

    def __init__(self, status: int, payload: bytes, content_type: str) -> None:
        super().__init__(status)
        self.status = status
        self.payload = payload
        self.content_type = content_type


def figures(outcome: Outcome, usage_source: str, overhead_ns: int) -> dict[str, Any]:
    """Ciyuan's figures for a stream's final usage event (a plain response has headers)."""
    return {
        "request_id": outcome.request_id,
        "cost": str(outcome.cost),
        "balance": str(outcome.balance),
        "usage_source": usage_source,
        "overhead_ms": round(overhead_ns / 1e6, 3),
    }


def _ms(nanos: int) -> str:
    return f"{nanos / 1e6:.3f}"


def _close_span(span: trace.Span, status: str, outcome: Outcome | None = None) -> None:
    if outcome is not None:
        span.set_attribute("ciyuan.cost_nanos", outcome.cost.nanos)
    span.set_attribute("ciyuan.status", status)
    span.end()


async def handle(request: Request, spec: ApiSpec) -> Response:
    runtime: Runtime = request.app.state.runtime
    if not runtime.tracing:
        return await _handle(request, spec, runtime, None)
    span = TRACER.start_span("ciyuan.request", attributes={"ciyuan.api": spec.name})
    token = enter_span(span)
    try:
        response = await _handle(request, spec, runtime, span)
    except BaseException as error:
        span.set_status(trace.StatusCode.ERROR, error_code(error))
        _close_span(span, "error")
        raise
    finally:
        exit_span(token)
    if not isinstance(response, StreamingResponse):
        _close_span(span, "ok" if response.status_code < 400 else "error")
    return response


async def _count_prompt(
    runtime: Runtime, spec: ApiSpec, model: str, body: dict[str, Any], size: int
) -> RequestCount:
    with runtime.stage("ciyuan.count"):
        if size > COUNT_INLINE_BYTES_MAX:
            # Counting costs ~35 ms per MB: a big body must not stall every other request.
            return await asyncio.to_thread(count_request, model, body, api=spec.name)
        return count_request(model, body, api=spec.name)


def _note(span: trace.Span | None, name: str, value: str | int) -> None:
    if span is not None:
        span.set_attribute(name, value)


async def _handle(
    request: Request, spec: ApiSpec, runtime: Runtime, span: trace.Span | None
) -> Response:
    started_ns = time.perf_counter_ns()
    with runtime.stage("ciyuan.authenticate"):
        api_key = await runtime.authenticate(api_key_of(request))
    raw = await read_body(request, runtime.limits.body_bytes_max, runtime.limits.body_timeout_s)
    body = parse_json_object(raw)
    model = required_model(body)
    _note(span, "gen_ai.request.model", model)
    runtime.metering.check_scope(api_key, spec.name, model)
    stream, wants_usage = spec.stream_flags(body)
    output_limit = spec.output_limit(body)
    runtime.limits.check(body, output_limit)
    resolved = runtime.router.resolve(model, spec.dialect)
    prompt = await _count_prompt(runtime, spec, model, body, len(raw))
    output_tokens = (
        (output_limit or runtime.metering.policy.output_tokens_default) * spec.choices(body)
        if spec.produces_output
        else 0
    )
    # Rate limits before the ledger: a refused request touches no money. The model selects
    # the per-model limits; the dialect picks OpenAI's or Anthropic's rate-limit headers.
    rate = await runtime.admission.admit(
        api_key,
        prompt_tokens=prompt.total,
        output_tokens=output_tokens,
        model=model,
        dialect=spec.dialect,
    )
    ticket = await runtime.admit(
        api_key,
        rate=rate,
        api=spec.name,
        model=model,
        upstream=resolved.deployments[0].upstream.name,
        prompt_tokens=prompt.total,
        output_tokens_max=output_tokens,
        price=resolved.price,
        cache_writes=spec.dialect == "anthropic" and b"cache_control" in raw,
    )
    _note(span, "ciyuan.request_id", ticket.request_id)
    upstream_started_ns = time.perf_counter_ns()
    with runtime.stage("ciyuan.upstream"):
        try:
            response, deployment = await _send(
                runtime, spec, resolved, body, raw, stream, request.headers
            )
        except UpstreamRefused as refused:
            await runtime.void_quietly(ticket, InvalidRequest("refused upstream"), refused.status)
            return Response(refused.payload, refused.status, media_type=refused.content_type)
        except CiyuanError as error:
            await runtime.void_quietly(ticket, error, status_of(error))
            raise
        ticket.upstream = deployment.upstream.name
        if not stream:
            try:
                payload = await read_capped(response)
            except CiyuanError as error:
                await runtime.void_quietly(ticket, error, status_of(error))
                raise
            finally:
                response.release()
    if stream:
        assert spec.meter is not None
        overhead_ns = upstream_started_ns - started_ns
        runtime.metrics.overhead.labels(spec.name).observe(overhead_ns / 1e9)
        return StreamingResponse(
            _relay(runtime, ticket, response, spec.meter(wants_usage), overhead_ns, span),
            media_type="text/event-stream",
            headers={
                **rate.headers,
                "x-ciyuan-request-id": ticket.request_id,
                "x-ciyuan-overhead-ms": _ms(overhead_ns),
                "cache-control": "no-cache",
            },
        )
    upstream_done_ns = time.perf_counter_ns()
    ticket.mark_first_byte()
    usage, source = _usage_of_body(spec, ticket, payload)
    outcome = await runtime.settle(ticket, usage, usage_source=source)
    _note(span, "ciyuan.cost_nanos", outcome.cost.nanos)
    overhead_ns = (upstream_started_ns - started_ns) + (time.perf_counter_ns() - upstream_done_ns)
    runtime.metrics.overhead.labels(spec.name).observe(overhead_ns / 1e9)
    headers = {
        **rate.headers,
        "x-ciyuan-request-id": outcome.request_id,
        "x-ciyuan-cost": str(outcome.cost),
        "x-ciyuan-balance": str(outcome.balance),
        "x-ciyuan-overhead-ms": _ms(overhead_ns),
    }
    return Response(payload, 200, headers, media_type=response.content_type or "application/json")


def _upstream_body(
    spec: ApiSpec, deployment: Deployment, body: dict[str, Any], raw: bytes, stream: bool
) -> bytes:
    """The bytes to send: the client's own, unless the model is renamed or usage is asked for."""
    rename = deployment.model is not None and deployment.model != body["model"]
    ask_usage = stream and spec.forces_usage_in_stream
    if not rename and not ask_usage:
        return raw
    forward = dict(body)
    if rename:
        forward["model"] = deployment.model
    if ask_usage:
        forward["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return orjson.dumps(forward)


async def _send(
    runtime: Runtime,
    spec: ApiSpec,
    resolved: Resolved,
    body: dict[str, Any],
    raw: bytes,
    stream: bool,
    client_headers: Mapping[str, str],
) -> tuple[aiohttp.ClientResponse, Deployment]:
    """An open 2xx response from the first deployment that gives one, trying them in order."""
    last_error: CiyuanError | None = None
    for deployment in resolved.deployments:
        upstream = deployment.upstream
        try:
            response = await runtime.client.open(
                upstream,
                spec.upstream_path,
                _upstream_body(spec, deployment, body, raw, stream),
                upstream.headers(spec.dialect, client_headers),
                stream=stream,
            )
        except UpstreamError as error:
            if not error.fallback_safe:
                raise
            last_error = error
            continue
        if response.status < 400:
            return response, deployment
        try:
            payload = await read_capped(response, UPSTREAM_ERROR_BYTES_MAX)
        finally:
            response.release()
        if response.status in FALLBACK_STATUSES:
            last_error = UpstreamError(
                f"upstream {upstream.name} answered HTTP {response.status}",
                status=response.status,
                fallback_safe=True,
            )
            continue
        if response.status in (401, 403):
            # The operator's provider key is wrong: not the client's fault, and not its business.
            raise UpstreamError(f"upstream {upstream.name} refused the gateway's credentials")
        raise UpstreamRefused(response.status, payload, response.content_type or "application/json")
    assert last_error is not None
    raise last_error


def _usage_of_body(spec: ApiSpec, ticket: Ticket, payload: bytes) -> tuple[Usage, str]:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        # A 200 whose body we cannot read still reached the client: bill the prompt.
        return Usage(input_tokens=ticket.prompt_tokens_local), "counted"
    try:
        return spec.usage_of(data), "reported"
    except InvalidRequest:
        pass
    text = spec.completion_text(data)
    completion = count_text(ticket.model, text).tokens if text else 0
    return Usage(input_tokens=ticket.prompt_tokens_local, output_tokens=completion), "counted"


def _counted(ticket: Ticket, meter: StreamMeter) -> Usage:
    text = meter.delivered_text()
    completion = count_text(ticket.model, text).tokens if text else 0
    return Usage(input_tokens=ticket.prompt_tokens_local, output_tokens=completion)


class _StreamRelay:
    """The state of one relayed stream: what was settled, sent and spent in the gateway."""

    def __init__(
        self,
        runtime: Runtime,
        ticket: Ticket,
        meter: StreamMeter,
        overhead_ns: int,
        trace_parent: Context | None = None,
    ):
        self.runtime = runtime
        self.trace_parent = trace_parent
        """The request span's context: the stream runs outside the handler's."""
        self.outcome: Outcome | None = None
        self.status = "partial"
        self.ticket = ticket
        self.meter = meter
        self.overhead_ns = overhead_ns
        self.settled = False
        self.done_marker = False
        self.delivered = 0
        """How many of the meter's text pieces went out in writes that completed."""
        self._buffer = b""

    async def on_read(self, data: bytes) -> bytes:
        """The bytes to send for one upstream read: every complete event in it, in order."""
        busy_from = time.perf_counter_ns()
        self._buffer += data.replace(b"\r\n", b"\n")
        out: list[bytes] = []
        while (end := self._buffer.find(b"\n\n")) >= 0:
            event, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
            step = self.meter.step(event)
            if self.meter.first_output:
                self.ticket.mark_first_byte()
            if step.done:
                self.done_marker = True
            elif step.usage is not None and step.render is not None and not self.settled:
                outcome = await self.runtime.settle(
                    self.ticket, step.usage, usage_source="reported", trace_parent=self.trace_parent
                )
                self.settled = True
                self.outcome, self.status = outcome, "ok"
                now = time.perf_counter_ns()
                self.overhead_ns += now - busy_from
                busy_from = now
                rendered = step.render(figures(outcome, "reported", self.overhead_ns))
                if rendered is not None:
                    out.append(rendered)
            elif step.forward is not None:
                out.append(step.forward)
        self.overhead_ns += time.perf_counter_ns() - busy_from
        return b"".join(out)

    async def on_end(self) -> bytes:
        """What follows the upstream's last byte: a counted settlement if no usage came."""
        out = b""
        if not self.settled:
            busy_from = time.perf_counter_ns()
            ticket, meter = self.ticket, self.meter
            usage = _counted(ticket, meter)
            status = "ok" if meter.finished else "partial"
            outcome = await self.runtime.settle(
                ticket, usage, usage_source="counted", status=status, trace_parent=self.trace_parent
            )
            self.settled = True
            self.outcome, self.status = outcome, status
            self.overhead_ns += time.perf_counter_ns() - busy_from
            if meter.finished:
                numbers = figures(outcome, "counted", self.overhead_ns)
                out = (
                    meter.final_usage_frame(usage, numbers, ticket.model, ticket.request_id) or b""
                )
        return out + (b"data: [DONE]\n\n" if self.done_marker else b"")

    def abandon(self) -> None:
        """The stream ended early (client gone): bill what was sent, in the background."""
        if self.settled:
            return
        self.settled = True
        del self.meter.pieces[self.delivered :]
        usage = _counted(self.ticket, self.meter)
        self.runtime.spawn(
            self.runtime.settle(
                self.ticket,
                usage,
                usage_source="counted",
                status="partial",
                trace_parent=self.trace_parent,
            )
        )


async def _relay(
    runtime: Runtime,
    ticket: Ticket,
    response: aiohttp.ClientResponse,
    meter: StreamMeter,
    overhead_ns: int,
    span: trace.Span | None = None,
) -> AsyncIterator[bytes]:
    """Pass the stream through, settling when its usage arrives or it ends.

    Everything one upstream read brings goes out as one write: a write per SSE event cost
    more CPU than the metering. Text counts as delivered once the write that carried it
    returned, so a client that goes away is billed for what it was sent, not what was read.
    That cancels this generator; its settlement then runs as a background task (awaiting
    here would be cancelled too). The final ``ciyuan`` block reports the gateway's own time
    as ``overhead_ms``.
    """
    parent = None if span is None else trace.set_span_in_context(span)
    relay = _StreamRelay(runtime, ticket, meter, overhead_ns, parent)
    try:
        try:
            async for data in response.content.iter_any():
                out = await relay.on_read(data)
                if out:
                    yield out
                relay.delivered = len(meter.pieces)
        except (aiohttp.ClientError, TimeoutError):
            meter.finished = False  # the upstream died mid-stream: bill what was delivered
        tail = await relay.on_end()
        if tail:
            yield tail
    finally:
        response.close()
        relay.abandon()
        if span is not None:
            _close_span(span, relay.status, relay.outcome)
