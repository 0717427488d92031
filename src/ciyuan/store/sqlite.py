"""The SQLite adapter: the embedded default, one file in WAL mode.

Writers are serialised by one connection behind a lock (SQLite has one writer anyway), every
write transaction starts with ``BEGIN IMMEDIATE`` so it never fails half-way on a lock upgrade,
and other processes (the CLI beside a running gateway) wait up to ``busy_timeout``.

Durability is a setting: ``process`` (``synchronous=NORMAL``: a commit survives the process
being killed at any instant, not a power cut) or ``power`` (``synchronous=FULL``: an fsync per
commit).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from ciyuan.clock import Clock
from ciyuan.errors import Conflict, Unavailable
from ciyuan.store.migrations import migrations_for
from ciyuan.store.sql_base import Row, Tx
from ciyuan.store.sql_store import SqlStore

BUSY_TIMEOUT_MS: Final = 5000
_SYNCHRONOUS: Final = {"process": "NORMAL", "power": "FULL"}


class _SqliteTx(Tx):
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._conn.execute(sql, tuple(params)).fetchall()

    def lock_accounts(self, account_ids: Sequence[str]) -> None:
        """BEGIN IMMEDIATE already holds the database's one write lock."""

    def lock_head(self) -> tuple[int, str]:
        row = self._conn.execute("SELECT seq, hash FROM ledger_head WHERE id = 1").fetchone()
        assert row is not None
        return int(row[0]), str(row[1])


def path_from_url(url: str) -> Path:
    assert url.startswith("sqlite:///"), url
    return Path(url.removeprefix("sqlite:///"))


class SqliteStore(SqlStore):
    def __init__(self, url: str, clock: Clock, *, durability: str = "process") -> None:
        super().__init__(url, clock)
        if durability not in _SYNCHRONOUS:
            raise ValueError(
                f"durability must be one of {sorted(_SYNCHRONOUS)}, not {durability!r}"
            )
        path = path_from_url(url)
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
        self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute(f"PRAGMA synchronous = {_SYNCHRONOUS[durability]}")
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._migrate()
        self._after_migrations()

    def _migrate(self) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS ciyuan_migrations "
                    "(version INTEGER PRIMARY KEY, name TEXT NOT NULL)"
                )
                done = {
                    row[0] for row in self._conn.execute("SELECT version FROM ciyuan_migrations")
                }
                for migration in migrations_for("sqlite"):
                    if migration.version in done:
                        continue
                    for statement in _statements(migration.sql):
                        self._conn.execute(statement)
                    self._conn.execute(
                        "INSERT INTO ciyuan_migrations (version, name) VALUES (?, ?)",
                        (migration.version, migration.name),
                    )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise Unavailable(f"the SQLite database is busy or unreadable: {exc}") from exc
            try:
                yield _SqliteTx(self._conn)
            except sqlite3.IntegrityError as exc:
                self._conn.execute("ROLLBACK")
                raise Conflict(f"the write conflicts with stored data: {exc}") from exc
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")

    @contextmanager
    def read_transaction(self) -> Iterator[Tx]:
        """A deferred transaction: one WAL snapshot, and other processes may write meanwhile."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield _SqliteTx(self._conn)
            finally:
                self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _statements(script: str) -> list[str]:
    """Split a migration into statements (our migrations hold no ';' inside literals)."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]
