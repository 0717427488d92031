"""Real gateway processes with an admin key, on SQLite and PostgreSQL, for the admin surfaces.

Reuses the e2e machinery (demo upstream process, PostgreSQL schema per module, SDK clients
closed after each test) and adds the admin key in the gateway's environment.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import psycopg
import pytest

from ciyuan.store import open_store
from tests.conftest import PG_URL
from tests.e2e.conftest import (  # noqa: F401  (fixtures are found by their imported names)
    Gateway,
    _close_sdk_clients,
    _postgres_schema_url,
    demo_upstream,
    start_gateway,
)

ADMIN_KEY = "admin-" + secrets.token_urlsafe(24)


@dataclass
class AdminGateway(Gateway):
    admin_key: str = ADMIN_KEY

    def admin(self) -> httpx.Client:
        """An HTTP client that sends the admin key (the caller closes it)."""
        return httpx.Client(
            base_url=self.base_url,
            headers={"authorization": f"Bearer {self.admin_key}"},
            timeout=30,
        )


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def gateway(
    request: pytest.FixtureRequest,
    demo_upstream: str,  # noqa: F811  (the imported fixture, requested by name)
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AdminGateway]:
    """A gateway with ``CIYUAN_ADMIN_KEY`` set, on each backend."""
    folder = tmp_path_factory.mktemp(f"admin-{request.param}")
    schema = None
    if request.param == "sqlite":
        db_url = f"sqlite:///{folder / 'ciyuan.db'}"
    else:
        schema, db_url = _postgres_schema_url()
    store = open_store(db_url)
    process, base_url = start_gateway(
        db_url,
        demo_upstream,
        folder / "gateway.log",
        CIYUAN_ADMIN_KEY=ADMIN_KEY,
        # A short auth cache so a revoked key is refused within the test's patience.
        CIYUAN_AUTH_CACHE_TTL_S="0.2",
    )
    try:
        yield AdminGateway(base_url=base_url, db_url=db_url, store=store)
    finally:
        process.stop()
        store.close()
        if schema:
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def admin(gateway: AdminGateway) -> Iterator[httpx.Client]:
    with gateway.admin() as client:
        yield client
