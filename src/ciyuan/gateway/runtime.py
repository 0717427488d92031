"""What every route needs at run time, built once by bootstrap: the pipeline, the router, the
upstream client, request limits, rate admission, and the executor that keeps blocking database
calls off the event loop. ``reload`` swaps the router and catalog atomically (SIGHUP): requests
in flight keep the objects they started with.

Every request admitted by rate limits is finished exactly once, however it ends: ``admit``
finishes it when the ledger refuses, ``settle`` and ``void_quietly`` when the call ends (the
stream relay settles in a background task when the client goes away), so in-flight slots are
released and token estimates corrected; a crashed process's slots expire with their leases.

Tracing uses the OpenTelemetry API only: with no SDK installed and configured its spans are
no-ops, and with ``tracing`` off none are made. Spans carry ids, names and figures, never
content, keys or exception messages."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from contextvars import Token
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import aiohttp
from opentelemetry import context, trace
from opentelemetry.context import Context

from ciyuan.admin.metrics import Metrics
from ciyuan.errors import CiyuanError, NotFound, Unavailable, UpstreamError
from ciyuan.gateway.admission import Admission, Admitted, RatePolicy
from ciyuan.gateway.group_commit import CommitBatcher
from ciyuan.gateway.limits import RequestLimits
from ciyuan.gateway.routing import Router
from ciyuan.gateway.upstream.client import UpstreamClient
from ciyuan.keycache import RevocationListener
from ciyuan.limits import MemoryLimiter
from ciyuan.logs import REQUEST_LOGGER, capped, prompt_text
from ciyuan.metering.pipeline import Metering, Outcome, Ticket
from ciyuan.metering.ports import ApiKeyRecord
from ciyuan.pricing.usage import Usage
from ciyuan.webhooks import WebhookWorker

T = TypeVar("T")
log = logging.getLogger("ciyuan.gateway")
request_log = logging.getLogger(REQUEST_LOGGER)

TRACER: Final = trace.get_tracer("ciyuan")
"""A proxy: it follows whatever tracer provider the operator sets up, even after import."""
_NO_SPAN: Final[AbstractContextManager[None]] = nullcontext()

SETTLE_RETRY_DELAYS_S: Final = (0.05, 0.25, 1.0)
"""Settle is idempotent (a repeated settle of a request changes nothing), and a settle that
fails loses a charge for output the client may already hold: retry a database that dropped a
connection (PostgreSQL restarted, connections terminated) before giving up to the sweeper."""


def _unlimited() -> Admission:
    return Admission(MemoryLimiter(), RatePolicy())


@dataclass
class Runtime:
    metering: Metering
    router: Router
    client: UpstreamClient
    store_executor: ThreadPoolExecutor
    limits: RequestLimits
    sweep_interval_s: float
    metrics: Metrics = field(default_factory=Metrics)
    reload: Callable[[], None] | None = None
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    admission: Admission = field(default_factory=_unlimited)
    revocations: RevocationListener | None = None
    log_requests: bool = True
    log_prompts: bool = False
    """The operator's opt-in (``CIYUAN_LOG_PROMPTS``): request log lines carry the prompt and
    completion text too. Off, nothing a customer typed reaches a log; keys never do."""
    stream_progress_interval_s: float = 0.0
    """How often a stream marks its progress on its hold (0: never); see ``mark_progress``."""
    tracing: bool = True
    """OpenTelemetry spans of the pipeline stages (no-ops unless an SDK is configured)."""
    store_inline: bool = False
    """SQLite: a transaction is ~0.2 ms of CPU under the GIL either way, and handing it to a
    thread and back cost more than it saved: bench/gateway measured 1.76x the throughput at
    concurrency 16 and 64 with calls made inline."""
    batcher: CommitBatcher | None = None
    """With ``store_inline``: inline writes commit in groups, once per event-loop turn."""
    webhook_worker: Callable[[aiohttp.ClientSession], WebhookWorker] | None = None
    """Builds the budget-alert webhook sender when a webhook secret is configured."""
    housekeeping: list[tuple[Callable[[], None], Callable[[], None]]] = field(default_factory=list)
    """(start, stop) pairs of the store's own background work (SQLite's WAL checkpoints),
    started with the services and stopped with them."""
    _webhook_session: aiohttp.ClientSession | None = None
    _admitted: dict[str, Admitted] = field(default_factory=dict)
    _holds_committing: dict[str, asyncio.Future[None]] = field(default_factory=dict)
    """Holds written but not yet committed, by request id (see ``_reserve``)."""
    _prompts: dict[str, str] = field(default_factory=dict)
    """Prompt texts kept for the request log line, by request id; only with ``log_prompts``."""

    async def in_store(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Run a blocking store call on the store's executor (one thread for SQLite), or right
        here when ``store_inline`` says the hop costs more than the call."""
        if self.store_inline:
            if self.batcher is not None:
                return await self.batcher.call(fn, *args, **kwargs)
            return fn(*args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.store_executor, functools.partial(fn, *args, **kwargs)
        )

    def stage(
        self, name: str, parent: Context | None = None
    ) -> AbstractContextManager[trace.Span | None]:
        """A child span of the current one (or of ``parent``) around one pipeline stage, or
        nothing when tracing is off."""
        return _Stage(name, parent) if self.tracing else _NO_SPAN

    async def authenticate(self, raw_key: str | None) -> ApiKeyRecord:
        hit, record = self.metering.authenticate_cached(raw_key)
        if hit:
            assert record is not None
            return record
        return await self.in_store(self.metering.authenticate, raw_key)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a coroutine to completion even if the request that started it is cancelled."""
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def admit_rate(
        self, api_key: ApiKeyRecord, *, prompt_tokens: int, output_tokens: int
    ) -> Admitted:
        """Rate and concurrency limits; raises ``RateRefused`` before any money is touched."""
        return await self.admission.admit(
            api_key, prompt_tokens=prompt_tokens, output_tokens=output_tokens
        )

    async def admit(self, *args: Any, rate: Admitted | None = None, **kwargs: Any) -> Ticket:
        """Reserve credit for a request that ``admit_rate`` let through."""
        started = time.perf_counter()
        try:
            with self.stage("ciyuan.reserve"):
                ticket = await self._reserve(*args, **kwargs)
        except BaseException:
            if rate is not None:
                self.spawn(self.admission.finish(rate, None))
            raise
        metrics = self.metrics
        metrics.labelled(metrics.ledger_write, "reserve").observe(time.perf_counter() - started)
        if rate is not None and (rate.charges or rate.leases):
            self._admitted[ticket.request_id] = rate
        return ticket

    async def _reserve(self, *args: Any, **kwargs: Any) -> Ticket:
        """The credit hold. Inline on SQLite it is not awaited to its COMMIT: the batch commits
        at the end of this loop turn while the request goes upstream
        (``CommitBatcher.call_unconfirmed``). Nothing waits for it: every later write of the
        request is on the same connection, so it sees the hold and commits with it or after."""
        if self.batcher is None or not self.store_inline:
            ticket: Ticket = await self.in_store(self.metering.admit, *args, **kwargs)
            return ticket
        ticket, committed = self.batcher.call_unconfirmed(self.metering.admit, *args, **kwargs)
        if committed is not None:
            request_id = ticket.request_id
            self._holds_committing[request_id] = committed
            committed.add_done_callback(lambda done: self._hold_committed(request_id, done))
        return ticket

    def _hold_committed(self, request_id: str, done: asyncio.Future[None]) -> None:
        # A durable hold needs no more watching; a failed one stays for its settle to report
        # (its exception is marked retrieved: a request that went away may never ask).
        if done.cancelled() or done.exception() is None:
            self._holds_committing.pop(request_id, None)

    def _hold_lost(self, ticket: Ticket) -> bool:
        """Whether the request's hold failed to commit (so there is nothing to settle). A hold
        still committing needs no wait: a later write commits with it or after it."""
        committing = self._holds_committing.pop(ticket.request_id, None)
        return (
            committing is not None
            and committing.done()
            and not committing.cancelled()
            and committing.exception() is not None
        )

    def _finish_rate(self, ticket: Ticket, usage: Usage | None) -> None:
        rate = self._admitted.pop(ticket.request_id, None)
        if rate is not None:
            # In the background: a Redis round trip need not delay the response.
            self.spawn(self.admission.finish(rate, usage))

    def keep_prompt(self, ticket: Ticket, body: dict[str, Any]) -> None:
        """Keep the prompt's text for the request's log line, when the operator asked for it."""
        if self.log_prompts and self.log_requests:
            self._prompts[ticket.request_id] = prompt_text(body)

    def start_services(self) -> list[asyncio.Task[None]]:
        """Lease renewal and, with Redis, the key-revocation listener; cancelled at shutdown."""
        for start, _ in self.housekeeping:
            start()
        tasks = [asyncio.create_task(self.admission.renew_forever())]
        if self.revocations is not None:
            tasks.append(asyncio.create_task(self.revocations.run()))
        if self.webhook_worker is not None:
            self._webhook_session = aiohttp.ClientSession()
            tasks.append(
                asyncio.create_task(self.webhook_worker(self._webhook_session).run_forever())
            )
        return tasks

    async def aclose_services(self) -> None:
        for _, stop in self.housekeeping:
            await asyncio.to_thread(stop)
        await self.admission.aclose()
        if self.revocations is not None:
            await self.revocations.aclose()
        if self._webhook_session is not None:
            await self._webhook_session.close()

    def forget_api_key(self, prefix: str | None) -> None:
        """Drop a key (``None``: every key) from this process's auth cache."""
        self.metering.forget_api_key(prefix)

    async def announce_revocation(self, prefix: str) -> None:
        """After a revocation committed in this process (admin API): forget it here at once
        and tell every other gateway over Redis, when configured."""
        self.forget_api_key(prefix)
        if self.revocations is not None:
            await self.revocations.publish(prefix)

    async def settle(
        self,
        ticket: Ticket,
        usage: Usage,
        *,
        usage_source: str,
        status: str = "ok",
        trace_parent: Context | None = None,
        completion: Callable[[], str] | None = None,
    ) -> Outcome:
        """Settle a request and record what it cost in the metrics (and a ``ciyuan.settle``
        span, under ``trace_parent`` when the caller runs outside the request's context).
        ``completion`` gives the output's text, read only for a ``log_prompts`` log line."""
        prompt = self._prompts.pop(ticket.request_id, None)
        started = time.perf_counter()
        try:
            with self.stage("ciyuan.settle", trace_parent):
                outcome = await self._settle_retrying(ticket, usage, usage_source, status)
        finally:
            self._finish_rate(ticket, usage)
        # Metrics and the log line after the response has gone out: the client waits for the
        # commit, not for the bookkeeping about it.
        now_ns = time.perf_counter_ns()
        asyncio.get_running_loop().call_soon(
            self._record_settled,
            ticket,
            usage,
            usage_source,
            status,
            outcome,
            time.perf_counter() - started,
            now_ns,
            prompt,
            completion,
        )
        return outcome

    def _record_settled(
        self,
        ticket: Ticket,
        usage: Usage,
        usage_source: str,
        status: str,
        outcome: Outcome,
        settle_s: float,
        settled_ns: int,
        prompt: str | None,
        completion: Callable[[], str] | None,
    ) -> None:
        metrics = self.metrics
        metrics.labelled(metrics.ledger_write, "settle").observe(settle_s)
        metrics.labelled(metrics.latency, ticket.api).observe(
            (settled_ns - ticket.started_ns) / 1e9
        )
        if ticket.first_byte_ns is not None:
            metrics.labelled(metrics.ttft, ticket.api).observe(
                (ticket.first_byte_ns - ticket.started_ns) / 1e9
            )
        metrics.settled(
            ticket.api,
            ticket.model,
            status,
            usage,
            usage_source,
            ticket.prompt_tokens_local,
            outcome.cost.nanos,
            outcome.unbilled.nanos,
        )
        if self.log_requests:
            fields: dict[str, object] = {
                **_log_fields(ticket),
                "status": status,
                "usage_source": usage_source,
                "input_tokens": usage.input_total,
                "output_tokens": usage.output_total,
                "cost": str(outcome.cost),
                "latency_ms": round((settled_ns - ticket.started_ns) / 1e6, 3),
            }
            if self.log_prompts:
                fields["prompt"] = prompt or ""
                fields["completion"] = capped(completion()) if completion is not None else ""
            request_log.info("request settled", extra=fields)

    async def _settle_retrying(
        self, ticket: Ticket, usage: Usage, usage_source: str, status: str
    ) -> Outcome:
        for delay_s in (*SETTLE_RETRY_DELAYS_S, None):
            try:
                return await self.in_store(
                    self.metering.settle, ticket, usage, usage_source=usage_source, status=status
                )
            except NotFound as error:
                if self._hold_lost(ticket):
                    raise Unavailable("the ledger lost this request's credit hold") from error
                raise
            except Unavailable as error:
                if delay_s is None:
                    log.error(
                        "settle of %s failed; the sweeper voids its hold: %s",
                        ticket.request_id,
                        error.message,
                    )
                    raise
                log.warning("settle of %s failed, retrying: %s", ticket.request_id, error.message)
                await asyncio.sleep(delay_s)
        raise AssertionError("unreachable")

    async def mark_progress(self, ticket: Ticket, usage: Usage) -> None:
        """Record a stream's delivered usage on its hold, for the sweeper to bill should this
        process die before the stream settles. The mark vouches for the stream for three
        intervals: a missed one or two (a slow store) does not make a live stream look dead.
        A failed mark is only logged: the stream goes on, and the next mark replaces it."""
        try:
            await self.in_store(
                self.metering.mark_progress,
                ticket,
                usage,
                alive_s=3 * self.stream_progress_interval_s,
            )
        except CiyuanError as error:
            log.warning("progress mark of %s failed: %s", ticket.request_id, error.message)

    async def void_quietly(self, ticket: Ticket, error: CiyuanError, http_status: int) -> None:
        """Release the hold of a request that failed before output, and count the failure."""
        self._finish_rate(ticket, None)
        prompt = self._prompts.pop(ticket.request_id, None)
        # The void finds whatever hold there is; its commit needs no more watching.
        self._holds_committing.pop(ticket.request_id, None)
        await self.in_store(
            self.metering.void, ticket, error_code=error.code, http_status=http_status
        )
        self.metrics.requests.labels(ticket.api, ticket.model, "error").inc()
        if self.log_requests:
            request_log.info(
                "request failed before output, nothing charged",
                extra={
                    **_log_fields(ticket),
                    "status": "error",
                    "error_code": error.code,
                    "http_status": http_status,
                    **({"prompt": prompt or ""} if self.log_prompts else {}),
                },
            )
        if isinstance(error, UpstreamError):
            self.metrics.upstream_errors.labels(ticket.upstream, error.code).inc()


