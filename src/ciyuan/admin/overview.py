"""What the dashboard's pages show, gathered from the store in one blocking call per page.

Pure data gathering and formatting: the routes in ``dashboard.py`` run these on the store's
executor and hand the result to a template.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Final

from markupsafe import Markup

from ciyuan.admin.charts import Series, stacked_bars
from ciyuan.clock import US_PER_S, Clock, us_to_datetime
from ciyuan.ledger.accounts import Account, AccountKind
from ciyuan.metering.budgets import BudgetStatus
from ciyuan.metering.ports import ApiKeyRecord, ReportRow, Store, UsageEvent
from ciyuan.pricing.money import NANOS_PER_UNIT, Amount

RANGES: Final = {
    "24h": (timedelta(hours=24), "hour"),
    "7d": (timedelta(days=7), "day"),
    "30d": (timedelta(days=30), "day"),
}
TOP_ROWS: Final = 8
RECENT_ROWS: Final = 10


def money(amount: Amount | Decimal) -> str:
    """``$12.34`` from a dollar up; below it three significant digits, so tiny costs still show
    (``$0.00128``, ``$0.0000998``), never in exponent notation."""
    value = amount.to_decimal() if isinstance(amount, Amount) else amount
    if value == 0:
        return "$0"
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value >= 1:
        return f"{sign}${value:,.2f}"
    places = max(2, 2 - value.adjusted())
    text = f"{value.quantize(Decimal(1).scaleb(-places)).normalize():f}"
    if len(text.partition(".")[2]) < 2:
        text = f"{Decimal(text):.2f}"
    return f"{sign}${text}"


def tokens(count: int | Decimal) -> str:
    value = Decimal(count)
    for limit, suffix in ((Decimal(10**9), "B"), (Decimal(10**6), "M"), (Decimal(10**3), "k")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}{suffix}"
    return f"{value:,.0f}"


@dataclass(frozen=True, slots=True)
class Ranked:
    name: str
    detail: str
    line: ReportRow


@dataclass(frozen=True, slots=True)
class Overview:
    range_name: str
    since: datetime
    totals: ReportRow
    spend_chart: Markup
    tokens_chart: Markup
    top_models: list[Ranked]
    top_accounts: list[Ranked]
    top_keys: list[Ranked]
    customers: list[Account]
    recent: list[UsageEvent]
    key_names: dict[str, str]
    account_names: dict[str, str]
    budgets: list[BudgetStatus]


def _bucket_starts(now: datetime, span: timedelta, bucket: str) -> list[datetime]:
    step = timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
    if bucket == "hour":
        last = now.replace(minute=0, second=0, microsecond=0)
    else:
        last = now.replace(hour=0, minute=0, second=0, microsecond=0)
    count = int(span / step)
    return [last - step * (count - 1 - i) for i in range(count)]


def _bucket_key(value: str, bucket: str) -> str:
    """A report's day or hour value, whatever its exact format, as ``YYYY-MM-DD[THH]``."""
    text = value.replace(" ", "T")
    return text[:13] if bucket == "hour" else text[:10]


def _sum_lines(lines: Sequence[ReportRow]) -> ReportRow:
    return ReportRow(
        group={},
        requests=sum(x.requests for x in lines),
        errors=sum(x.errors for x in lines),
        input_tokens=sum(x.input_tokens for x in lines),
        cached_tokens=sum(x.cached_tokens for x in lines),
        output_tokens=sum(x.output_tokens for x in lines),
        reasoning_tokens=sum(x.reasoning_tokens for x in lines),
        cost=Amount(sum(x.cost.nanos for x in lines)),
        latency_ms_p50=None,
        latency_ms_p99=None,
        ttft_ms_p50=None,
    )


def _charts(
    lines: Sequence[ReportRow], starts: list[datetime], bucket: str
) -> tuple[Markup, Markup]:
    by_key = {_bucket_key(line.group.get(bucket, ""), bucket): line for line in lines}
    pattern = "%Y-%m-%dT%H" if bucket == "hour" else "%Y-%m-%d"
    found = [by_key.get(start.strftime(pattern)) for start in starts]
    labels = [s.strftime("%H:00" if bucket == "hour" else "%b %d") for s in starts]
    zero = Decimal(0)
    spend = stacked_bars(
        labels,
        [Series("Spend", [Decimal(x.cost.nanos) / NANOS_PER_UNIT if x else zero for x in found])],
        title="Spend over time",
        format_value=money,
    )
    token_series = [
        Series("Input", [Decimal(x.input_tokens - x.cached_tokens) if x else zero for x in found]),
        Series("Cached input", [Decimal(x.cached_tokens) if x else zero for x in found]),
        Series("Output", [Decimal(x.output_tokens) if x else zero for x in found]),
    ]
    chart = stacked_bars(labels, token_series, title="Tokens over time", format_value=tokens)
    return spend, chart


def _top(lines: Sequence[ReportRow], field: str, names: dict[str, str]) -> list[Ranked]:
    ranked = sorted(lines, key=lambda x: (-x.cost.nanos, -x.requests))[:TOP_ROWS]
    result = []
    for line in ranked:
        raw = line.group.get(field, "")
        result.append(Ranked(names.get(raw, raw), raw, line))
    return result


def budget_used(status: BudgetStatus) -> Fraction:
    """The share of a budget spent or held in its current period (may pass 1 by overage)."""
    cap = status.budget.amount.nanos
    return Fraction(status.spent.nanos + status.held.nanos, cap) if cap else Fraction(0)


def key_label(record: ApiKeyRecord) -> str:
    return f"{record.prefix} ({record.label})" if record.label else record.prefix


def gather_overview(store: Store, clock: Clock, range_name: str) -> Overview:
    """Blocking: every query of the overview page."""
    span, bucket = RANGES[range_name]
    now = us_to_datetime(clock.now_us())
    starts = _bucket_starts(now, span, bucket)
    since_us = int(starts[0].timestamp()) * US_PER_S
    accounts = list(store.list_accounts())
    keys = list(store.list_api_keys())
    account_names = {a.id: a.name for a in accounts}
    key_names = {k.id: key_label(k) for k in keys}
    series = store.usage_report(group_by=[bucket], since_us=since_us)
    spend_chart, tokens_chart = _charts(series, starts, bucket)
    customers = sorted(
        (a for a in accounts if a.kind is AccountKind.CUSTOMER),
        key=lambda a: a.balance.available.nanos,
    )
    return Overview(
        range_name=range_name,
        since=starts[0].astimezone(UTC),
        totals=_sum_lines(series),
        spend_chart=spend_chart,
        tokens_chart=tokens_chart,
        top_models=_top(store.usage_report(group_by=["model"], since_us=since_us), "model", {}),
        top_accounts=_top(
            store.usage_report(group_by=["account"], since_us=since_us), "account", {}
        ),
        # Reports name a key by its prefix; the label makes it recognisable.
        top_keys=_top(
            store.usage_report(group_by=["key"], since_us=since_us),
            "key",
            {k.prefix: key_label(k) for k in keys},
        ),
        customers=customers,
        recent=store.recent_usage(limit=RECENT_ROWS),
        key_names=key_names,
        account_names=account_names,
        budgets=sorted(store.list_budgets(), key=budget_used, reverse=True),
    )
