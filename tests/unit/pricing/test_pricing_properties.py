"""Properties of cost_of over random usage and random prices (hypothesis).

- monotone: adding tokens to any one bucket never lowers the cost (within one price tier);
- additive: without a plan ratio, the cost of two requests is the cost of their sum;
- exact under markups: the total is the exact product rounded once, lines sum to the total;
- a reservation (worst_case_cost) is never below the cost of usage within its counts.
"""

from __future__ import annotations

from datetime import date
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from ciyuan.pricing.cost import cost_of, worst_case_cost
from ciyuan.pricing.model_price import ModelPrice
from ciyuan.pricing.money import Amount
from ciyuan.pricing.plans import Plan
from ciyuan.pricing.usage import BUCKETS, Usage

counts = st.integers(min_value=0, max_value=10**7)
rates = st.integers(min_value=0, max_value=200_000)  # up to $200 per million tokens


@st.composite
def prices(draw: st.DrawFn) -> ModelPrice:
    return ModelPrice(
        model="m",
        provider="p",
        effective_from=date(2025, 1, 1),
        source="hypothesis",
        input=draw(rates),
        output=draw(rates),
        cache_read=draw(rates),
        cache_write_5m=draw(rates),
        cache_write_1h=draw(rates),
        reasoning=draw(rates),
        audio_input=draw(rates),
        audio_output=draw(rates),
        image_input=draw(rates),
        image_output=draw(rates),
        call_fee=Amount(draw(st.integers(min_value=0, max_value=10**6))),
        batch_ratio=draw(
            st.none() | st.fractions(min_value=Fraction(1, 100), max_value=1, max_denominator=100)
        ),
    )


usages = st.builds(Usage, **{name: counts for name in BUCKETS})
ratios = st.fractions(min_value=0, max_value=10, max_denominator=10**6)


@given(
    prices(), usages, st.sampled_from(BUCKETS), st.integers(min_value=1, max_value=10**6), ratios
)
def test_cost_is_monotone_in_every_bucket(
    price: ModelPrice, usage: Usage, bucket: str, extra: int, ratio: Fraction
) -> None:
    more = Usage(**{**usage.as_dict(), bucket: getattr(usage, bucket) + extra})
    plan = Plan(name="p", ratio=ratio)
    assert cost_of(more, price, plan=plan).total >= cost_of(usage, price, plan=plan).total


@given(prices(), usages, usages)
def test_cost_is_additive_across_requests(price: ModelPrice, a: Usage, b: Usage) -> None:
    together = cost_of(a + b, price).total
    apart = cost_of(a, price).total + cost_of(b, price).total
    assert together + price.call_fee == apart  # one call fee per request


@given(prices(), usages, ratios, st.booleans())
def test_markups_are_exact_and_lines_sum(
    price: ModelPrice, usage: Usage, ratio: Fraction, batch: bool
) -> None:
    list_price = sum(getattr(usage, b) * price.rate(b) for b in BUCKETS) + price.call_fee.nanos
    cost = cost_of(usage, price, plan=Plan(name="p", ratio=ratio), batch=batch)
    if batch and price.batch_ratio is not None:
        ratio *= price.batch_ratio
    assert cost.total.nanos == round(Fraction(list_price) * ratio)
    assert sum(line.amount.nanos for line in cost.lines) == cost.total.nanos
    assert abs(cost.total.nanos - Fraction(list_price) * ratio) <= Fraction(1, 2)


@given(prices(), usages, st.integers(min_value=0, max_value=10**9))
def test_allowance_never_overspends(price: ModelPrice, usage: Usage, allowance: int) -> None:
    full = cost_of(usage, price).total
    cost = cost_of(usage, price, allowance_left=Amount(allowance))
    assert cost.allowance_used == min(Amount(allowance), full)
    assert cost.total == full - cost.allowance_used


@given(prices(), counts, counts, counts, counts, counts, counts)
def test_worst_case_covers_text_usage(
    price: ModelPrice, fresh: int, read: int, w5: int, w1h: int, out: int, thinking: int
) -> None:
    usage = Usage(
        input_tokens=fresh,
        cache_read_tokens=read,
        cache_write_5m_tokens=w5,
        cache_write_1h_tokens=w1h,
        output_tokens=out,
        reasoning_tokens=thinking,
    )
    reserve = worst_case_cost(price, usage.input_total, usage.output_total)
    assert cost_of(usage, price).total <= reserve
