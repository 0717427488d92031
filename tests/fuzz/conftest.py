"""One real gateway process for the whole fuzz package, on its own SQLite file and with its own
admin key, so nothing the fuzzers create, grant or revoke reaches another test's state.

Its limits are small (a 256 KiB body, 16 KiB of headers, a 2 s body timeout) so the hostile
tests can exceed each of them cheaply on a loaded machine; the gateway must hold them all the
same way it holds the defaults.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import httpx
import pytest

from tests.conftest import Process
from tests.e2e.conftest import (  # noqa: F401  (fixtures are found by their imported names)
    Gateway,
    demo_upstream,
    sqlite_gateway,
)

ADMIN_KEY = "admin-" + secrets.token_urlsafe(24)
BODY_BYTES_MAX = 256 * 1024
HEADER_BYTES_MAX = 16 * 1024
BODY_TIMEOUT_S = 2.0
CREDIT = "1000"


@dataclass
class FuzzGateway(Gateway):
    process: Process
    admin_key: str
    account: str
    """The fuzzed customer's account id and key: its balance is the one that must not move
    when a request is refused."""
    key: str

    @property
    def pid(self) -> int:
        return self.process.popen.pid

    def alive(self) -> bool:
        return self.process.popen.poll() is None

    def available(self) -> Decimal:
        """The customer's available balance, read from the database (not through the gateway
        whose behaviour is under test)."""
        return self.store.balance(self.account).available.to_decimal()


@pytest.fixture(scope="session")
def fuzz_gateway(
    demo_upstream: str,  # noqa: F811  (the imported fixture, requested by name)
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FuzzGateway]:
    folder = tmp_path_factory.mktemp("fuzz")
    with sqlite_gateway(
        folder,
        demo_upstream,
        CIYUAN_ADMIN_KEY=ADMIN_KEY,
        CIYUAN_BODY_BYTES_MAX=str(BODY_BYTES_MAX),
        CIYUAN_HEADER_BYTES_MAX=str(HEADER_BYTES_MAX),
        CIYUAN_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
    ) as (running, process):
        gateway = FuzzGateway(
            base_url=running.base_url,
            db_url=running.db_url,
            store=running.store,
            process=process,
            admin_key=ADMIN_KEY,
            account="",
            key="",
        )
        gateway.account, gateway.key = gateway.customer(CREDIT)
        yield gateway
    log = (folder / "gateway.log").read_text(errors="replace")
    # The app's catch-all handler logs every 5xx it had to invent: none may have happened.
    assert "unexpected error" not in log, log[-5000:]


@pytest.fixture
def client(fuzz_gateway: FuzzGateway) -> Iterator[httpx.Client]:
    """An HTTP client with the fuzzed customer's key."""
    with httpx.Client(
        base_url=fuzz_gateway.base_url,
        headers={"authorization": f"Bearer {fuzz_gateway.key}"},
        timeout=30,
    ) as http:
        yield http
