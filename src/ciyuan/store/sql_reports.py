"""Usage reports on SQL, answered from the rollups (``sql_rollups``) or from raw events.

Rollups equal the events exactly (see ``sql_rollups``), so a report over a time range reads
daily rollups for whole days, hourly rollups for whole hours at the ends, and raw events only
for part-hours at the very ends, and still equals a report over raw events exactly.

Groupings by an API key's tag (``tag:NAME``) are the exception: rollups do not carry tags, so
such a report is always answered from raw events joined to ``api_keys`` (the key's tag as it
is now, not as it was when the request ran), whatever the ``source``.
"""

# ruff: noqa: S608  (SQL is composed from constant names and "?" lists only; values are bound)

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ciyuan.errors import InvalidRequest
from ciyuan.metering.ports import (
    GROUPS,
    REPORT_SOURCES,
    TAG_GROUP_PREFIX,
    UNTAGGED,
    ReportRow,
    UsageEvent,
)
from ciyuan.pricing.money import Amount
from ciyuan.reports.buckets import (
    DAY_US,
    HOUR_US,
    ceil_us,
    day_label,
    floor_us,
    hour_label,
    provider_of,
)
from ciyuan.store.sql_base import Row, SqlBase, Tx
from ciyuan.store.sql_holds import USAGE_COLUMNS, usage_event_from_row
from ciyuan.store.sql_rollups import ROLLUPS, SUMS

RECENT_LIMIT_MAX: Final = 1000
TAG_NAME_CHARS_MAX: Final = 128


@dataclass(frozen=True, slots=True)
class _Piece:
    """A part of the requested range and where it is read from (a rollup width, or raw)."""

    width_us: int | None
    since_us: int | None
    until_us: int | None


def plan_pieces(since_us: int | None, until_us: int | None, widths: Sequence[int]) -> list[_Piece]:
    """Carve ``[since_us, until_us)`` into whole buckets of each width, coarsest first."""
    if since_us is not None and until_us is not None and since_us >= until_us:
        return []
    if not widths:
        return [_Piece(None, since_us, until_us)]
    width, finer = widths[0], widths[1:]
    start = None if since_us is None else ceil_us(since_us, width)
    end = None if until_us is None else floor_us(until_us, width)
    if start is not None and end is not None and start >= end:
        return plan_pieces(since_us, until_us, finer)
    head = [] if since_us is None else plan_pieces(since_us, start, finer)
    tail = [] if until_us is None else plan_pieces(end, until_us, finer)
    return [*head, _Piece(width, start, end), *tail]


