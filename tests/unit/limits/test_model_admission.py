"""Per-model limits in ``Admission`` on the memory backend: per key and model name, tokens
corrected after the call, in-flight slots leased and given back, refusals that name the rule."""

from __future__ import annotations

import asyncio

import pytest

from ciyuan.clock import FixedClock
from ciyuan.gateway.admission import Admission, ModelLimit, RatePolicy, RateRefused
from ciyuan.limits import MemoryLimiter
from ciyuan.metering.ports import ApiKeyRecord
from ciyuan.pricing.usage import Usage


def key(key_id: str = "k1") -> ApiKeyRecord:
    return ApiKeyRecord(key_id, "a1", "acct", "ck_", "00", None, 0, None)


def admission(*limits: ModelLimit) -> Admission:
    return Admission(
        MemoryLimiter(FixedClock(1_700_000_000_000_000)), RatePolicy(model_limits=limits)
    )


def test_rpm_counts_per_key_and_model_name() -> None:
    async def run() -> None:
        gate = admission(ModelLimit("gpt-4o*", rpm=1))
        await gate.admit(key(), prompt_tokens=1, output_tokens=1, model="gpt-4o")
        with pytest.raises(RateRefused) as refused:
            await gate.admit(key(), prompt_tokens=1, output_tokens=1, model="gpt-4o")
        assert "rpm limit of 1 for model gpt-4o* on this key" in refused.value.message
        await gate.admit(key(), prompt_tokens=1, output_tokens=1, model="gpt-4o-mini")
        await gate.admit(key("k2"), prompt_tokens=1, output_tokens=1, model="gpt-4o")
        await gate.admit(key(), prompt_tokens=1, output_tokens=1, model="gpt-4.1")
        await gate.admit(key(), prompt_tokens=1, output_tokens=1)  # no model: no model rule

    asyncio.run(run())


def test_tokens_are_corrected_after_the_call() -> None:
    async def run() -> None:
        gate = admission(ModelLimit("claude-*", tpm=1000))
        first = await gate.admit(
            key(), prompt_tokens=100, output_tokens=800, model="claude-x", dialect="anthropic"
        )
        assert first.headers["anthropic-ratelimit-tokens-remaining"] == "100"
        await gate.finish(first, Usage(input_tokens=100, output_tokens=50))
        second = await gate.admit(
            key(), prompt_tokens=100, output_tokens=700, model="claude-x", dialect="anthropic"
        )
        assert second.headers["anthropic-ratelimit-tokens-remaining"] == "50"

    asyncio.run(run())


def test_concurrency_is_leased_and_given_back_with_nothing_kept_on_refusal() -> None:
    async def run() -> None:
        gate = admission(ModelLimit("gpt-*", rpm=10, concurrency=1))
        held = await gate.admit(key(), prompt_tokens=1, output_tokens=1, model="gpt-5")
        assert gate.in_flight == 1
        with pytest.raises(RateRefused) as refused:
            await gate.admit(key(), prompt_tokens=1, output_tokens=1, model="gpt-5")
        assert "concurrency limit of 1 for model gpt-* on this key" in refused.value.message
        await gate.finish(held, None)
        assert gate.in_flight == 0
        again = await gate.admit(key(), prompt_tokens=1, output_tokens=1, model="gpt-5")
        # The refused request's rpm charge was given back: 10 - held - again.
        assert again.headers["x-ratelimit-remaining-requests"] == "8"

    asyncio.run(run())
