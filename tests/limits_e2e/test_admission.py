"""Rate and concurrency limits at the gateway's door, on the embedded default (SQLite, memory).

One real gateway process with defaults of 20 requests and 20 000 model tokens per minute and 2
requests in flight per key; each test uses its own key, so their buckets never meet. Checked:
OpenAI's x-ratelimit-* headers on success; a refusal is a 429 in each provider's own format,
with retry-after, and touches no money; the official OpenAI SDK honours it and succeeds on
retry; a request larger than a whole window is refused as never admissible (no retry); token
estimates are corrected with the real usage; a stream holds an in-flight slot until it ends,
and a client that walks away gives it back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from ciyuan.metering.ports import Store
from ciyuan.store import open_store
from tests.conftest import Process
from tests.e2e.conftest import tracked
from tests.limits_e2e.harness import Customer, chat, customer, gateway, spent, usage_totals

RPM, TPM, IN_FLIGHT = 20, 20_000, 2


class Gw:
    def __init__(self, base_url: str, db_url: str, store: Store) -> None:
        self.base_url = base_url
        self.db_url = db_url
        self.store = store

    def customer(self, credit: str = "1") -> Customer:
        return customer(self.store, credit)


@pytest.fixture(scope="module")
def gw(demo_upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gw]:
    folder = tmp_path_factory.mktemp("admission")
    db_url = f"sqlite:///{folder / 'ciyuan.db'}"
    store = open_store(db_url)
    process: Process
    process, base_url = gateway(
        db_url,
        demo_upstream,
        folder / "gateway.log",
        CIYUAN_RATE_RPM_DEFAULT=str(RPM),
        CIYUAN_RATE_TPM_DEFAULT=str(TPM),
        CIYUAN_CONCURRENCY_MAX_DEFAULT=str(IN_FLIGHT),
    )
    try:
        yield Gw(base_url, db_url, store)
    finally:
        process.stop()
        store.close()


def _exhaust_requests(client: httpx.Client, gw: Gw, who: Customer) -> None:
    for _ in range(RPM):
        assert chat(client, gw.base_url, who.key).status_code == 200


def test_success_carries_openai_ratelimit_headers(gw: Gw) -> None:
    who = gw.customer()
    with httpx.Client(timeout=30) as client:
        response = chat(client, gw.base_url, who.key)
    assert response.status_code == 200
    h = response.headers
    assert h["x-ratelimit-limit-requests"] == str(RPM)
    assert h["x-ratelimit-remaining-requests"] == str(RPM - 1)
    assert h["x-ratelimit-limit-tokens"] == str(TPM)
    assert 0 < int(h["x-ratelimit-remaining-tokens"]) < TPM
    assert h["x-ratelimit-reset-requests"].endswith("s")


def test_refusal_is_429_in_each_wire_format_and_touches_no_money(gw: Gw) -> None:
    who = gw.customer()
    with httpx.Client(timeout=30) as client:
        _exhaust_requests(client, gw, who)
        spent_before = spent(gw.store, who.account_id)
        events_before = usage_totals(gw.db_url, who.account_id)
        refused = chat(client, gw.base_url, who.key)
        anthropic = client.post(
            f"{gw.base_url}/v1/messages",
            headers={"x-api-key": who.key, "anthropic-version": "2023-06-01"},
            json={
                "model": "claude-haiku-4-5",
                "max_tokens": 16,
                "messages": [{"role": "user", "content": "hello"}],
            },
        )
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error"
    assert error["code"] == "rate_limit_exceeded"
    assert "20 requests per minute" in error["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 3
    assert 0 < int(refused.headers["retry-after-ms"]) <= 3000
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert anthropic.status_code == 429
    assert anthropic.json()["type"] == "error"
    assert anthropic.json()["error"]["type"] == "rate_limit_error"
    assert "retry-after" in anthropic.headers
    # Refused before the ledger: no hold, no charge, no usage event.
    assert spent(gw.store, who.account_id) == spent_before
    assert usage_totals(gw.db_url, who.account_id) == events_before
    assert gw.store.balance(who.account_id).debits_pending == 0


def test_openai_sdk_retries_a_429_and_then_succeeds(gw: Gw) -> None:
    who = gw.customer()
    statuses: list[int] = []
    with httpx.Client(timeout=30) as raw:
        _exhaust_requests(raw, gw, who)
    http_client = httpx.Client(
        timeout=30, event_hooks={"response": [lambda r: statuses.append(r.status_code)]}
    )
    sdk = tracked(
        openai.OpenAI(
            base_url=f"{gw.base_url}/v1", api_key=who.key, max_retries=2, http_client=http_client
        )
    )
    started = time.monotonic()
    completion = sdk.chat.completions.create(
        model="gpt-4o-mini", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
    )
    waited_s = time.monotonic() - started
    assert completion.choices[0].message.content
    assert statuses == [429, 200]
    # The SDK waited what retry-after-ms said (one unit refills every 3 s), not its own backoff.
    assert waited_s < 4.5


def test_a_request_larger_than_a_whole_window_is_not_retried(gw: Gw) -> None:
    who = gw.customer()
    statuses: list[int] = []
    http_client = httpx.Client(
        timeout=30, event_hooks={"response": [lambda r: statuses.append(r.status_code)]}
    )
    sdk = tracked(
        openai.OpenAI(
            base_url=f"{gw.base_url}/v1", api_key=who.key, max_retries=2, http_client=http_client
        )
    )
    with pytest.raises(openai.RateLimitError) as raised:
        sdk.chat.completions.create(
            model="gpt-4o-mini", max_tokens=TPM + 1, messages=[{"role": "user", "content": "hi"}]
        )
    assert statuses == [429]
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert "can never be admitted" in raised.value.message


def test_token_estimates_are_corrected_with_real_usage(gw: Gw) -> None:
    who = gw.customer()
    with httpx.Client(timeout=30) as client:
        first = chat(client, gw.base_url, who.key, max_tokens=8000)
        second = chat(client, gw.base_url, who.key, max_tokens=8000)
        third = chat(client, gw.base_url, who.key, max_tokens=8000)
    assert [r.status_code for r in (first, second, third)] == [200, 200, 200]
    used = first.json()["usage"]["total_tokens"]
    assert used < 200
    # Without the correction, the third request would not fit: 3 × 8 000 > 20 000. With it,
    # each request holds only its real usage once it has ended.
    remaining = int(third.headers["x-ratelimit-remaining-tokens"])
    assert remaining >= TPM - 8000 - 3 * 200


def _slow_stream(base_url: str, key: str, done: threading.Event, codes: list[int]) -> None:
    with (
        httpx.Client(timeout=30) as client,
        client.stream(
            "POST",
            f"{base_url}/v1/chat/completions",
            headers={"authorization": f"Bearer {key}", "x-demo-fault": "drip:150"},
            json={
                "model": "gpt-4o-mini",
                "max_tokens": 12,
                "stream": True,
                "messages": [{"role": "user", "content": "hello"}],
            },
        ) as response,
    ):
        codes.append(response.status_code)
        for _ in response.iter_bytes():
            pass
    done.set()


def _wait_for(predicate: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_streams_hold_in_flight_slots_until_they_end(gw: Gw) -> None:
    who = gw.customer()
    codes: list[int] = []
    done = [threading.Event() for _ in range(IN_FLIGHT)]
    threads = [
        threading.Thread(target=_slow_stream, args=(gw.base_url, who.key, d, codes)) for d in done
    ]
    for thread in threads:
        thread.start()
    _wait_for(lambda: len(codes) == IN_FLIGHT)
    with httpx.Client(timeout=30) as client:
        refused = chat(client, gw.base_url, who.key)
        assert refused.status_code == 429
        assert "in flight" in refused.json()["error"]["message"]
        for thread in threads:
            thread.join(30)
        assert codes == [200] * IN_FLIGHT
        assert chat(client, gw.base_url, who.key).status_code == 200


def test_a_client_that_walks_away_gives_its_slot_back(gw: Gw, tmp_path: Path) -> None:
    who = gw.customer()
    with httpx.Client(timeout=30) as client:
        for _ in range(IN_FLIGHT):
            with client.stream(
                "POST",
                f"{gw.base_url}/v1/chat/completions",
                headers={"authorization": f"Bearer {who.key}", "x-demo-fault": "drip:200"},
                json={
                    "model": "gpt-4o-mini",
                    "max_tokens": 50,
                    "stream": True,
                    "messages": [{"role": "user", "content": "hello"}],
                },
            ) as response:
                assert response.status_code == 200
                next(response.iter_bytes())  # one chunk, then hang up mid-stream
        # The gateway settles what was delivered and frees the slots in the background.
        _wait_for(lambda: chat(client, gw.base_url, who.key).status_code == 200)
    assert gw.store.balance(who.account_id).debits_pending == 0