def enter_span(span: trace.Span) -> Token[Context] | None:
    """Make ``span`` current; returns the token for :func:`exit_span`. A span that records
    nothing (no SDK set up, or sampled out) is not made current: that saves a context switch,
    and its children would record nothing either."""
    return context.attach(trace.set_span_in_context(span)) if span.is_recording() else None


def exit_span(token: Token[Context] | None) -> None:
    if token is not None:
        context.detach(token)


class _Stage:
    """A span around one stage, made current while it runs. Not the API's
    ``start_as_current_span``: its nested generator context managers cost ~5 µs a span with
    no SDK, this ~0.6 µs. Nor its exception recording: a message may quote content."""

    __slots__ = ("_name", "_parent", "_span", "_token")

    def __init__(self, name: str, parent: Context | None) -> None:
        self._name = name
        self._parent = parent

    def __enter__(self) -> trace.Span:
        self._span = TRACER.start_span(self._name, context=self._parent)
        self._token = enter_span(self._span)
        return self._span

    def __exit__(self, kind: object, error: BaseException | None, tb: object) -> None:
        exit_span(self._token)
        if error is not None:
            self._span.set_status(trace.StatusCode.ERROR, error_code(error))
        self._span.end()


def error_code(error: BaseException) -> str:
    """What a span says about a failure: the error's code, or its class name; no message."""
    return error.code if isinstance(error, CiyuanError) else type(error).__name__


def _log_fields(ticket: Ticket) -> dict[str, str]:
    """What every request log line names: ids and routing, never a secret or any content."""
    return {
        "request_id": ticket.request_id,
        "api_key": ticket.api_key.prefix,
        "api": ticket.api,
        "model": ticket.model,
        "upstream": ticket.upstream,
    }
