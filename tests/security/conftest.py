"""A "hardened" gateway for the security tests: real processes, an admin key, a provider key
read from an environment variable, JSON logs kept in a file, and a catch-all route so that
customer-chosen model names reach usage rows (and so the dashboard) for real.

Reuses the e2e machinery: the demo upstream process (which answers 401 unless it receives
exactly the configured provider key), ``start_gateway`` and the SDK-client tracking.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ciyuan.store import open_store
from tests.admin.conftest import ADMIN_KEY, AdminGateway
from tests.conftest import Process
from tests.e2e.conftest import (  # noqa: F401  (fixtures are found by their imported names)
    _close_sdk_clients,
    demo_upstream,
    start_gateway,
)

PROVIDER_KEY = "sk-provider-" + secrets.token_urlsafe(24)
PROVIDER_KEY_ENV = "CIYUAN_TEST_SECURITY_PROVIDER_KEY"


def upstreams(demo: str) -> str:
    """``CIYUAN_UPSTREAMS``: the demo upstream, with the provider key from the environment.

    The demo refuses (401) a request that does not carry exactly ``PROVIDER_KEY``, so every
    answered call proves the key was sent upstream."""
    return json.dumps(
        [
            {
                "name": "primary",
                "kind": "demo",
                "base_url": demo,
                "api_key_env": PROVIDER_KEY_ENV,
                "headers": {"x-demo-expect-key": PROVIDER_KEY},
            }
        ]
    )


# Every model, priced or not, goes to the demo: a client-chosen model name reaches usage rows.
CATCH_ALL_ROUTES = json.dumps([{"model": "*", "deployments": [{"upstream": "primary"}]}])


@dataclass
class HardenedGateway(AdminGateway):
    log: Path = Path()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_logged(self, *needles: str, timeout_s: float = 30.0) -> str:
        """The log once every needle (e.g. a request id) is in it: request lines are written
        after the response, by a settle that may finish in the background."""
        deadline = time.monotonic() + timeout_s
        while True:
            text = self.log_text()
            if all(needle in text for needle in needles):
                return text
            if time.monotonic() > deadline:
                missing = [n for n in needles if n not in text]
                raise AssertionError(f"{missing} never logged; log:\n{text}")
            time.sleep(0.05)


def hardened_gateway(demo: str, folder: Path, **settings: str) -> tuple[HardenedGateway, Process]:
    """Start one; returns it and its process (the caller stops both)."""
    db_url = f"sqlite:///{folder / 'ciyuan.db'}"
    log = folder / "gateway.log"
    env = {
        "CIYUAN_UPSTREAMS": upstreams(demo),
        "CIYUAN_ROUTES": CATCH_ALL_ROUTES,
        "CIYUAN_ADMIN_KEY": ADMIN_KEY,
        "CIYUAN_LOG_FORMAT": "json",
        "CIYUAN_ALLOW_UNPRICED_MODELS": "true",
        PROVIDER_KEY_ENV: PROVIDER_KEY,
        **settings,
    }
    process, base_url = start_gateway(db_url, demo, log, **env)
    store = open_store(db_url)
    return HardenedGateway(base_url=base_url, db_url=db_url, store=store, log=log), process


@pytest.fixture(scope="session")
def hardened(
    demo_upstream: str,  # noqa: F811  (the imported fixture, requested by name)
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[HardenedGateway]:
    # One for the session: its log then holds every security test's traffic, so the log
    # checks see more, and the suite starts one gateway fewer.
    gateway, process = hardened_gateway(demo_upstream, tmp_path_factory.mktemp("hardened"))
    try:
        yield gateway
    finally:
        process.stop()
        gateway.store.close()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def dashboard_login(gateway: AdminGateway) -> httpx.Client:
    """An httpx client holding a dashboard session (the caller closes it)."""
    client = httpx.Client(base_url=gateway.base_url, timeout=30)
    form = client.get("/dashboard/login")
    done = client.post(
        "/dashboard/login", data={"admin_key": gateway.admin_key, "csrf": csrf_of(form.text)}
    )
    assert done.status_code == 303, done.text
    return client
