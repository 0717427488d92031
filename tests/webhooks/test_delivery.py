"""Budget webhooks delivered to a real HTTP receiver on loopback (aiohttp, in the test's loop).

The receiver checks every signature with the secret, and can be told to fail: 500 twice then
200 must end delivered after three attempts spaced by the backoff; a receiver that always fails
(or is not listening) ends ``failed`` after ``attempts_max`` attempts. Time is a FixedClock
shared by the store and the worker, so "after the backoff" is moved by hand, never slept.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from ciyuan.apikeys import Secret
from ciyuan.clock import FixedClock
from ciyuan.metering.ports import Store
from ciyuan.store import open_store
from ciyuan.webhooks import DeliveryPolicy, WebhookWorker, deliver_pending, verify_signature
from tests.budgets.helpers import USD, Customer, customer, spend
from tests.conftest import free_port

SECRET = "whsec-test-0123456789"
POLICY = DeliveryPolicy(attempts_max=3, backoff_base_s=30, timeout_s=5)


@dataclass
class Receiver:
    """Answers with the next status in ``script`` (then 200), recording what it got."""

    script: list[int] = field(default_factory=list)
    received: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((request.headers["x-ciyuan-delivery"], dict(request.headers), body))
        status = self.script.pop(0) if self.script else 200
        return web.Response(status=status, text="nope" if status >= 300 else "ok")


@asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[aiohttp.ClientSession]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    receiver.url = f"http://127.0.0.1:{port}/hook"
    try:
        async with aiohttp.ClientSession() as session:
            yield session
    finally:
        await runner.cleanup()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def store(db_url: str, clock: FixedClock) -> Iterator[Store]:
    opened = open_store(db_url, clock=clock)
    yield opened
    opened.close()


def budget_with_hook(store: Store, url: str, thresholds: tuple[int, ...] = (50,)) -> Customer:
    acme = customer(store, "acme")
    store.set_budget(
        account_id=acme.account_id, api_key_id=None, period="day", amount=USD("1"),
        thresholds_pct=thresholds, webhook_url=url,
    )  # fmt: skip
    return acme


def test_failures_are_retried_with_backoff_then_delivered_signed(
    store: Store, clock: FixedClock
) -> None:
    receiver = Receiver(script=[500, 500])

    async def scenario() -> None:
        async with receiving(receiver) as session:
            worker = WebhookWorker(store, session, Secret(SECRET), clock, POLICY)
            acme = budget_with_hook(store, receiver.url)
            spend(store, acme, "0.6")
            assert await worker.run_once() == 0  # 500
            clock.advance(29)
            assert await worker.run_once() == 0 and len(receiver.received) == 1  # not yet due
            clock.advance(1)
            assert await worker.run_once() == 0 and len(receiver.received) == 2  # 500 again
            clock.advance(59)
            assert await worker.run_once() == 0 and len(receiver.received) == 2  # backoff doubled
            clock.advance(1)
            assert await worker.run_once() == 1  # 200
            clock.advance(3600)
            assert await worker.run_once() == 0
            # More spend in the same day crosses nothing new: no second delivery.
            spend(store, acme, "0.3")
            assert await worker.run_once() == 0

    asyncio.run(scenario())
    assert len(receiver.received) == 3
    ids = {delivery_id for delivery_id, _, _ in receiver.received}
    bodies = {body for _, _, body in receiver.received}
    assert len(ids) == 1 and len(bodies) == 1, "every retry sends the same delivery, byte for byte"
    for _, headers, body in receiver.received:
        timestamp_s = int(headers["x-ciyuan-signature"].split(",")[0].removeprefix("t="))
        assert verify_signature(SECRET, headers["x-ciyuan-signature"], body, now_s=timestamp_s)
        assert not verify_signature("wrong", headers["x-ciyuan-signature"], body, now_s=timestamp_s)
        assert headers["x-ciyuan-event"] == "budget.threshold"
    payload = json.loads(bodies.pop())
    assert payload["threshold_pct"] == 50 and payload["spent"] == "0.60"
    assert payload["budget"]["account"] == "acme" and payload["budget"]["amount"] == "1.00"
    [delivery] = store.list_webhook_deliveries()
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("delivered", 3, 200)
    assert delivery.id == ids.pop() == payload["id"]


def test_a_receiver_that_keeps_failing_is_given_up_and_recorded(
    store: Store, clock: FixedClock
) -> None:
    receiver = Receiver(script=[503] * 10)
    closed_port_url = f"http://127.0.0.1:{free_port()}/hook"

    async def scenario() -> None:
        async with receiving(receiver) as session:
            acme = budget_with_hook(store, receiver.url, thresholds=(50, 80))
            globex = customer(store, "globex")
            store.set_budget(
                account_id=globex.account_id, api_key_id=None, period="day", amount=USD("1"),
                thresholds_pct=(10,), webhook_url=closed_port_url,
            )  # fmt: skip
            spend(store, acme, "0.9")
            spend(store, globex, "0.5")
            for _ in range(POLICY.attempts_max + 2):
                await deliver_pending(
                    store, session, secret=Secret(SECRET), clock=clock, policy=POLICY
                )
                clock.advance(POLICY.backoff_max_s)

    asyncio.run(scenario())
    deliveries = store.list_webhook_deliveries()
    assert len(deliveries) == 3
    assert {(d.state, d.attempts) for d in deliveries} == {("failed", POLICY.attempts_max)}
    assert len(receiver.received) == 2 * POLICY.attempts_max
    refused = [d for d in deliveries if d.threshold_pct == 10]
    assert refused[0].last_status is None and "Connect" in (refused[0].last_error or "")
    assert {d.last_status for d in deliveries if d.threshold_pct != 10} == {503}


def test_signatures_reject_tampering_and_stale_timestamps() -> None:
    from ciyuan.webhooks import sign

    body = b'{"id": "whd_1"}'
    header = sign(SECRET, body, 1_000)
    assert verify_signature(SECRET, header, body, now_s=1_000 + 300)
    assert not verify_signature(SECRET, header, body, now_s=1_000 + 301)
    assert not verify_signature(SECRET, header, body + b" ", now_s=1_000)
    assert not verify_signature(SECRET, header.replace("t=1000", "t=1001"), body, now_s=1_000)
    assert not verify_signature(SECRET, "garbage", body, now_s=1_000)
    # While rotating secrets a sender may include two v1 values; either verifies.
    other = sign("old-secret", body, 1_000).split(",")[1]
    assert verify_signature(SECRET, f"{header},{other}", body, now_s=1_000)
