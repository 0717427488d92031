"""The delivery worker: claim due webhook deliveries, POST them signed, record each attempt.

A 2xx answer delivers; anything else (another status, a redirect, a timeout, a refused
connection) is a failed attempt, retried after ``backoff_s(attempts)`` until ``attempts_max``
attempts, then recorded as ``failed``. Claims are leases in the database, so several gateways
can run a worker each without sending a delivery twice at the same time.

Store calls block; they run through ``in_store`` (the gateway's store executor), defaulting to
``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import aiohttp

from ciyuan.apikeys import Secret
from ciyuan.clock import US_PER_S, Clock, SystemClock
from ciyuan.errors import CiyuanError
from ciyuan.metering.ports import WebhookDelivery, WebhookStore
from ciyuan.webhooks.signing import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign

T = TypeVar("T")
InStore = Callable[..., Awaitable[Any]]
log = logging.getLogger("ciyuan.webhooks")

BATCH_MAX: Final = 50
ERROR_BODY_BYTES_MAX: Final = 200


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    attempts_max: int = 8
    """Attempts before a delivery is recorded as failed."""
    backoff_base_s: float = 30.0
    """Wait after the first failure; doubled after each further one."""
    backoff_max_s: float = 6 * 3600.0
    timeout_s: float = 10.0
    """Longest wait for one receiver's answer."""
    interval_s: float = 5.0
    """How often the worker looks for due deliveries."""

    def __post_init__(self) -> None:
        assert self.attempts_max >= 1 and self.timeout_s > 0 and self.interval_s > 0
        assert 0 <= self.backoff_base_s <= self.backoff_max_s


DEFAULT_DELIVERY: Final = DeliveryPolicy()


def backoff_s(policy: DeliveryPolicy, attempts: int) -> float:
    """The wait after the ``attempts``-th failed attempt: base, 2×base, 4×base … up to max."""
    assert attempts >= 1
    return float(min(policy.backoff_max_s, policy.backoff_base_s * 2 ** min(attempts - 1, 32)))


async def _to_thread(fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))


@dataclass
class WebhookWorker:
    """Sends due webhook deliveries; :meth:`run_forever` is the gateway's background task."""

    store: WebhookStore
    session: aiohttp.ClientSession
    secret: Secret
    clock: Clock
    policy: DeliveryPolicy = DEFAULT_DELIVERY
    in_store: InStore = _to_thread

    async def run_once(self) -> int:
        """Attempt every due delivery once; returns how many were delivered."""
        lease_s = self.policy.timeout_s * 2 + 5
        claimed: list[WebhookDelivery] = await self.in_store(
            self.store.claim_webhook_deliveries, limit=BATCH_MAX, lease_s=lease_s
        )
        results = await asyncio.gather(*(self._attempt(d) for d in claimed))
        return sum(results)

    async def run_forever(self) -> None:
        while True:
            try:
                await self.run_once()
            except CiyuanError as error:
                # The database is down or busy: keep the worker alive and try again later.
                log.warning("webhook delivery pass failed: %s", error.message)
            await asyncio.sleep(self.policy.interval_s)

    async def _attempt(self, delivery: WebhookDelivery) -> bool:
        assert delivery.url is not None
        body = delivery.body.encode()
        timestamp_s = self.clock.now_us() // US_PER_S
        headers = {
            "content-type": "application/json",
            SIGNATURE_HEADER: sign(self.secret.reveal(), body, timestamp_s),
            DELIVERY_HEADER: delivery.id,
            EVENT_HEADER: delivery.event,
            "user-agent": "ciyuan-webhooks/1",
        }
        status: int | None = None
        error: str | None = None
        try:
            async with self.session.post(
                delivery.url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.policy.timeout_s),
            ) as response:
                status = response.status
                if not 200 <= status < 300:
                    snippet = (await response.content.read(ERROR_BODY_BYTES_MAX)).decode(
                        errors="replace"
                    )
                    error = f"HTTP {status}: {snippet}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        delivered = error is None
        next_attempt_us: int | None = None
        if not delivered and delivery.attempts + 1 < self.policy.attempts_max:
            wait_s = backoff_s(self.policy, delivery.attempts + 1)
            next_attempt_us = self.clock.now_us() + int(wait_s * US_PER_S)
        if not delivered:
            log.warning(
                "webhook %s attempt %d failed: %s", delivery.id, delivery.attempts + 1, error
            )
        await self.in_store(
            self.store.record_webhook_attempt,
            delivery.id,
            delivered=delivered,
            status=status,
            error=error,
            next_attempt_us=next_attempt_us,
        )
        return delivered


async def deliver_pending(
    store: WebhookStore,
    client: aiohttp.ClientSession,
    *,
    secret: Secret,
    clock: Clock | None = None,
    policy: DeliveryPolicy = DEFAULT_DELIVERY,
    in_store: InStore = _to_thread,
) -> int:
    """One pass of the worker: attempt every due delivery once; returns how many delivered."""
    worker = WebhookWorker(store, client, secret, clock or SystemClock(), policy, in_store)
    return await worker.run_once()
