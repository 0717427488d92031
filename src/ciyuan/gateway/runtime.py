"""What every route needs at run time, built once by bootstrap: the pipeline, the upstream, and
the executor that keeps blocking database calls off the event loop."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from ciyuan.errors import CiyuanError, UnknownModel
from ciyuan.gateway.upstream.base import Upstream
from ciyuan.gateway.upstream.client import UpstreamClient
from ciyuan.metering.pipeline import Metering, Ticket
from ciyuan.metering.ports import ApiKeyRecord
from ciyuan.pricing.catalog import ModelPrice

T = TypeVar("T")


@dataclass
class Runtime:
    metering: Metering
    upstream: Upstream
    client: UpstreamClient
    store_executor: ThreadPoolExecutor
    body_bytes_max: int
    sweep_interval_s: float
    background: set[asyncio.Task[None]] = field(default_factory=set)

    async def in_store(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Run a blocking store call on the store's executor (one thread for SQLite)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.store_executor, functools.partial(fn, *args, **kwargs))

    async def authenticate(self, raw_key: str | None) -> ApiKeyRecord:
        hit, record = self.metering.authenticate_cached(raw_key)
        if hit:
            assert record is not None
            return record
        return await self.in_store(self.metering.authenticate, raw_key)

    def price_for_route(self, model: str) -> ModelPrice | None:
        """The price of a model this gateway routes; unknown models are refused with 404."""
        price = self.metering.catalog.price_for(model)
        if price is None and not self.metering.policy.allow_unpriced_models:
            raise UnknownModel(f"The model `{model}` does not exist or you do not have access to it.")
        return price

    def spawn(self, coro: asyncio.Future[None] | asyncio.Task[None] | object) -> None:
        """Run a coroutine to completion even if the request that started it is cancelled."""
        task: asyncio.Task[None] = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def void_quietly(self, ticket: Ticket, error: CiyuanError, http_status: int) -> None:
        await self.in_store(self.metering.void, ticket, error_code=error.code, http_status=http_status)
