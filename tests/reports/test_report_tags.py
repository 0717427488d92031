"""Usage grouped by an API key's tag (``tag:NAME``), on SQLite and PostgreSQL: read from raw
events joined to the keys (rollups carry no tags), ``untagged`` for keys without the tag, and
totals equal to the per-key totals summed per tag, exactly."""

from __future__ import annotations

import json
from collections import defaultdict

import orjson
import pytest
from typer.testing import CliRunner

from ciyuan.cli import app
from ciyuan.clock import FixedClock
from ciyuan.errors import InvalidRequest
from ciyuan.metering.ports import ReportRow
from ciyuan.store.sql_store import SqlStore
from tests.reports.workload import Workload, generate

MEASURES = ("requests", "errors", "input_tokens", "cached_tokens", "output_tokens",
            "reasoning_tokens")  # fmt: skip


@pytest.fixture
def work(store: SqlStore, clock: FixedClock) -> Workload:
    work = generate(store, clock, seed=11, requests=300)
    keys = [k for ids in work.key_ids.values() for k in ids]
    # Two teams, a key with other tags only, a key with none; a team name needing quoting.
    tags = [{"team": "red"}, {"team": "red", "env": "prod"}, {"team": 'blue "b"'},
            {"env": "dev"}, {}, {"team": "blue \"b\"", "x.y": "z"}]  # fmt: skip
    with store.transaction() as tx:
        for key_id, metadata in zip(keys, tags, strict=True):
            tx.execute(
                "UPDATE api_keys SET metadata = ? WHERE id = ?",
                (orjson.dumps(metadata, option=orjson.OPT_SORT_KEYS).decode(), key_id),
            )
    return work


def figures(row: ReportRow) -> tuple[int, ...]:
    return (*(getattr(row, m) for m in MEASURES), row.cost.nanos)


def per_tag_from_keys(store: SqlStore, tag: str) -> dict[str, tuple[int, ...]]:
    prefix_tag = {k.prefix: k.metadata.get(tag, "untagged") for k in store.list_api_keys()}
    summed: dict[str, list[int]] = defaultdict(lambda: [0] * (len(MEASURES) + 1))
    for row in store.usage_report(group_by=["key"], source="raw"):
        into = summed[prefix_tag[row.group["key"]]]
        for index, value in enumerate(figures(row)):
            into[index] += value
    return {name: tuple(values) for name, values in summed.items()}


def test_totals_by_tag_equal_totals_by_key_summed_per_tag(store: SqlStore, work: Workload) -> None:
    by_tag = store.usage_report(group_by=["tag:team"])
    assert {r.group["tag:team"] for r in by_tag} == {"red", 'blue "b"', "untagged"}
    assert {r.group["tag:team"]: figures(r) for r in by_tag} == per_tag_from_keys(store, "team")
    assert sum(r.requests for r in by_tag) == len(work.events)
    assert sum(r.cost.nanos for r in by_tag) == sum(e.cost.nanos for e in work.events)
    raw = store.usage_report(group_by=["tag:team"], source="raw")
    assert [figures(r) for r in raw] == [figures(r) for r in by_tag]
    assert all(r.latency_ms_p50 is not None for r in raw)
    # A tag name with a dot is a key, not a JSON path.
    dotted = {r.group["tag:x.y"]: r.requests for r in store.usage_report(group_by=["tag:x.y"])}
    assert set(dotted) <= {"z", "untagged"} and sum(dotted.values()) == len(work.events)


def test_tag_with_other_groupings_and_filters(store: SqlStore, work: Workload) -> None:
    account = work.account_ids[0]
    rows = store.usage_report(group_by=["day", "tag:team", "tag:env"], account_id=account)
    keyed = store.usage_report(group_by=["day", "key"], account_id=account, source="raw")
    assert sum(figures(r)[-1] for r in rows) == sum(figures(r)[-1] for r in keyed)
    assert sum(r.requests for r in rows) == sum(r.requests for r in keyed)
    assert {(r.group["tag:team"], r.group["tag:env"]) for r in rows} <= {
        ("red", "untagged"),
        ("red", "prod"),
    }


def test_tag_groupings_are_checked(store: SqlStore) -> None:
    with pytest.raises(InvalidRequest, match="rollups carry no key tags"):
        store.usage_report(group_by=["tag:team"], source="rollup")
    with pytest.raises(InvalidRequest, match="tag:NAME"):
        store.usage_report(group_by=["tag:"])


def test_cli_usage_by_tag(db_url: str, store: SqlStore, work: Workload) -> None:
    result = CliRunner().invoke(app, ["--db", db_url, "usage", "--by", "tag:team", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["group_by"] == ["tag:team"]
    assert {line["tag:team"] for line in data["usage"]} == {"red", 'blue "b"', "untagged"}
    assert data["total"]["requests"] == len(work.events)
    human = CliRunner().invoke(app, ["--db", db_url, "usage", "--by", "tag:team"])
    assert human.exit_code == 0 and "untagged" in human.stdout
