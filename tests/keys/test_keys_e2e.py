"""Scoped, expiring, rotated keys and budgets through a real gateway (the official ``openai``
SDK, the demo upstream), on SQLite and PostgreSQL.

Refusals must come in OpenAI's error format with the right status and code, and charge nothing.
"""

from __future__ import annotations

import openai
import pytest

from ciyuan import apikeys
from ciyuan.clock import US_PER_S, SystemClock
from ciyuan.metering.ports import KeyOptions
from ciyuan.pricing.money import Amount
from tests.e2e.conftest import Gateway, tracked

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "What is a token?"}]


def client(gateway: Gateway, key: str) -> openai.OpenAI:
    return tracked(
        openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0, timeout=30)
    )


def key_for(gateway: Gateway, account_id: str, options: KeyOptions) -> tuple[str, str]:
    """A new key with ``options``: (key id, raw key)."""
    new = apikeys.generate()
    record = gateway.store.create_api_key(account_id, new.prefix, new.hash_hex, "e2e", options)
    return record.id, new.secret.reveal()


def test_a_scoped_key_is_refused_outside_its_scope_and_charged_nothing(gateway: Gateway) -> None:
    account, _ = gateway.customer("1")
    _, key = key_for(gateway, account, KeyOptions(models=("gpt-4o*",), apis=("chat",)))
    ok = client(gateway, key).chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8)
    assert ok.choices[0].message.content
    spent = Amount.parse("1") - gateway.store.balance(account).available
    with pytest.raises(openai.PermissionDeniedError) as model_denied:
        client(gateway, key).chat.completions.create(model="gpt-4.1-mini", messages=MESSAGES)
    assert "gpt-4o*" in model_denied.value.message
    assert model_denied.value.body["code"] == "permission_denied"  # type: ignore[index]
    with pytest.raises(openai.PermissionDeniedError) as api_denied:
        client(gateway, key).embeddings.create(model="text-embedding-3-small", input="hi")
    assert "embeddings API" in api_denied.value.message
    balance = gateway.store.balance(account)
    assert balance.available == Amount.parse("1") - spent and balance.pending == Amount.zero()


def test_expired_and_rotated_keys(gateway: Gateway) -> None:
    account, _ = gateway.customer("1")
    now_us = SystemClock().now_us()
    _, expired = key_for(gateway, account, KeyOptions(expires_us=now_us - US_PER_S))
    with pytest.raises(openai.AuthenticationError) as caught:
        client(gateway, expired).chat.completions.create(model=MODEL, messages=MESSAGES)
    assert "expired" in caught.value.message

    old_id, old_key = key_for(gateway, account, KeyOptions(metadata={"team": "search"}))
    new = apikeys.generate()
    # No overlap: the old key (never seen by this gateway, so not in its cache) stops at once.
    _, rotated = gateway.store.rotate_api_key(old_id, new.prefix, new.hash_hex, overlap_s=0)
    assert rotated.metadata == {"team": "search"}
    with pytest.raises(openai.AuthenticationError, match="expired"):
        client(gateway, old_key).chat.completions.create(model=MODEL, messages=MESSAGES)
    reply = client(gateway, new.secret.reveal()).chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=8
    )
    assert reply.choices[0].message.content


def test_a_spent_budget_is_402_budget_exceeded(gateway: Gateway) -> None:
    account, _ = gateway.customer("1")
    key_id, key = key_for(gateway, account, KeyOptions())
    gateway.store.set_budget(
        account_id=account, api_key_id=key_id, period="month", amount=Amount.parse("0.0001")
    )
    with pytest.raises(openai.APIStatusError) as caught:
        for _ in range(50):
            client(gateway, key).chat.completions.create(
                model=MODEL, messages=MESSAGES, max_tokens=16
            )
    assert caught.value.status_code == 402
    assert caught.value.body["code"] == "budget_exceeded"  # type: ignore[index]
    assert "monthly budget of 0.0001 USD for key ck-" in caught.value.message
    [status] = gateway.store.list_budgets(account)
    assert status.spent <= status.budget.amount and status.held == Amount.zero()
