"""What every route needs at run time, built once by bootstrap: the pipeline, the router, the
upstream client, request limits, and the executor that keeps blocking database calls off the
event loop. ``reload`` swaps the router and catalog atomically (SIGHUP): requests in flight keep
the objects they started with."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ciyuan.admin.metrics import Metrics
from ciyuan.errors import CiyuanError, UpstreamError
from ciyuan.gateway.limits import RequestLimits
from ciyuan.gateway.routing import Router
from ciyuan.gateway.upstream.client import UpstreamClient
from ciyuan.metering.pipeline import Metering, Outcome, Ticket
from ciyuan.metering.ports import ApiKeyRecord
from ciyuan.pricing.usage import Usage

T = TypeVar("T")


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

    async def in_store(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Run a blocking store call on the store's executor (one thread for SQLite)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.store_executor, functools.partial(fn, *args, **kwargs)
        )

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

    async def admit(self, *args: Any, **kwargs: Any) -> Ticket:
        started = time.perf_counter()
        ticket: Ticket = await self.in_store(self.metering.admit, *args, **kwargs)
        self.metrics.ledger_write.labels("reserve").observe(time.perf_counter() - started)
        return ticket

    async def settle(
        self, ticket: Ticket, usage: Usage, *, usage_source: str, status: str = "ok"
    ) -> Outcome:
        """Settle a request and record what it cost in the metrics."""
        started = time.perf_counter()
        outcome = await self.in_store(
            self.metering.settle, ticket, usage, usage_source=usage_source, status=status
        )
        metrics = self.metrics
        metrics.ledger_write.labels("settle").observe(time.perf_counter() - started)
        metrics.latency.labels(ticket.api).observe(
            (time.perf_counter_ns() - ticket.started_ns) / 1e9
        )
        if ticket.first_byte_ns is not None:
            metrics.ttft.labels(ticket.api).observe(
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
        return outcome

    async def void_quietly(self, ticket: Ticket, error: CiyuanError, http_status: int) -> None:
        """Release the hold of a request that failed before output, and count the failure."""
        await self.in_store(
            self.metering.void, ticket, error_code=error.code, http_status=http_status
        )
        self.metrics.requests.labels(ticket.api, ticket.model, "error").inc()
        if isinstance(error, UpstreamError):
            self.metrics.upstream_errors.labels(ticket.upstream, error.code).inc()
