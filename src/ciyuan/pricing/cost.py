"""The cost of a usage record: one exact line per bucket, and the one rounding of a request.

Each bucket's line is ``tokens × nanos per token``: an integer product, exact, no rounding.
Then, only if the request is batched or the account's plan has a ratio other than 1, the
subtotal is multiplied by the exact combined ratio and rounded once, half to even
(:meth:`Amount.scaled`); the difference appears as its own line (``batch_discount``,
``plan_adjustment``), so the lines of a cost always sum to its total exactly and a receipt can
show where every nano came from. A free allowance is spent last, as a negative line.

:func:`worst_case_cost` is what the gateway reserves before a call; every cost the call can
then produce for at most those token counts is no larger (see its docstring for the bounds).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from typing import Any, Final

from ciyuan.pricing.model_price import ModelPrice
from ciyuan.pricing.money import ZERO, Amount, nanos_per_token_to_per_million
from ciyuan.pricing.plans import Plan
from ciyuan.pricing.usage import BUCKETS, Usage

__all__ = ["Cost", "CostLine", "cost_of", "worst_case_cost"]

_ONE: Final = Fraction(1)


@dataclass(frozen=True, slots=True)
class CostLine:
    """One line of a receipt: a usage bucket (``tokens × unit_nanos``) or an adjustment."""

    bucket: str
    """A rate name (``input``, ``cache_read`` …) or ``call_fee``, ``batch_discount``,
    ``plan_adjustment``, ``free_allowance``."""
    tokens: int
    unit_nanos: int
    """Nanos per token for a bucket; 0 for an adjustment."""
    amount: Amount

    def to_dict(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "tokens": self.tokens,
            "unit_nanos": self.unit_nanos,
            "unit_per_million": nanos_per_token_to_per_million(self.unit_nanos),
            "amount": str(self.amount),
            "amount_nanos": self.amount.nanos,
        }


@dataclass(frozen=True, slots=True)
class Cost:
    total: Amount
    lines: tuple[CostLine, ...]
    model: str
    price_effective_from: date
    """Which version of the model's price was used: with the model, enough to re-price."""
    allowance_used: Amount = ZERO

    def __post_init__(self) -> None:
        assert sum(line.amount.nanos for line in self.lines) == self.total.nanos, self
        assert self.total.nanos >= 0, self

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "price_effective_from": self.price_effective_from.isoformat(),
            "currency": "USD",
            "total": str(self.total),
            "total_nanos": self.total.nanos,
            "allowance_used_nanos": self.allowance_used.nanos,
            "lines": [line.to_dict() for line in self.lines],
        }


def cost_of(
    usage: Usage,
    price: ModelPrice,
    *,
    plan: Plan | None = None,
    batch: bool = False,
    allowance_left: Amount = ZERO,
) -> Cost:
    """What ``usage`` costs at ``price``, for an account on ``plan``.

    ``batch`` applies the model's batch ratio (a model without one is charged list price).
    ``allowance_left`` is the account's unspent free allowance; the cost spends up to all of it.
    """
    assert allowance_left.nanos >= 0, allowance_left
    rates = price.rates_for(usage.input_total)
    lines: list[CostLine] = []
    for field in BUCKETS:
        tokens: int = getattr(usage, field)
        if tokens:
            unit = rates.rate(field)
            lines.append(
                CostLine(field.removesuffix("_tokens"), tokens, unit, Amount(tokens * unit))
            )
    if price.call_fee:
        lines.append(CostLine("call_fee", 0, 0, price.call_fee))
    subtotal = Amount(sum(line.amount.nanos for line in lines))

    batch_ratio = price.batch_ratio if batch and price.batch_ratio is not None else _ONE
    plan_ratio = plan.ratio if plan is not None else _ONE
    if batch_ratio == 1 and plan_ratio == 1:
        # The gateway's every request: Fraction arithmetic that changes nothing is skipped.
        after_batch = charged = subtotal
    else:
        # One rounding of the exact product; the batch line uses its own exact share so that
        # the plan line takes whatever rounding remains and the lines still sum to the total.
        after_batch = subtotal.scaled(batch_ratio)
        charged = subtotal.scaled(batch_ratio * plan_ratio)
    if after_batch != subtotal:
        lines.append(CostLine("batch_discount", 0, 0, after_batch - subtotal))
    if charged != after_batch:
        lines.append(CostLine("plan_adjustment", 0, 0, charged - after_batch))

    used = min(allowance_left, charged) if allowance_left else ZERO
    if used:
        lines.append(CostLine("free_allowance", 0, 0, -used))
    return Cost(
        total=charged - used,
        lines=tuple(lines),
        model=price.model,
        price_effective_from=price.effective_from,
        allowance_used=used,
    )


def worst_case_cost(
    price: ModelPrice,
    input_tokens: int,
    output_tokens: int,
    *,
    plan: Plan | None = None,
    cache_writes: bool = True,
) -> Amount:
    """The most a call with at most these token counts can cost: what to reserve.

    Every input token is priced at the highest input-side rate of the tier that
    ``input_tokens`` falls in (with ``cache_writes``, that includes the cache-write rates,
    because a prompt with cache breakpoints is billed at them; pass False when the request
    has none), every output token at the higher of the output and reasoning rates, plus the
    call fee and the plan's ratio. No batch discount: a reservation never assumes one.
    """
    assert input_tokens >= 0 and output_tokens >= 0, (input_tokens, output_tokens)
    rates = price.rates_for(input_tokens)
    input_rates = [rates.input, rates.cache_read]
    if cache_writes:
        input_rates += [rates.cache_write_5m, rates.cache_write_1h]
    nanos = input_tokens * max(input_rates) + output_tokens * max(rates.output, rates.reasoning)
    subtotal = Amount(nanos) + price.call_fee
    return subtotal if plan is None else subtotal.scaled(plan.ratio)
