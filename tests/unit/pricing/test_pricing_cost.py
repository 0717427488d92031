"""Worked examples: the cost of real usage payloads at the shipped list prices, checked by hand.

Each expected amount is written as the sum a person would do with the provider's published
price per million tokens (the comment), so a wrong rate or a double-counted bucket shows up as
a different number. Every cost's lines must sum to its total exactly.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from fractions import Fraction

import pytest
from pricing_golden import (
    ANTHROPIC_CACHE_WRITE_AND_READ,
    ANTHROPIC_MIXED_TTL,
    GEMINI_USAGE_METADATA,
    OPENAI_CHAT_AUDIO,
    OPENAI_CHAT_CACHED_REASONING,
    OPENAI_EMBEDDINGS,
    OPENAI_RESPONSES_CACHED_REASONING,
)

from ciyuan.pricing.catalog import Catalog, ModelPrice
from ciyuan.pricing.cost import cost_of, worst_case_cost
from ciyuan.pricing.money import Amount
from ciyuan.pricing.plans import Plan
from ciyuan.pricing.usage import Usage

AT = datetime(2025, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load_default()


def price(catalog: Catalog, model: str, at: datetime = AT) -> ModelPrice:
    found = catalog.price_for(model, at)
    assert found is not None, model
    return found


def usd(text: str) -> Amount:
    return Amount.parse(text)


def test_o4_mini_chat_with_cache_and_reasoning(catalog: Catalog) -> None:
    cost = cost_of(Usage.from_openai_chat(OPENAI_CHAT_CACHED_REASONING), price(catalog, "o4-mini"))
    # $1.10/M x 86 uncached + $0.275/M x 1920 cached + $4.40/M x (108 + 192) output
    assert cost.total == usd("0.0000946") + usd("0.000528") + usd("0.00132")
    assert {line.bucket: line.amount for line in cost.lines} == {
        "input": usd("0.0000946"),
        "cache_read": usd("0.000528"),
        "output": usd("0.0004752"),
        "reasoning": usd("0.0008448"),
    }


def test_gpt5_responses_with_cache_and_reasoning(catalog: Catalog) -> None:
    usage = Usage.from_openai_responses(OPENAI_RESPONSES_CACHED_REASONING)
    cost = cost_of(usage, price(catalog, "gpt-5"))
    # $1.25/M x 1104 + $0.125/M x 4096 + $10/M x 1500
    assert cost.total == usd("0.00138") + usd("0.000512") + usd("0.015")
    assert str(cost.total) == "0.016892"


def test_claude_sonnet_45_cache_write_and_read(catalog: Catalog) -> None:
    cost = cost_of(
        Usage.from_anthropic(ANTHROPIC_CACHE_WRITE_AND_READ), price(catalog, "claude-sonnet-4-5")
    )
    # $3/M x 50 + $3.75/M x 2048 (5m write) + $0.30/M x 10000 (read) + $15/M x 503
    assert cost.total == usd("0.00015") + usd("0.00768") + usd("0.003") + usd("0.007545")


def test_claude_haiku_45_one_hour_writes_cost_twice_input(catalog: Catalog) -> None:
    cost = cost_of(Usage.from_anthropic(ANTHROPIC_MIXED_TTL), price(catalog, "claude-haiku-4-5"))
    # $1/M x 10 + $1.25/M x 1000 + $2/M x 2000 + $5/M x 20
    assert cost.total == usd("0.00001") + usd("0.00125") + usd("0.004") + usd("0.0001")


def test_audio_tokens_priced_at_audio_rates(catalog: Catalog) -> None:
    cost = cost_of(
        Usage.from_openai_chat(OPENAI_CHAT_AUDIO), price(catalog, "gpt-4o-audio-preview")
    )
    # text $2.50/M x 200 + audio $40/M x 800 + text out $10/M x 100 + audio out $80/M x 400
    assert cost.total == usd("0.0005") + usd("0.032") + usd("0.001") + usd("0.032")


def test_embeddings_and_gemini(catalog: Catalog) -> None:
    embed = cost_of(
        Usage.from_openai_embeddings(OPENAI_EMBEDDINGS), price(catalog, "text-embedding-3-small")
    )
    assert embed.total == Amount(8 * 20)  # $0.02/M = 20 nanos per token
    gemini = cost_of(Usage.from_gemini(GEMINI_USAGE_METADATA), price(catalog, "gemini-2.5-flash"))
    # $0.30/M x 200 + $0.03/M x 1000 + $2.50/M x (300 + 500 thinking)
    assert gemini.total == usd("0.00006") + usd("0.00003") + usd("0.002")


def test_image_tokens(catalog: Catalog) -> None:
    usage = Usage(input_tokens=50, image_input_tokens=1000, image_output_tokens=4160)
    cost = cost_of(usage, price(catalog, "gpt-image-1"))
    # $5/M x 50 text + $10/M x 1000 image in + $40/M x 4160 image out
    assert cost.total == usd("0.00025") + usd("0.01") + usd("0.1664")


def test_long_context_tier_prices_every_token_higher(catalog: Catalog) -> None:
    sonnet = price(catalog, "claude-sonnet-4-5")
    short = cost_of(Usage(input_tokens=200_000, output_tokens=1000), sonnet)
    long = cost_of(Usage(input_tokens=200_001, output_tokens=1000), sonnet)
    assert short.total == usd("0.6") + usd("0.015")  # $3/M, $15/M
    assert long.total == Amount(200_001 * 6000) + usd("0.0225")  # $6/M, $22.50/M
    # The tier looks at the whole prompt: cache reads count towards the 200k.
    mixed = cost_of(Usage(input_tokens=1, cache_read_tokens=200_000), sonnet)
    assert mixed.lines[1].unit_nanos == 600  # $0.60/M, the long-context cache read


def test_gemini_pro_tier(catalog: Catalog) -> None:
    pro = price(catalog, "gemini-2.5-pro")
    assert cost_of(Usage(input_tokens=300_000), pro).total == usd("0.75")  # $2.50/M


def test_plan_markup_rounds_once_and_lines_still_sum() -> None:
    one_nano = ModelPrice(
        model="m", provider="p", effective_from=date(2025, 1, 1), source="test", input=1, output=3
    )
    cost = cost_of(
        Usage(input_tokens=1, output_tokens=1), one_nano, plan=Plan(name="x", ratio=Fraction(9, 8))
    )
    # 4 nanos x 9/8 = 4.5 -> 4 (half to even)
    assert cost.total == Amount(4)
    cost = cost_of(
        Usage(input_tokens=2, output_tokens=1), one_nano, plan=Plan(name="x", ratio=Fraction(9, 10))
    )
    # 5 x 0.9 = 4.5 -> 4
    assert cost.total == Amount(4)
    assert [line.bucket for line in cost.lines] == ["input", "output", "plan_adjustment"]
    assert sum(line.amount.nanos for line in cost.lines) == cost.total.nanos


def test_batch_discount_and_plan_combine_into_one_rounding(catalog: Catalog) -> None:
    mini = price(catalog, "gpt-4o-mini")
    usage = Usage(input_tokens=1, cache_read_tokens=1, output_tokens=1)  # 150 + 75 + 600 = 825
    cost = cost_of(usage, mini, batch=True, plan=Plan(name="resell", ratio=Fraction(6, 5)))
    assert cost.total == Amount(round(Fraction(825) * Fraction(1, 2) * Fraction(6, 5)))  # 495
    buckets = {line.bucket: line.amount for line in cost.lines}
    assert buckets["batch_discount"] == Amount(412 - 825)  # 412.5 -> 412
    assert sum(line.amount.nanos for line in cost.lines) == cost.total.nanos


def test_free_allowance_is_spent_before_credit(catalog: Catalog) -> None:
    mini = price(catalog, "gpt-4o-mini")
    usage = Usage(input_tokens=1000)  # 150,000 nanos
    partly = cost_of(usage, mini, allowance_left=Amount(100_000))
    assert partly.total == Amount(50_000)
    assert partly.allowance_used == Amount(100_000)
    fully = cost_of(usage, mini, allowance_left=Amount(10**9))
    assert fully.total == Amount(0)
    assert fully.allowance_used == Amount(150_000)


def test_call_fee_is_its_own_line() -> None:
    fee = ModelPrice(
        model="m",
        provider="p",
        effective_from=date(2025, 1, 1),
        source="t",
        input=0,
        output=0,
        call_fee=Amount.parse("0.04"),
    )
    cost = cost_of(Usage(), fee)
    assert cost.total == usd("0.04")
    assert cost.to_dict()["lines"] == [
        {
            "bucket": "call_fee",
            "tokens": 0,
            "unit_nanos": 0,
            "unit_per_million": "0",
            "amount": "0.04",
            "amount_nanos": 40_000_000,
        }
    ]


def test_to_dict_names_the_price_version(catalog: Catalog) -> None:
    data = cost_of(Usage(input_tokens=10), price(catalog, "gpt-4o-mini")).to_dict()
    assert data["model"] == "gpt-4o-mini"
    assert data["price_effective_from"] == "2024-07-18"
    assert data["total"] == "0.0000015"
    assert data["total_nanos"] == 1500
    assert data["lines"][0]["unit_per_million"] == "0.15"


def test_worst_case_covers_the_dearest_buckets(catalog: Catalog) -> None:
    sonnet = price(catalog, "claude-sonnet-4-5")
    # 1000 input at the 1h write rate ($6/M) + 100 output at $15/M
    assert worst_case_cost(sonnet, 1000, 100) == usd("0.006") + usd("0.0015")
    assert worst_case_cost(sonnet, 1000, 100, cache_writes=False) == usd("0.003") + usd("0.0015")
    # Above 200k input the long-context tier applies: $12/M 1h writes, $22.50/M output.
    assert worst_case_cost(sonnet, 300_000, 10) == usd("3.6") + usd("0.000225")
    o3 = price(catalog, "o3")
    assert worst_case_cost(o3, 10, 10) == Amount(10 * 2000 + 10 * 8000)
    marked_up = worst_case_cost(o3, 10, 10, plan=Plan(name="x", ratio=Fraction(3, 2)))
    assert marked_up == Amount(150_000)


def test_worst_case_is_never_below_the_cost(catalog: Catalog) -> None:
    for model in ("claude-sonnet-4-5", "gpt-5", "gemini-2.5-pro", "o3"):
        p = price(catalog, model)
        usage = Usage(
            input_tokens=100, cache_write_1h_tokens=900, output_tokens=50, reasoning_tokens=50
        )
        assert cost_of(usage, p).total <= worst_case_cost(p, usage.input_total, usage.output_total)
