"""Operator configuration: ciyuan.toml routes and upstreams, SIGHUP reload without dropping a
request in flight, provider keys sent upstream but never shown, no client-chosen upstream."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from ciyuan.pricing.money import Amount
from ciyuan.store import open_store
from tests.conftest import CIYUAN, Process, child_env, free_port
from tests.e2e.conftest import Gateway, tracked

PROVIDER_KEY = "sk-provider-secret-0123456789"

CONFIG = """
[[upstreams]]
name = "primary"
kind = "demo"
base_url = "{demo}"
api_key_env = "CIYUAN_TEST_PROVIDER_KEY"
headers = {{ "x-demo-expect-key" = "{key}" }}

[[routes]]
model = "gpt-4o-mini"
deployments = [{{ upstream = "primary" }}]
{extra}
"""
EXTRA_ROUTE = """
[[routes]]
model = "gpt-4.1-nano"
deployments = [{ upstream = "primary" }]
"""


@pytest.fixture
def configured(demo_upstream: str, tmp_path: Path) -> Iterator[tuple[Gateway, Process, Path]]:
    config = tmp_path / "ciyuan.toml"
    config.write_text(CONFIG.format(demo=demo_upstream, key=PROVIDER_KEY, extra=""))
    db_url = f"sqlite:///{tmp_path / 'ciyuan.db'}"
    port = free_port()
    env = child_env(
        CIYUAN_DB=db_url, CIYUAN_CONFIG=str(config), CIYUAN_TEST_PROVIDER_KEY=PROVIDER_KEY
    )
    process = Process([*CIYUAN, "serve", "--port", str(port)], env, tmp_path / "gateway.log")
    store = open_store(db_url)
    try:
        process.wait_for("Ciyuan gateway listening on")
        yield Gateway(f"http://127.0.0.1:{port}", db_url, store), process, config
    finally:
        process.stop()
        store.close()


def sdk(gateway: Gateway, key: str) -> openai.OpenAI:
    return tracked(openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0))


def test_provider_key_is_sent_upstream_and_never_shown(
    configured: tuple[Gateway, Process, Path],
) -> None:
    gateway, _, _ = configured
    _, key = gateway.customer("1")
    # The demo upstream answers 401 unless it receives exactly the configured provider key.
    response = httpx.post(
        gateway.base_url + "/v1/chat/completions",
        json={
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "hi"}],
            "api_base": "http://127.0.0.1:9/v1",
            "base_url": "http://127.0.0.1:9/v1",
        },
        headers={
            "authorization": f"Bearer {key}",
            "x-forwarded-host": "127.0.0.1:9",
            "host": "evil",
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert PROVIDER_KEY not in response.text
    assert all(PROVIDER_KEY not in value for value in response.headers.values())


def test_sighup_reloads_routes_without_dropping_a_stream(
    configured: tuple[Gateway, Process, Path],
) -> None:
    gateway, process, config = configured
    account, key = gateway.customer("1")
    client = sdk(gateway, key)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="gpt-4.1-nano", messages=[{"role": "user", "content": "x"}]
        )

    received: list[str] = []
    failure: list[BaseException] = []

    def slow_stream() -> None:
        try:
            stream = client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "a slow story"}],
                stream=True,
                max_tokens=30,
                extra_headers={"x-demo-fault": "drip:40"},
            )
            received.extend(c.choices[0].delta.content or "" for c in stream if c.choices)
        except BaseException as error:
            failure.append(error)

    reader = threading.Thread(target=slow_stream)
    reader.start()
    time.sleep(0.3)  # the stream is under way
    config.write_text(config.read_text() + EXTRA_ROUTE)
    process.popen.send_signal(signal.SIGHUP)
    process.wait_for("configuration reloaded")
    reply = client.chat.completions.create(
        model="gpt-4.1-nano", messages=[{"role": "user", "content": "x"}], max_tokens=5
    )
    assert reply.choices[0].message.content is not None
    reader.join(30)
    assert not failure and "".join(received)
    balance = gateway.store.balance(account)
    assert balance.pending == Amount.zero() and balance.available < Amount.parse("1")


def test_a_broken_config_on_reload_keeps_the_running_one(
    configured: tuple[Gateway, Process, Path],
) -> None:
    gateway, process, config = configured
    _, key = gateway.customer("1")
    config.write_text("[[routes]]\nmodel = 7\n")
    process.popen.send_signal(signal.SIGHUP)
    process.wait_for("reload failed, keeping the running configuration")
    reply = sdk(gateway, key).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], max_tokens=5
    )
    assert reply.choices
