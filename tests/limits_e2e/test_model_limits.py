"""Per-model rate limits and Anthropic's rate-limit headers, on one real gateway process.

The gateway gets ``CIYUAN_MODEL_LIMITS`` as JSON: 3 requests per minute per key for each model
``gpt-4o*`` names, and 2 for ``claude-haiku*``; no other limit. Checked: the (N+1)th call to a
limited model is refused, naming the rule, while a call to another model (or another model the
same glob names, which counts apart) goes through; a refusal touches no money; /v1/messages
answers with ``anthropic-ratelimit-*`` headers (not OpenAI's), and the Anthropic SDK raises
``RateLimitError`` on its 429.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import anthropic
import httpx
import pytest

from ciyuan.metering.ports import Store
from ciyuan.store import open_store
from tests.e2e.conftest import tracked
from tests.limits_e2e.harness import Customer, chat, customer, gateway, spent, usage_totals

GPT_RPM, CLAUDE_RPM = 3, 2
MODEL_LIMITS = [
    {"model": "gpt-4o*", "rpm": GPT_RPM, "tpm": None, "concurrency": None},
    {"model": "claude-haiku*", "rpm": CLAUDE_RPM},
]


class Gw:
    def __init__(self, base_url: str, db_url: str, store: Store) -> None:
        self.base_url = base_url
        self.db_url = db_url
        self.store = store

    def customer(self) -> Customer:
        return customer(self.store, "1")


@pytest.fixture(scope="module")
def gw(demo_upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gw]:
    folder = tmp_path_factory.mktemp("model_limits")
    db_url = f"sqlite:///{folder / 'ciyuan.db'}"
    store = open_store(db_url)
    process, base_url = gateway(
        db_url,
        demo_upstream,
        folder / "gateway.log",
        CIYUAN_MODEL_LIMITS=json.dumps(MODEL_LIMITS),
    )
    try:
        yield Gw(base_url, db_url, store)
    finally:
        process.stop()
        store.close()


def _chat(client: httpx.Client, gw: Gw, key: str, model: str) -> httpx.Response:
    return client.post(
        f"{gw.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]},
    )


def _messages(client: httpx.Client, gw: Gw, key: str) -> httpx.Response:
    return client.post(
        f"{gw.base_url}/v1/messages",
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
        json={
            "model": "claude-haiku-4-5",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "hello"}],
        },
    )


def test_a_per_model_rpm_refuses_that_model_only_and_charges_nothing(gw: Gw) -> None:
    who = gw.customer()
    with httpx.Client(timeout=30) as client:
        for n in range(GPT_RPM):
            ok = chat(client, gw.base_url, who.key)  # gpt-4o-mini
            assert ok.status_code == 200, ok.text
            assert ok.headers["x-ratelimit-limit-requests"] == str(GPT_RPM)
            assert ok.headers["x-ratelimit-remaining-requests"] == str(GPT_RPM - 1 - n)
        spent_before = spent(gw.store, who.account_id)
        events_before = usage_totals(gw.db_url, who.account_id)
        refused = chat(client, gw.base_url, who.key)
        assert spent(gw.store, who.account_id) == spent_before
        assert usage_totals(gw.db_url, who.account_id) == events_before
        assert gw.store.balance(who.account_id).debits_pending == 0
        # Another model is not limited; another model of the same glob has its own count.
        other = _chat(client, gw, who.key, "gpt-4.1-nano")
        same_glob = _chat(client, gw, who.key, "gpt-4o")
        # Another key's count of the same model is its own.
        someone_else = chat(client, gw.base_url, gw.customer().key)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error"
    assert f"rpm limit of {GPT_RPM} for model gpt-4o* on this key" in error["message"]
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert 1 <= int(refused.headers["retry-after"]) <= 21
    assert not any(name.startswith("anthropic-ratelimit") for name in refused.headers)
    assert other.status_code == 200, other.text
    assert "x-ratelimit-limit-requests" not in other.headers
    assert same_glob.status_code == 200, same_glob.text
    assert same_glob.headers["x-ratelimit-remaining-requests"] == str(GPT_RPM - 1)
    assert someone_else.status_code == 200, someone_else.text


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_anthropic_routes_get_anthropic_headers_and_the_sdk_raises_rate_limit_error(
    gw: Gw,
) -> None:
    who = gw.customer()
    with httpx.Client(timeout=30) as client:
        answers = [_messages(client, gw, who.key) for _ in range(CLAUDE_RPM)]
    for n, ok in enumerate(answers):
        assert ok.status_code == 200, ok.text
        h = ok.headers
        assert h["anthropic-ratelimit-requests-limit"] == str(CLAUDE_RPM)
        assert h["anthropic-ratelimit-requests-remaining"] == str(CLAUDE_RPM - 1 - n)
        reset = _instant(h["anthropic-ratelimit-requests-reset"])
        now = datetime.now(UTC)
        assert now - timedelta(seconds=5) < reset <= now + timedelta(seconds=61)
        assert not any(name.startswith("x-ratelimit") for name in h)
    spent_before = spent(gw.store, who.account_id)
    sdk = tracked(anthropic.Anthropic(base_url=gw.base_url, api_key=who.key, max_retries=0))
    with pytest.raises(anthropic.RateLimitError) as raised:
        sdk.messages.create(
            model="claude-haiku-4-5",
            max_tokens=16,
            messages=[{"role": "user", "content": "hello"}],
        )
    h = raised.value.response.headers
    assert raised.value.status_code == 429
    assert f"rpm limit of {CLAUDE_RPM} for model claude-haiku* on this key" in str(raised.value)
    assert h["anthropic-ratelimit-requests-limit"] == str(CLAUDE_RPM)
    assert h["anthropic-ratelimit-requests-remaining"] == "0"
    assert _instant(h["anthropic-ratelimit-requests-reset"]) > datetime.now(UTC)
    assert 1 <= int(h["retry-after"]) <= 31
    assert not any(name.startswith("x-ratelimit") for name in h)
    assert spent(gw.store, who.account_id) == spent_before
    assert gw.store.balance(who.account_id).debits_pending == 0
