"""A credit hold is not awaited to its COMMIT (the request goes upstream meanwhile): if that
COMMIT fails, the request must still charge nothing and say so in the provider's format.

The real app runs in process (httpx's ASGI transport) on a real SQLite file, against the demo
upstream served in a thread; the store's connection fails one COMMIT as a full disk would.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import httpx
import pytest
from starlette.applications import Starlette

from ciyuan import apikeys
from ciyuan.bootstrap import build_app
from ciyuan.pricing.money import Amount
from ciyuan.settings import Settings
from ciyuan.store import open_store
from ciyuan.store.sqlite import SqliteStore
from tests.contract.ledger_helpers import NextCommitFails, raw

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def gateway(sqlite_url: str, demo_url: str) -> Iterator[tuple[Starlette, str, str]]:
    store = open_store(sqlite_url)
    account = store.create_account("disk-full")
    store.grant(account.id, Amount.parse("1"))
    key = apikeys.generate()
    store.create_api_key(account.id, key.prefix, key.hash_hex, None)
    store.close()
    app = build_app(Settings(db=sqlite_url), demo_url=f"{demo_url}/v1")
    yield app, key.secret.reveal(), account.id
    app.state.runtime.store_executor.shutdown()


def test_a_hold_whose_commit_fails_answers_503_and_charges_nothing(
    gateway: tuple[Starlette, str, str], sqlite_url: str
) -> None:
    app, secret, account_id = gateway
    store = app.state.runtime.metering.store
    assert isinstance(store, SqliteStore)
    failing = NextCommitFails(store._conn)
    store._conn = failing  # type: ignore[assignment]

    async def calls() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://gw") as client,
        ):
            headers = {"authorization": f"Bearer {secret}"}
            first = await client.post("/v1/chat/completions", json=BODY, headers=headers)
            failing.armed = True  # the key is cached now: the next COMMIT is the hold's
            second = await client.post("/v1/chat/completions", json=BODY, headers=headers)
            return first, second

    first, second = anyio.run(calls)
    assert first.status_code == 200
    assert failing.failed == 1
    assert second.status_code == 503, second.text
    assert second.json()["error"]["code"] == "unavailable"
    assert "x-ciyuan-cost" not in second.headers
    # Only the first request was charged; the lost hold left nothing behind.
    charges = raw(sqlite_url, "SELECT COUNT(*) FROM transfers WHERE kind = 'charge'")
    assert charges == [(1,)]
    assert raw(sqlite_url, "SELECT COUNT(*) FROM reservations") == [(1,)]
    spent = Amount.parse(first.headers["x-ciyuan-cost"])
    check = open_store(sqlite_url)
    try:
        assert check.get_account(account_id).balance.available == Amount.parse("1") - spent
    finally:
        check.close()
