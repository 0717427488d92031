"""Helpers shared by the ledger contract tests: a store on each backend, raw SQL beside it."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import psycopg

from ciyuan.metering.ports import UsageEvent
from ciyuan.store.sql_store import SqlStore


def raw(db_url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run SQL straight on the database, bypassing the store: what a tamperer would do."""
    if db_url.startswith("sqlite:///"):
        conn = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()
    with psycopg.connect(db_url, autocommit=True) as pg:
        cursor = pg.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


def event(account_id: str, request_id: str) -> UsageEvent:
    return UsageEvent(
        request_id=request_id, created_us=1, account_id=account_id, api_key_id="key_test",
        api="chat", model="gpt-4o-mini", upstream="demo", status="ok", http_status=200,
    )  # fmt: skip


def assert_consistent(store: SqlStore) -> None:
    """Double entry holds, every balance reconciles and the chain verifies."""
    report = store.reconcile()
    assert report.ok, report.to_dict()
    chain = store.verify_chain()
    assert chain.ok, chain.problem


class NextCommitFails:
    """A SQLite store's connection whose next COMMIT, once ``armed``, fails as a full disk's
    would (the store then rolls the batch back itself); everything else goes through."""

    def __init__(self, conn: sqlite3.Connection, *, armed: bool = False) -> None:
        self._conn = conn
        self.armed = armed
        self.failed = 0

    def execute(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
        if self.armed and sql == "COMMIT":
            self.armed = False
            self.failed += 1
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql, params)

    def __getattr__(self, name: str) -> object:
        return getattr(self._conn, name)
