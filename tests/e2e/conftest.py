"""Real processes on loopback: the demo upstream, and gateways in front of it on each backend."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from ciyuan import apikeys
from ciyuan.metering.ports import Store
from ciyuan.pricing.money import Amount
from ciyuan.store import open_store
from tests.conftest import CIYUAN, PG_URL, Process, _unavailable, child_env, free_port

T = TypeVar("T")


@pytest.fixture(scope="session")
def demo_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``ciyuan demo-upstream`` as its own process; yields its OpenAI base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("demo") / "demo.log"
    process = Process([*CIYUAN, "demo-upstream", "--port", str(port)], child_env(), log)
    try:
        process.wait_for(r"demo upstream listening on")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.stop()


@dataclass
class Gateway:
    base_url: str
    db_url: str
    store: Store

    def customer(self, credit: str) -> tuple[str, str]:
        """A new account holding ``credit`` USD and a key for it: (account id, raw key)."""
        account = self.store.create_account(f"cust-{secrets.token_hex(4)}")
        if Amount.parse(credit):
            self.store.grant(account.id, Amount.parse(credit))
        new = apikeys.generate()
        self.store.create_api_key(account.id, new.prefix, new.hash_hex, "e2e")
        return account.id, new.secret.reveal()


def _postgres_schema_url() -> tuple[str, str]:
    try:
        with psycopg.connect(PG_URL, connect_timeout=3, autocommit=True) as conn:
            schema = f"e2e_{secrets.token_hex(5)}"
            conn.execute(f"CREATE SCHEMA {schema}")
    except psycopg.Error as error:
        _unavailable("PostgreSQL", error)
    return schema, f"{PG_URL}?options=-csearch_path%3D{schema}"


def demo_upstreams(base_url: str) -> str:
    """``CIYUAN_UPSTREAMS`` for one demo-kind upstream, which speaks both wire dialects."""
    return json.dumps([{"name": "demo", "kind": "demo", "base_url": base_url}])


def start_gateway(db_url: str, upstream: str, log: Path, **settings: str) -> tuple[Process, str]:
    port = free_port()
    settings.setdefault("CIYUAN_UPSTREAMS", demo_upstreams(upstream))
    env = child_env(CIYUAN_DB=db_url, **settings)
    process = Process([*CIYUAN, "serve", "--port", str(port)], env, log)
    try:
        process.wait_for(r"Ciyuan gateway listening on")
    except AssertionError:
        process.stop()
        raise
    return process, f"http://127.0.0.1:{port}"


@contextmanager
def sqlite_gateway(
    folder: Path, upstream: str, **settings: str
) -> Iterator[tuple[Gateway, Process]]:
    """A gateway process on its own SQLite file in ``folder`` (its log beside it), with a store
    on the same file for the test; both are stopped and closed when the block ends."""
    db_url = f"sqlite:///{folder / 'ciyuan.db'}"
    store = open_store(db_url)
    try:
        process, base_url = start_gateway(db_url, upstream, folder / "gateway.log", **settings)
        try:
            yield Gateway(base_url=base_url, db_url=db_url, store=store), process
        finally:
            process.stop()
    finally:
        store.close()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def gateway(
    request: pytest.FixtureRequest, demo_upstream: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    folder = tmp_path_factory.mktemp(f"gateway-{request.param}")
    schema = None
    if request.param == "sqlite":
        db_url = f"sqlite:///{folder / 'ciyuan.db'}"
    else:
        schema, db_url = _postgres_schema_url()
    store = open_store(db_url)
    process, base_url = start_gateway(db_url, demo_upstream, folder / "gateway.log")
    try:
        yield Gateway(base_url=base_url, db_url=db_url, store=store)
    finally:
        process.stop()
        store.close()
        if schema:
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")


_open_clients: list[Any] = []


def tracked(client: T) -> T:
    """Register an SDK client so it is closed after the test (its pool holds sockets)."""
    _open_clients.append(client)
    return client


@pytest.fixture(autouse=True)
def _close_sdk_clients() -> Iterator[None]:
    yield
    while _open_clients:
        _open_clients.pop().close()
