"""Usage rollups: per-hour and per-day sums of the usage events, kept in the insert's transaction.

Invariant: every rollup row is the exact sum of the usage events in its bucket, because
:func:`roll_up` runs in the transaction that inserts the event, and only when the insert
happened (a replayed request id adds nothing). Only sums are kept: a percentile cannot be
summed, so latency percentiles come from raw events.
"""

# ruff: noqa: S608  (SQL is composed from constant names and "?" lists only; values are bound)

from __future__ import annotations

from typing import Final

from ciyuan.metering.ports import UsageEvent
from ciyuan.reports.buckets import DAY_US, HOUR_US, floor_us
from ciyuan.store.sql_base import Tx

ROLLUPS: Final = ((DAY_US, "usage_rollup_day"), (HOUR_US, "usage_rollup_hour"))
"""Coarsest first: the order a report's range is carved up in."""
SUMS: Final = (
    "requests, errors, input_tokens, cached_tokens, output_tokens, reasoning_tokens, cost_nanos"
)
_DIMENSIONS: Final = "account_id, api_key_id, model, upstream, api, status"
_ADDED: Final = (*SUMS.split(", "), "latency_ms_sum", "ttft_ms_sum", "ttft_count")


def _upsert(table: str) -> str:
    return (
        f"INSERT INTO {table} (bucket_us, {_DIMENSIONS}, {', '.join(_ADDED)}) "
        f"VALUES ({', '.join('?' * 17)}) ON CONFLICT (bucket_us, {_DIMENSIONS}) DO UPDATE SET "
        + ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in _ADDED)
    )


_UPSERTS: Final = tuple((width_us, _upsert(table)) for width_us, table in ROLLUPS)


def roll_up(tx: Tx, event: UsageEvent) -> None:
    """Add one newly inserted usage event to its hour and day rollups."""
    values = (
        event.account_id, event.api_key_id, event.model, event.upstream, event.api,
        event.status, 1, int(event.status != "ok"), event.input_tokens, event.cached_tokens,
        event.output_tokens, event.reasoning_tokens, event.cost.nanos, event.latency_ms,
        event.ttft_ms or 0, int(event.ttft_ms is not None),
    )  # fmt: skip
    for width_us, sql in _UPSERTS:
        tx.execute(sql, (floor_us(event.created_us, width_us), *values))
