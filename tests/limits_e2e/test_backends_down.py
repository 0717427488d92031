"""Degradation as configured: Redis stopped and restarted, PostgreSQL connections killed.

A gateway on PostgreSQL with rate limits in a Redis server of the test's own (so stopping it
disturbs no one else), 5 requests per minute per key. With Redis down, fail open serves and
bills every request and counts the degraded checks in /metrics; fail closed refuses with 429.
When Redis comes back (empty, as a crashed cache does) limits hold again. PostgreSQL
connections terminated under a running gateway give 503 in the provider's format, never an
unbilled answer, and the gateway recovers by itself. Throughout, the charges the client saw,
the balance change and the usage events agree to the nanosecond.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import psycopg
import pytest

from ciyuan.store import open_store
from tests.conftest import PG_URL
from tests.limits_e2e.harness import (
    Customer,
    OwnRedis,
    chat,
    customer,
    gateway,
    pg_schema,
    spent,
    usage_totals,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]
RPM = 5


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path / "redis.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _cost_nanos(response: httpx.Response) -> int:
    from ciyuan.pricing.money import Amount

    return Amount.parse(response.headers["x-ciyuan-cost"]).nanos


def _degraded(client: httpx.Client, base_url: str) -> float:
    text = client.get(f"{base_url}/metrics").text
    found = re.search(r'^ciyuan_rate_limiter_degraded_total\{policy="\w+"\} (\S+)$', text, re.M)
    assert found, "the degraded counter is missing from /metrics"
    return float(found.group(1))


def _first_ok(client: httpx.Client, base: str, key: str, timeout_s: float = 15.0) -> int:
    """Poll until a request is served (after a recovery); its cost. Refusals charge nothing."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = chat(client, base, key)
        if response.status_code == 200:
            return _cost_nanos(response)
        time.sleep(0.1)
    raise AssertionError("no request was served after the recovery")


@pytest.mark.parametrize("policy", ["open", "closed"])
def test_redis_stopped_and_restarted(
    policy: str, own_redis: OwnRedis, demo_upstream: str, tmp_path: Path
) -> None:
    with pg_schema() as db_url, closing(open_store(db_url)) as store:
        who: Customer = customer(store, "1")
        process, base = gateway(
            db_url,
            demo_upstream,
            tmp_path / "gateway.log",
            CIYUAN_REDIS=own_redis.url,
            CIYUAN_RATE_LIMIT_FAILURE=policy,
            CIYUAN_RATE_RPM_DEFAULT=str(RPM),
        )
        seen = 0
        try:
            with httpx.Client(timeout=30) as client:
                for _ in range(2):
                    ok = chat(client, base, who.key)
                    assert ok.status_code == 200
                    seen += _cost_nanos(ok)
                own_redis.stop()
                during = [chat(client, base, who.key) for _ in range(RPM + 2)]
                if policy == "open":
                    # Served past the limit, every one of them billed.
                    assert [r.status_code for r in during] == [200] * len(during)
                    seen += sum(_cost_nanos(r) for r in during)
                    assert all("x-ratelimit-limit-requests" not in r.headers for r in during)
                else:
                    assert [r.status_code for r in during] == [429] * len(during)
                    assert during[0].json()["error"]["type"] == "rate_limit_error"
                    assert during[0].headers["retry-after"] == "1"
                assert _degraded(client, base) >= len(during)
                own_redis.start()  # empty: the buckets start again from full
                seen += _first_ok(client, base, who.key)
                # Limits hold again: at most RPM requests in this fresh window.
                codes = []
                for _ in range(RPM + 1):
                    response = chat(client, base, who.key)
                    codes.append(response.status_code)
                    if response.status_code == 200:
                        seen += _cost_nanos(response)
                assert codes.count(429) >= 1
            assert spent(store, who.account_id) == seen
            assert usage_totals(db_url, who.account_id)[0] == seen
            assert store.balance(who.account_id).debits_pending == 0
        finally:
            process.stop()


def test_postgres_connections_killed_give_503_then_recovery(
    demo_upstream: str, tmp_path: Path
) -> None:
    app = f"ciyuan_gw_{secrets.token_hex(4)}"
    with pg_schema() as db_url, closing(open_store(db_url)) as store:
        who = customer(store, "1")
        process, base = gateway(
            db_url + f"&application_name={app}", demo_upstream, tmp_path / "gateway.log"
        )
        seen = 0
        statuses: list[int] = []
        try:
            with httpx.Client(timeout=30) as client:
                for _ in range(3):
                    ok = chat(client, base, who.key)
                    assert ok.status_code == 200
                    seen += _cost_nanos(ok)
                with psycopg.connect(PG_URL, autocommit=True) as admin:
                    killed = admin.execute(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE application_name = %s",
                        (app,),
                    ).fetchone()
                assert killed is not None and killed[0] >= 1
                for _ in range(30):
                    response = chat(client, base, who.key)
                    statuses.append(response.status_code)
                    if response.status_code == 200:
                        seen += _cost_nanos(response)
                    else:
                        assert response.status_code == 503
                        assert response.json()["error"]["code"] == "unavailable"
                        assert "choices" not in response.json()
            assert 503 in statuses, "terminated connections went unnoticed"
            assert statuses[-5:] == [200] * 5, "the gateway did not recover"
            assert spent(store, who.account_id) == seen
            assert usage_totals(db_url, who.account_id)[0] == seen
        finally:
            process.stop()
