"""What every route needs at run time, built once by bootstrap: the pipeline, the router, the
upstream client, request limits, and the executor that keeps blocking database calls off the
event loop. ``reload`` swaps the router and catalog atomically (SIGHUP): requests in flight keep
the objects they started with."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ciyuan.errors import CiyuanError
from ciyuan.gateway.limits import RequestLimits
from ciyuan.gateway.routing import Router
from ciyuan.gateway.upstream.client import UpstreamClient
from ciyuan.metering.pipeline import Metering, Ticket
from ciyuan.metering.ports import ApiKeyRecord

T = TypeVar("T")


@dataclass
class Runtime:
    metering: Metering
    router: Router
    client: UpstreamClient
    store_executor: ThreadPoolExecutor
    limits: RequestLimits
    sweep_interval_s: float
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

    async def void_quietly(self, ticket: Ticket, error: CiyuanError, http_status: int) -> None:
        await self.in_store(
            self.metering.void, ticket, error_code=error.code, http_status=http_status
        )
