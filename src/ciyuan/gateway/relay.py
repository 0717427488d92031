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
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final

import aiohttp
import orjson
from opentelemetry import trace
from opentelemetry.context import Context
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ciyuan.errors import CiyuanError, InvalidRequest, UpstreamError, UpstreamTimeout
from ciyuan.gateway.apis import ApiSpec
from ciyuan.gateway.request_parsing import api_key_of, parse_json_object, read_body, required_model
from ciyuan.gateway.routing import Deployment, Resolved
from ciyuan.gateway.runtime import TRACER, Runtime, enter_span, error_code, exit_span
from ciyuan.gateway.stream_meters import StreamMeter
from ciyuan.gateway.streaming import Last, RelayResponse
from ciyuan.gateway.upstream.client import RESPONSE_BYTES_MAX, read_capped
from ciyuan.gateway.wire_errors import status_of
from ciyuan.metering.pipeline import Outcome, Ticket
from ciyuan.pricing.usage import Usage
from ciyuan.tokens import RequestCount, count_request, count_text

UPSTREAM_ERROR_BYTES_MAX: Final = 64 * 1024
COUNT_INLINE_BYTES_MAX: Final = 64 * 1024
FALLBACK_STATUSES: Final = frozenset({429, 500, 502, 503, 504, 529})
STREAM_EVENT_BYTES_MAX: Final = RESPONSE_BYTES_MAX
"""One SSE event may be as large as a whole plain response (a Responses API completion event
carries the whole reply), no larger: an upstream that never ends its event cannot fill memory."""
DELIVERED_CHARS_PER_TOKEN_MAX: Final = 8
"""Reported output is checked against a local count of the delivered text only when the text has
more characters than this many per reported token. Counting costs ~0.4 µs a token on the hot
path; real text runs 1-5 characters a token, so only a gross under-report pays for a count."""


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
        output_tokens_bound=_output_bound(runtime, spec, body, output_limit),
        price=resolved.price,
        cache_writes=spec.dialect == "anthropic" and b"cache_control" in raw,
    )
    _note(span, "ciyuan.request_id", ticket.request_id)
    runtime.keep_prompt(ticket, body)
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
        runtime.metrics.labelled(runtime.metrics.overhead, spec.name).observe(overhead_ns / 1e9)
        return RelayResponse(
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
    usage, source = await _usage_of_body(runtime, spec, ticket, payload)
    outcome = await runtime.settle(
        ticket, usage, usage_source=source, completion=lambda: _completion_of(spec, payload)
    )
    _note(span, "ciyuan.cost_nanos", outcome.cost.nanos)
    overhead_ns = (upstream_started_ns - started_ns) + (time.perf_counter_ns() - upstream_done_ns)
    runtime.metrics.labelled(runtime.metrics.overhead, spec.name).observe(overhead_ns / 1e9)
    headers = {
        **rate.headers,
        "x-ciyuan-request-id": outcome.request_id,
        "x-ciyuan-cost": str(outcome.cost),
        "x-ciyuan-balance": str(outcome.balance),
        "x-ciyuan-overhead-ms": _ms(overhead_ns),
        **_rejection_header(ticket),
    }
    return Response(payload, 200, headers, media_type=response.content_type or "application/json")


def _output_bound(
    runtime: Runtime, spec: ApiSpec, body: dict[str, Any], output_limit: int | None
) -> int:
    """The sanity bound on reported output (``Ticket.implausible``): the request's own limit,
    or the largest limit any request may set, times its choices."""
    if not spec.produces_output:
        return 0
    return (output_limit or runtime.limits.output_tokens_max) * spec.choices(body)


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


def _rejection_header(ticket: Ticket) -> dict[str, str]:
    rejected = ticket.usage_rejected
    return {} if rejected is None else {"x-ciyuan-usage-rejected": rejected["reason"]}


async def _usage_of_body(
    runtime: Runtime, spec: ApiSpec, ticket: Ticket, payload: bytes
) -> tuple[Usage, str]:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        # Truncated or garbled: nothing the client could use, so a failure before any output
        # (502, nothing charged) rather than a 200 the client's SDK cannot parse.
        error = UpstreamError(
            f"upstream {ticket.upstream} answered 200 with a body that is not a JSON object"
        )
        await runtime.void_quietly(ticket, error, status_of(error))
        raise error
    reported: Usage | None = None
    unreadable: str | None = None
    if data.get("usage") is not None:
        try:
            reported = spec.usage_of(data)
        except InvalidRequest as error:
            unreadable = error.message
    return _believed(runtime, ticket, reported, unreadable, lambda: spec.completion_text(data))


def _believed(
    runtime: Runtime,
    ticket: Ticket,
    reported: Usage | None,
    unreadable: str | None,
    delivered_text: Callable[[], str],
) -> tuple[Usage, str]:
    """The usage to bill and its source: the provider's report when it is readable and
    plausible, else the local count of the prompt and the delivered text (docs/faults.md).

    A report is rejected when it cannot be read (missing counts, wrong types, negative, beyond
    2**53), when it is beyond the request's bound (``Ticket.implausible``), or when it claims
    fewer output tokens than the text delivered holds. A rejection is kept on the usage event,
    sent in ``x-ciyuan-usage-rejected`` or the stream's ``ciyuan`` block, and counted in
    ``ciyuan_upstream_errors{code="usage_<reason>"}``."""
    text: str | None = None
    reason, message = ("unreadable", unreadable) if unreadable is not None else (None, None)
    if reported is not None:
        message = ticket.implausible(reported)
        if message is not None:
            reason = "beyond_limit"
        else:
            text = delivered_text()
            if len(text) > reported.output_total * DELIVERED_CHARS_PER_TOKEN_MAX:
                delivered = count_text(ticket.model, text).tokens
                if delivered > reported.output_total:
                    reason = "below_delivered"
                    message = (
                        f"{reported.output_total} output tokens reported; {delivered} delivered"
                    )
            if reason is None:
                return reported, "reported"
    if reason is not None:
        ticket.usage_rejected = {"reason": reason, "message": message}
        if reported is not None:
            ticket.usage_rejected["reported"] = reported.as_dict()
        runtime.metrics.upstream_errors.labels(ticket.upstream, f"usage_{reason}").inc()
    return _counted(ticket, delivered_text() if text is None else text), "counted"


def _stream_failure(error: Exception) -> UpstreamError:
    """What broke a stream, as the operating error it is (for the usage event and metrics)."""
    if isinstance(error, UpstreamError):
        return error
    if isinstance(error, TimeoutError):
        return UpstreamTimeout("upstream stream stalled beyond the read timeout")
    return UpstreamError(f"upstream stream failed: {type(error).__name__}")


def _completion_of(spec: ApiSpec, payload: bytes) -> str:
    """The output text of a plain response (for a ``log_prompts`` log line only)."""
    try:
        data = orjson.loads(payload)
        return spec.completion_text(data) if isinstance(data, dict) else ""
    except (orjson.JSONDecodeError, InvalidRequest, LookupError, TypeError, AttributeError):
        return ""


def _counted(ticket: Ticket, text: str) -> Usage:
    """The local count: the prompt as counted before the call, and ``text`` delivered."""
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
        self.done_marker: bytes | None = None
        """The stream's end marker, sent only after settlement (see ``Step.done``)."""
        self.delivered = 0
        """How many of the meter's text pieces went out in writes that completed."""
        self.failure: UpstreamError | None = None
        """What broke the upstream stream, if something did."""
        self._buffer = bytearray()
        """Bytes of the event not yet complete: a bytearray, so a large event is appended to
        and cut from in place rather than copied whole on every read."""
        self._scanned = 0
        """How much of the buffer is known to hold no event end: the search resumes there."""
        self._cr = False
        """The last read ended in CR: its LF may start the next one (CRLF split by a read)."""
        interval_s = runtime.stream_progress_interval_s
        self._mark_every_ns = int(interval_s * 1e9)
        self._mark_due_ns = time.perf_counter_ns() + self._mark_every_ns
        self._marking = False

    def maybe_mark(self) -> None:
        """Once per progress interval, in the background: what this stream has delivered so
        far, recorded on its hold, so that if this process dies the sweeper bills it."""
        now = time.perf_counter_ns()
        if (
            not self._mark_every_ns
            or not self.delivered  # nothing reached the client yet: nothing to bill
            or self.settled
            or self._marking
            or now < self._mark_due_ns
        ):
            return
        usage = _counted(self.ticket, "".join(self.meter.pieces[: self.delivered]))
        self._marking = True
        self.runtime.spawn(self._mark(usage))
        after = time.perf_counter_ns()
        self._mark_due_ns = after + self._mark_every_ns
        self.overhead_ns += after - now

    async def _mark(self, usage: Usage) -> None:
        try:
            await self.runtime.mark_progress(self.ticket, usage)
        finally:
            self._marking = False

    async def on_read(self, data: bytes) -> bytes:
        """The bytes to send for one upstream read: every complete event in it, in order."""
        busy_from = time.perf_counter_ns()
        if self._cr:
            data = b"\r" + data
        self._cr = data.endswith(b"\r")
        piece = data[:-1] if self._cr else data
        self._buffer += piece.replace(b"\r\n", b"\n") if b"\r" in piece else piece
        out: list[bytes] = []
        while (end := self._buffer.find(b"\n\n", self._scanned)) >= 0:
            if end > STREAM_EVENT_BYTES_MAX:
                break
            event = bytes(self._buffer[:end])
            del self._buffer[: end + 2]
            self._scanned = 0
            step = self.meter.step(event)
            if self.meter.first_output:
                self.ticket.mark_first_byte()
            if step.done:
                self.done_marker = step.forward or b"data: [DONE]\n\n"
            elif (
                step.render is not None
                and (step.usage is not None or step.usage_error is not None)
                and not self.settled
            ):
                usage, source = _believed(
                    self.runtime,
                    self.ticket,
                    step.usage,
                    step.usage_error,
                    self.meter.delivered_text,
                )
                outcome = await self.runtime.settle(
                    self.ticket,
                    usage,
                    usage_source=source,
                    trace_parent=self.trace_parent,
                    completion=self.meter.delivered_text,
                )
                self.settled = True
                self.outcome, self.status = outcome, "ok"
                now = time.perf_counter_ns()
                self.overhead_ns += now - busy_from
                busy_from = now
                numbers = figures(outcome, source, self.overhead_ns)
                if self.ticket.usage_rejected is not None:
                    numbers["usage_rejected"] = self.ticket.usage_rejected["reason"]
                rendered = step.render(numbers)
                if rendered is not None:
                    out.append(rendered)
            elif step.forward is not None:
                out.append(step.forward)
        # An event end may straddle this read and the next: rescan its last byte then.
        self._scanned = max(len(self._buffer) - 1, 0)
        self.overhead_ns += time.perf_counter_ns() - busy_from
        if len(self._buffer) > STREAM_EVENT_BYTES_MAX:
            # What came before the oversized event still goes out; the stream ends after it.
            self.failure = UpstreamError(
                f"upstream stream event exceeds {STREAM_EVENT_BYTES_MAX} bytes"
            )
        return b"".join(out)

    async def on_end(self) -> bytes:
        """What follows the upstream's last byte: a counted settlement if no usage came, and,
        when the stream broke (no end marker came), an error event in the provider's format
        after it, so the client's SDK raises rather than quietly keep a truncated reply."""
        out = b""
        ticket, meter = self.ticket, self.meter
        if not self.settled and not meter.finished and not meter.pieces:
            # Broken before any output: nothing the client can use, so nothing is charged.
            error = self.failure or UpstreamError("upstream stream ended before any output")
            self.settled, self.status = True, "error"
            await self.runtime.void_quietly(ticket, error, status_of(error))
            if not meter.errored:
                out = meter.error_frame(error, None)
        elif not self.settled:
            busy_from = time.perf_counter_ns()
            if self.failure is not None:
                self.runtime.metrics.upstream_errors.labels(
                    ticket.upstream, self.failure.code
                ).inc()
            usage = _counted(ticket, meter.delivered_text())
            status = "ok" if meter.finished else "partial"
            outcome = await self.runtime.settle(
                ticket,
                usage,
                usage_source="counted",
                status=status,
                trace_parent=self.trace_parent,
                completion=meter.delivered_text,
            )
            self.settled = True
            self.outcome, self.status = outcome, status
            self.overhead_ns += time.perf_counter_ns() - busy_from
            numbers = figures(outcome, "counted", self.overhead_ns)
            if meter.finished:
                out = (
                    meter.final_usage_frame(usage, numbers, ticket.model, ticket.request_id) or b""
                )
            elif not meter.errored:
                error = self.failure or UpstreamError("upstream stream ended before its end")
                out = meter.error_frame(error, numbers)
        return out + (self.done_marker or b"")

    def abandon(self) -> None:
        """The stream ended early (client gone): bill what was sent, in the background."""
        if self.settled:
            return
        self.settled = True
        del self.meter.pieces[self.delivered :]
        usage = _counted(self.ticket, self.meter.delivered_text())
        self.runtime.spawn(
            self.runtime.settle(
                self.ticket,
                usage,
                usage_source="counted",
                status="partial",
                trace_parent=self.trace_parent,
                completion=self.meter.delivered_text,
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
                relay.maybe_mark()
                if relay.failure is not None:
                    meter.finished = False
                    break
        except (aiohttp.ClientError, TimeoutError, UpstreamError) as error:
            meter.finished = False  # the upstream died mid-stream: bill what was delivered
            relay.failure = _stream_failure(error)
        tail = await relay.on_end()
        if tail:
            yield Last(tail)
    finally:
        response.close()
        relay.abandon()
        if span is not None:
            _close_span(span, relay.status, relay.outcome)
