"""Usage reports agree with the ledger and with themselves, exactly, on SQLite and PostgreSQL.

A seeded workload (tests/reports/workload.py) runs through the real store; then the report's
cost is compared with the charge and overage transfers the ledger holds for the same period, the
rollup answer with the raw answer for many groupings and ranges (aligned and not), and the raw
percentiles with a nearest-rank computation over the events the workload recorded.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import pytest

from ciyuan.clock import FixedClock
from ciyuan.errors import InvalidRequest
from ciyuan.metering.ports import ReportRow, UsageEvent
from ciyuan.reports.buckets import DAY_US, HOUR_US, day_label
from ciyuan.store.sql_store import SqlStore
from tests.contract.ledger_helpers import assert_consistent, raw
from tests.reports.workload import START_US, Workload, generate

GROUPINGS: tuple[tuple[str, ...], ...] = (
    (),
    ("model",),
    ("day", "model"),
    ("hour",),
    ("account", "key"),
    ("provider", "status"),
    ("upstream", "api", "day"),
    ("hour", "account", "model", "status"),
)


@pytest.fixture
def work(store: SqlStore, clock: FixedClock) -> Workload:
    return generate(store, clock, seed=7, requests=600)


def sums(rows: Sequence[ReportRow]) -> dict[str, dict[str, int]]:
    return {
        "|".join(f"{k}={v}" for k, v in r.group.items()): {
            "requests": r.requests, "errors": r.errors, "input": r.input_tokens,
            "cached": r.cached_tokens, "output": r.output_tokens,
            "reasoning": r.reasoning_tokens, "cost": r.cost.nanos,
        }
        for r in rows
    }  # fmt: skip


def ledger_total(db_url: str, kinds: Sequence[str], since_us: int, until_us: int) -> int:
    marks = ", ".join("?" * len(kinds))
    rows = raw(
        db_url,
        f"SELECT COALESCE(SUM(amount_nanos), 0) FROM transfers WHERE kind IN ({marks}) "
        "AND created_us >= ? AND created_us < ?",
        (*kinds, since_us, until_us),
    )
    return int(rows[0][0])


def test_report_cost_equals_the_ledger_per_day(
    store: SqlStore, work: Workload, db_url: str
) -> None:
    assert len(work.events) > 500 and work.refunded
    assert_consistent(store)
    days = store.usage_report(group_by=["day"])
    assert len(days) >= 4
    for start in range(START_US - START_US % DAY_US, work.events[-1].created_us + 1, DAY_US):
        label = day_label(start)
        reported = sum(r.cost.nanos for r in days if r.group["day"] == label)
        charged = ledger_total(db_url, ("charge", "overage"), start, start + DAY_US)
        assert reported == charged, label
        refunds = ledger_total(db_url, ("refund",), start, start + DAY_US)
        # What the customer paid net of refunds, from the report and the ledger alike.
        assert reported - refunds == charged - refunds
    everything = store.usage_report(group_by=[])
    assert len(everything) == 1
    assert everything[0].cost.nanos == sum(e.cost.nanos for e in work.events)
    assert everything[0].requests == len(work.events)
    assert everything[0].cost.nanos == ledger_total(db_url, ("charge", "overage"), 0, 2**62)


@pytest.mark.parametrize("group_by", GROUPINGS, ids=lambda g: "+".join(g) or "total")
def test_rollups_equal_raw_events(
    store: SqlStore, work: Workload, group_by: tuple[str, ...]
) -> None:
    first, last = work.events[0].created_us, work.events[-1].created_us
    ranges = [
        (None, None),
        (first - first % DAY_US, last - last % DAY_US + DAY_US),  # whole days
        (first + 3_600_000_000 * 5, None),  # aligned to nothing, open end
        (first + 1_111_111, last - 7_777_777),  # part-hours at both ends
        (first - first % HOUR_US + HOUR_US, first - first % HOUR_US + 2 * HOUR_US),  # one hour
        (first + 10, first + 20),  # inside one hour: raw only
    ]
    for since_us, until_us in ranges:
        expected = sums(
            store.usage_report(
                group_by=group_by, since_us=since_us, until_us=until_us, source="raw"
            )
        )
        for source in ("auto", "rollup"):
            got = store.usage_report(
                group_by=group_by, since_us=since_us, until_us=until_us, source=source
            )
            assert sums(got) == expected, (source, since_us, until_us)
            assert all(r.latency_ms_p50 is None for r in got)


def test_filters_and_reference_model(store: SqlStore, work: Workload) -> None:
    """Per account and per key, against sums computed straight from the workload's events."""
    account_id = work.account_ids[1]
    key_id = work.key_ids[account_id][0]
    mine = [e for e in work.events if e.account_id == account_id and e.api_key_id == key_id]
    expected: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for e in mine:
        line = expected[e.model]
        line[0] += 1
        line[1] += e.input_tokens
        line[2] += e.cost.nanos
    for source in ("auto", "raw"):
        rows = store.usage_report(
            group_by=["model"], account_id=account_id, api_key_id=key_id, source=source
        )
        assert {r.group["model"]: [r.requests, r.input_tokens, r.cost.nanos] for r in rows} == dict(
            expected
        )