class ReportQueries(SqlBase):
    """The ``ReportStore`` port on SQL."""

    def usage_report(
        self,
        *,
        group_by: Sequence[str],
        since_us: int | None = None,
        until_us: int | None = None,
        account_id: str | None = None,
        api_key_id: str | None = None,
        source: str = "auto",
    ) -> list[ReportRow]:
        """See :meth:`ReportStore.usage_report`. A ``tag:NAME`` grouping reads raw events only
        (rollups carry no tags): ``source="rollup"`` is refused for it, ``auto`` reads raw
        events (still without percentiles)."""
        groups = _checked_groups(group_by, source)
        tagged = any(g.startswith(TAG_GROUP_PREFIX) for g in groups)
        if tagged and source == "rollup":
            raise InvalidRequest(
                "rollups carry no key tags: use source raw or auto", param="source"
            )
        if source == "raw" or tagged:
            pieces = [_Piece(None, since_us, until_us)]
        else:
            # Daily rollups cannot answer an hourly grouping; hourly ones always can.
            widths = [w for w, _ in ROLLUPS if "hour" not in groups or w <= HOUR_US]
            pieces = plan_pieces(since_us, until_us, widths)
        with_percentiles = source == "raw"
        totals: dict[tuple[Any, ...], list[Any]] = {}
        with self.read_transaction() as tx:
            models = [r[0] for r in tx.execute("SELECT DISTINCT model FROM usage_rollup_day")]
            for piece in pieces:
                inner, params = _piece_query(
                    piece, groups, models, account_id, api_key_id, self._tag_sql
                )
                shape = _with_percentiles if with_percentiles else _summed
                for row in tx.execute(shape(inner, len(groups)), params):
                    _add(totals, row, len(groups), with_percentiles)
            names = self._display_names(tx, groups)
        rows = [_report_row(key, sums, groups, names) for key, sums in totals.items()]
        rows.sort(key=lambda r: [r.group[g] for g in groups])
        return rows

    def _tag_sql(self, column: str) -> str:
        """The dialect hook: SQL giving the text value of the JSON object ``column`` at a
        bound key (``?``), or NULL when the key is absent. Keys are bound, never spliced, so a
        tag name may hold any character."""
        if self.url.startswith(("postgresql:", "postgres:")):
            return f"({column}::jsonb ->> ?::text)"
        return f"(SELECT j.value FROM json_each({column}) j WHERE j.key = ?)"

    def _display_names(self, tx: Tx, groups: Sequence[str]) -> dict[str, dict[Any, str]]:
        names: dict[str, dict[Any, str]] = {}
        if "account" in groups:
            names["account"] = dict(tx.execute("SELECT id, name FROM accounts"))
        if "key" in groups:
            names["key"] = dict(tx.execute("SELECT id, prefix FROM api_keys"))
        return names

    def recent_usage(self, *, account_id: str | None = None, limit: int = 50) -> list[UsageEvent]:
        if not 0 < limit <= RECENT_LIMIT_MAX:
            raise InvalidRequest(f"limit must be 1 to {RECENT_LIMIT_MAX}", param="limit")
        sql = f"SELECT {USAGE_COLUMNS} FROM usage_events"
        params: tuple[Any, ...] = ()
        if account_id is not None:
            sql += " WHERE account_id = ?"
            params = (account_id,)
        with self.read_transaction() as tx:
            rows = tx.execute(
                sql + " ORDER BY created_us DESC, request_id DESC LIMIT ?", (*params, limit)
            )
        return [usage_event_from_row(row) for row in rows]

    def usage_page(
        self,
        *,
        since_us: int | None = None,
        until_us: int | None = None,
        account_id: str | None = None,
        after: tuple[int, str] | None = None,
        limit: int = 500,
    ) -> list[UsageEvent]:
        if not 0 < limit <= RECENT_LIMIT_MAX:
            raise InvalidRequest(f"limit must be 1 to {RECENT_LIMIT_MAX}", param="limit")
        where: list[str] = []
        params: list[Any] = []
        for clause, value in (
            ("created_us >= ?", since_us),
            ("created_us < ?", until_us),
            ("account_id = ?", account_id),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        if after is not None:
            # Keyset paging: stable under concurrent inserts, no OFFSET rescans.
            where.append("(created_us > ? OR (created_us = ? AND request_id > ?))")
            params += [after[0], after[0], after[1]]
        sql = f"SELECT {USAGE_COLUMNS} FROM usage_events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self.read_transaction() as tx:
            rows = tx.execute(sql + " ORDER BY created_us, request_id LIMIT ?", (*params, limit))
        return [usage_event_from_row(row) for row in rows]


def _checked_groups(group_by: Sequence[str], source: str) -> tuple[str, ...]:
    if isinstance(group_by, str):
        raise InvalidRequest("group_by is a sequence of group names", param="group_by")
    unknown = [g for g in group_by if g not in GROUPS and not _is_tag_group(g)]
    if unknown:
        raise InvalidRequest(
            f"cannot group by {unknown[0]!r}; choose from {', '.join(GROUPS)} "
            f"or {TAG_GROUP_PREFIX}NAME",
            param="group_by",
        )
    if len(set(group_by)) != len(group_by):
        raise InvalidRequest("group_by names a group twice", param="group_by")
    if source not in REPORT_SOURCES:
        raise InvalidRequest(
            f"source must be one of {', '.join(REPORT_SOURCES)}, not {source!r}", param="source"
        )
    return tuple(group_by)


def _is_tag_group(group: object) -> bool:
    return (
        isinstance(group, str)
        and group.startswith(TAG_GROUP_PREFIX)
        and 0 < len(group) - len(TAG_GROUP_PREFIX) <= TAG_NAME_CHARS_MAX
    )


def _group_expression(group: str, at: str, models: Sequence[str]) -> tuple[str, list[Any]]:
    """The SQL value a row is grouped on (ids and bucket starts; labels come later)."""
    if group == "account":
        return "account_id", []
    if group == "key":
        return "api_key_id", []
    if group == "day":
        # Division, not %: psycopg would read "%" as a placeholder. Timestamps are positive.
        return f"{at} / {DAY_US} * {DAY_US}", []
    if group == "hour":
        return f"{at} / {HOUR_US} * {HOUR_US}", []
    if group == "provider":
        # Bound pairs: the provider is derived from the model name, never stored.
        if not models:
            return "model", []
        params: list[Any] = []
        for model in models:
            params += [model, provider_of(model)]
        return f"CASE model {' '.join(['WHEN ? THEN ?'] * len(models))} ELSE model END", params
    assert group in ("model", "upstream", "api", "status"), group
    return group, []


def _piece_query(
    piece: _Piece,
    groups: Sequence[str],
    models: Sequence[str],
    account_id: str | None,
    api_key_id: str | None,
    tag_sql: Callable[[str], str],
) -> tuple[str, list[Any]]:
    """The inner ``SELECT`` of one piece: group keys ``k0…`` and the values to sum, per row.

    Tag groups join the events to a derived table of the keys' tags (``key_tags``: only its
    own column names, so the events' columns stay unambiguous); a key without the tag, or an
    event without a key, groups as ``untagged``."""
    if piece.width_us is None:
        table, at = "usage_events", "created_us"
        row_sums = (
            "1 AS requests, CASE WHEN status <> 'ok' THEN 1 ELSE 0 END AS errors, input_tokens, "
            "cached_tokens, output_tokens, reasoning_tokens, cost_nanos, latency_ms, ttft_ms"
        )
    else:
        table = dict((w, t) for w, t in ROLLUPS)[piece.width_us]
        at, row_sums = "bucket_us", SUMS
    keys: list[str] = []
    params: list[Any] = []
    tags: list[str] = []
    tag_params: list[Any] = []
    for index, group in enumerate(groups):
        if group.startswith(TAG_GROUP_PREFIX):
            assert piece.width_us is None, "tag groups read raw events only"
            tags.append(f"{tag_sql('metadata')} AS t{len(tags)}")
            tag_params.append(group.removeprefix(TAG_GROUP_PREFIX))
            keys.append(f"COALESCE(key_tags.t{len(tags) - 1}, '{UNTAGGED}') AS k{index}")
            continue
        expression, bound = _group_expression(group, at, models)
        keys.append(f"{expression} AS k{index}")
        params += bound
    source = table
    if tags:
        source += (
            f" LEFT JOIN (SELECT id AS tag_key_id, {', '.join(tags)} FROM api_keys) key_tags"
            " ON key_tags.tag_key_id = api_key_id"
        )
        params += tag_params
    where: list[str] = []
    for clause, value in (
        (f"{at} >= ?", piece.since_us),
        (f"{at} < ?", piece.until_us),
        ("account_id = ?", account_id),
        ("api_key_id = ?", api_key_id),
    ):
        if value is not None:
            where.append(clause)
            params.append(value)
    inner = f"SELECT {', '.join([*keys, row_sums])} FROM {source}"
    if where:
        inner += " WHERE " + " AND ".join(where)
    return inner, params


def _summed(inner: str, key_count: int) -> str:
    keys = [f"k{i}" for i in range(key_count)]
    outer = ", ".join(f"SUM({c})" for c in SUMS.split(", "))
    grouped = f" GROUP BY {', '.join(keys)}" if keys else ""
    return f"SELECT {', '.join([*keys, outer])} FROM ({inner}) e{grouped}"


def _with_percentiles(inner: str, key_count: int) -> str:
    """The raw query, also giving nearest-rank p50/p99 latency and p50 time to first token.

    Window functions rather than PostgreSQL's ``percentile_disc``: SQLite has no percentile
    aggregate, and one query text keeps both dialects' answers identical.
    """
    keys = [f"k{i}" for i in range(key_count)]
    partition = f"PARTITION BY {', '.join(keys)} " if keys else ""
    by_ttft = f"PARTITION BY {', '.join([*keys, 'ttft_ms IS NULL'])} "
    ranked = (
        f"SELECT e.*, ROW_NUMBER() OVER ({partition}ORDER BY latency_ms) AS lat_rank, "
        f"COUNT(*) OVER ({partition.rstrip()}) AS lat_n, "
        f"ROW_NUMBER() OVER ({by_ttft}ORDER BY ttft_ms) AS ttft_rank, "
        f"COUNT(ttft_ms) OVER ({partition.rstrip()}) AS ttft_n FROM ({inner}) e"
    )
    # Nearest rank: the ceil(p * n)-th smallest value, in integer arithmetic.
    percentiles = (
        "MIN(CASE WHEN lat_rank = (lat_n + 1) / 2 THEN latency_ms END), "
        "MIN(CASE WHEN lat_rank = (99 * lat_n + 99) / 100 THEN latency_ms END), "
        "MIN(CASE WHEN ttft_ms IS NOT NULL AND ttft_rank = (ttft_n + 1) / 2 THEN ttft_ms END)"
    )
    outer = ", ".join(f"SUM({c})" for c in SUMS.split(", "))
    select = ", ".join([*keys, outer, percentiles])
    grouped = f" GROUP BY {', '.join(keys)}" if keys else ""
    return f"SELECT {select} FROM ({ranked}) r{grouped}"


def _add(
    totals: dict[tuple[Any, ...], list[Any]], row: Row, key_count: int, percentiles: bool
) -> None:
    key, sums = tuple(row[:key_count]), row[key_count:]
    if sums[0] is None or int(sums[0]) == 0:
        return  # an aggregate over no rows (no grouping) is one row of NULLs
    found = totals.setdefault(key, [0] * 7 + [None] * 3)
    for index in range(7):
        found[index] += int(sums[index])
    if percentiles:
        assert len(sums) == 10
        found[7:] = [None if v is None else int(v) for v in sums[7:]]


def _report_row(
    key: tuple[Any, ...],
    sums: list[Any],
    groups: Sequence[str],
    names: dict[str, dict[Any, str]],
) -> ReportRow:
    group: dict[str, str] = {}
    for name, value in zip(groups, key, strict=True):
        if name == "day":
            group[name] = day_label(int(value))
        elif name == "hour":
            group[name] = hour_label(int(value))
        elif name in names:
            group[name] = names[name].get(value, str(value))
        else:
            group[name] = str(value)
    return ReportRow(
        group=group, requests=sums[0], errors=sums[1], input_tokens=sums[2],
        cached_tokens=sums[3], output_tokens=sums[4], reasoning_tokens=sums[5],
        cost=Amount(sums[6]), latency_ms_p50=sums[7], latency_ms_p99=sums[8],
        ttft_ms_p50=sums[9],
    )  # fmt: skip
