"""The reports tests' store: a real SQLite file or PostgreSQL schema, on a fixed clock at the
workload's start (each test module seeds its own ``work`` on it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ciyuan.clock import FixedClock
from ciyuan.store import open_store
from ciyuan.store.sql_store import SqlStore
from tests.reports.workload import START_US


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START_US)


@pytest.fixture
def store(db_url: str, clock: FixedClock) -> Iterator[SqlStore]:
    opened = open_store(db_url, clock=clock)
    assert isinstance(opened, SqlStore)
    yield opened
    opened.close()