def nearest_rank(values: list[int], p: float) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(round(p * len(ordered), 9))) - 1]


def test_raw_percentiles_are_nearest_rank(store: SqlStore, work: Workload) -> None:
    by_model: dict[str, list[UsageEvent]] = defaultdict(list)
    for e in work.events:
        by_model[e.model].append(e)
    rows = store.usage_report(group_by=["model"], source="raw")
    assert [r.group["model"] for r in rows] == sorted(by_model)
    for row in rows:
        events = by_model[row.group["model"]]
        latencies = [e.latency_ms for e in events]
        ttfts = [e.ttft_ms for e in events if e.ttft_ms is not None]
        assert row.latency_ms_p50 == nearest_rank(latencies, 0.5)
        assert row.latency_ms_p99 == nearest_rank(latencies, 0.99)
        assert row.ttft_ms_p50 == nearest_rank(ttfts, 0.5)


def test_labels_names_and_order(store: SqlStore, work: Workload) -> None:
    rows = store.usage_report(group_by=["account", "key", "hour"])
    names = {store.get_account(a).name for a in work.account_ids}
    assert {r.group["account"] for r in rows} == names
    assert all(r.group["key"].startswith("ck7") for r in rows)
    assert all(len(r.group["hour"]) == len("2026-11-28T00:00") for r in rows)
    keys = [[r.group[g] for g in ("account", "key", "hour")] for r in rows]
    assert keys == sorted(keys)
    providers = {r.group["provider"] for r in store.usage_report(group_by=["provider"])}
    assert {"openai", "anthropic", "local"} <= providers


def test_recent_usage_newest_first(store: SqlStore, work: Workload) -> None:
    recent = store.recent_usage(limit=5)
    assert [e.request_id for e in recent] == [e.request_id for e in work.events[::-1][:5]]
    account_id = work.account_ids[2]
    only = store.recent_usage(account_id=account_id, limit=1000)
    assert [e.request_id for e in only] == [
        e.request_id for e in reversed(work.events) if e.account_id == account_id
    ]


def test_replayed_event_is_rolled_up_once(store: SqlStore, work: Workload) -> None:
    before = sums(store.usage_report(group_by=["model"], source="rollup"))
    store.record_usage(work.events[0])
    assert sums(store.usage_report(group_by=["model"], source="rollup")) == before


def test_bad_requests_are_refused(store: SqlStore) -> None:
    for kwargs in ({"group_by": ["nope"]}, {"group_by": ["day", "day"]}, {"group_by": "day"}):
        with pytest.raises(InvalidRequest):
            store.usage_report(**kwargs)
    with pytest.raises(InvalidRequest):
        store.usage_report(group_by=[], source="cache")
    with pytest.raises(InvalidRequest):
        store.recent_usage(limit=0)
    assert store.usage_report(group_by=["model"]) == []
    assert store.usage_report(group_by=[], source="raw") == []
