"""What the rate-limit and scale-out tests share: a Redis server of their own (to stop and
restart without touching the shared one), PostgreSQL schemas, gateways and customers.

Redis and PostgreSQL are real. A test that needs them skips with a reason when they are not
there, and fails when ``CI`` is set (``tests.conftest._unavailable``).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg
import redis

from ciyuan import apikeys
from ciyuan.metering.ports import KeyOptions, Store
from ciyuan.pricing.money import Amount
from tests.conftest import PG_URL, REDIS_URL, Process, _unavailable, free_port
from tests.e2e.conftest import start_gateway


class OwnRedis:
    """``redis-server`` on a free port, with no persistence: a restart starts empty, as a
    crashed cache does."""

    def __init__(self, log: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            _unavailable("redis-server", FileNotFoundError("redis-server is not on PATH"))
        self.binary = str(binary)
        self.port = free_port()
        self.log = log
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.popen is None
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        if self.popen is not None:
            self.popen.terminate()
            self.popen.wait(10)
            self.popen = None


def shared_redis_url() -> str:
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.ping()
        client.close()
    except redis.RedisError as error:
        _unavailable("Redis", error)
    return REDIS_URL


@contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh schema on the test PostgreSQL; yields its URL (dropped afterwards)."""
    schema = f"lim_{secrets.token_hex(5)}"
    try:
        with psycopg.connect(PG_URL, connect_timeout=3, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    except psycopg.Error as error:
        _unavailable("PostgreSQL", error)
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@dataclass
class Customer:
    account_id: str
    key: str
    prefix: str


def customer(store: Store, credit: str, options: KeyOptions | None = None) -> Customer:
    account = store.create_account(f"cust-{secrets.token_hex(4)}")
    if Amount.parse(credit):
        store.grant(account.id, Amount.parse(credit))
    new = apikeys.generate()
    store.create_api_key(account.id, new.prefix, new.hash_hex, "limits", options)
    return Customer(account.id, new.secret.reveal(), new.prefix)


def spent(store: Store, account_id: str) -> int:
    """Nanos charged to the account so far (posted debits)."""
    return store.balance(account_id).debits_posted


def usage_totals(db_url: str, account_id: str) -> tuple[int, int]:
    """(sum of cost in nanos, number of requests) over the account's usage events with
    status ok or partial: the requests that reached the client."""
    sql = (
        "SELECT coalesce(sum(cost_nanos), 0), count(*) FROM usage_events "
        "WHERE account_id = {p} AND status IN ('ok', 'partial')"
    )
    if db_url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
            row = conn.execute(sql.format(p="?"), (account_id,)).fetchone()
    else:
        with psycopg.connect(db_url) as conn:
            row = conn.execute(sql.format(p="%s"), (account_id,)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def chat(
    client: httpx.Client, base_url: str, key: str, *, max_tokens: int = 16, **headers: str
) -> httpx.Response:
    return client.post(
        f"{base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}", **headers},
        json={
            "model": "gpt-4o-mini",
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "hello"}],
        },
    )


def gateway(db_url: str, upstream: str, log: Path, **settings: str) -> tuple[Process, str]:
    return start_gateway(db_url, upstream, log, **settings)
